"""Helpers for driving real IMAP clients against a running Mailhaven.

Each client is an external program or library installed by the test set-up
(`.ci/run`).  Locally a missing client skips its tests with the reason; in CI
(``CI`` set) a missing client is a failure, so the suite never passes by skipping.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.support import PASSWORD, ServerThread

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "messages"
USER = "alice"


def missing(what: str) -> None:
    """Skip locally, fail in CI: a client that is not installed proves nothing."""
    reason = f"{what} is not installed (install it as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the program {name!r}")
    assert path is not None
    return path


def run(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a client; on failure the assertion shows everything it printed."""
    completed = subprocess.run(
        [str(arg) for arg in argv],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    if check:
        assert completed.returncode == 0, (
            f"{argv[0]} exited with {completed.returncode}\n"
            f"stdout:\n{completed.stdout.decode(errors='replace')}\n"
            f"stderr:\n{completed.stderr.decode(errors='replace')}"
        )
    return completed


def corpus_sample(count: int, *, start: int = 0, step: int = 23) -> list[Path]:
    """A fixed spread of corpus messages (every *step*-th file, wrapping round)."""
    files = sorted(CORPUS.glob("*.eml"))
    if not files:
        pytest.fail(f"the shared corpus is missing at {CORPUS}", pytrace=False)
    return [files[(start + index * step) % len(files)] for index in range(count)]


@contextlib.contextmanager
def imap_session(server: ServerThread) -> Iterator[imaplib.IMAP4]:
    """An imaplib session logged in as the test user, for arranging and checking."""
    client = server.imaplib_client(USER)
    try:
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.abort, OSError):
            client.logout()


def ok(result: tuple[str, list]) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def quote(name: str) -> str:
    """An IMAP quoted string (imaplib sends mailbox names as given)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def append_all(
    client: imaplib.IMAP4, mailbox: str, messages: Sequence[bytes], flags: str = ""
) -> None:
    for raw in messages:
        ok(client.append(mailbox, flags or None, None, raw))


def password() -> str:
    return PASSWORD


# Names that have broken servers and clients: spaces, quotes, a backslash, Polish,
# German, Japanese and emoji (modified UTF-7 under IMAP4rev1), and a deep hierarchy.
TRICKY_NAMES = (
    'Spaces and "quotes"',
    "Back\\slash",
    "Zażółć gęślą jaźń",
    "Grüße",
    "日本語/受信箱",
    "Emoji 📬",
    "Deep/er/and/deeper/still",
)

MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
SYNCED_FLAGS = frozenset(MAILDIR_FLAGS.values())

# A mailbox's content as a sync client should reproduce it: each message's bytes
# with LF line ends (Maildir clients store LF) and its flags.
Snapshot = dict[str, list[tuple[bytes, frozenset[str]]]]


def imapclient_session(server: ServerThread) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    client.login(USER, PASSWORD)
    return client


def server_snapshot(server: ServerThread) -> Snapshot:
    """Every selectable mailbox with its messages, read with IMAPClient."""
    snapshot: Snapshot = {}
    client = imapclient_session(server)
    try:
        for attributes, _, name in client.list_folders():
            if b"\\Noselect" in attributes:
                continue
            client.select_folder(name, readonly=True)
            uids = client.search()
            fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            snapshot[name] = sorted(
                (
                    without_tuid(item[b"BODY[]"].replace(b"\r\n", b"\n")),
                    frozenset(f.decode() for f in item[b"FLAGS"]) & SYNCED_FLAGS,
                )
                for item in fetched.values()
            )
    finally:
        client.logout()
    return snapshot


def without_tuid(message: bytes) -> bytes:
    """mbsync marks the messages it propagates with an X-TUID header so it can find
    them again after an interruption; it is mbsync's bookkeeping, not content."""
    header, separator, body = message.partition(b"\n\n")
    lines = [line for line in header.split(b"\n") if not line.startswith(b"X-TUID: ")]
    return b"\n".join(lines) + separator + body


def maildir_messages(folder: Path) -> list[tuple[bytes, frozenset[str]]]:
    """A Maildir folder's messages with the flags encoded in their file names."""
    found = []
    for sub in ("new", "cur"):
        for path in (folder / sub).iterdir():
            letters = path.name.partition(":2,")[2]
            flags = frozenset(
                MAILDIR_FLAGS[letter] for letter in letters if letter in MAILDIR_FLAGS
            )
            found.append((without_tuid(path.read_bytes().replace(b"\r\n", b"\n")), flags))
    return sorted(found)


def _label(message: bytes) -> str:
    subject = next((ln for ln in message.split(b"\n") if ln.lower().startswith(b"subject:")), b"")
    return f"{len(message)} bytes {subject[:60]!r}"


def snapshot_difference(local: Snapshot, remote: Snapshot) -> str:
    """A readable account of how two snapshots differ ("" when they are equal)."""
    lines = []
    for name in sorted(set(local) | set(remote)):
        if name not in remote:
            lines.append(f"{name!r}: only local ({len(local[name])} messages)")
        elif name not in local:
            lines.append(f"{name!r}: only on the server ({len(remote[name])} messages)")
        elif local[name] != remote[name]:
            lines.append(f"{name!r}:")
            for body, flags in sorted(set(local[name]) - set(remote[name])):
                lines.append(f"   only local: {_label(body)} {sorted(flags)}")
            for body, flags in sorted(set(remote[name]) - set(local[name])):
                lines.append(f"   only on the server: {_label(body)} {sorted(flags)}")
    return "\n".join(lines)
