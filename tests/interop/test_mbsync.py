"""isync's mbsync: two-way sync of several folders into a local Maildir, over
implicit TLS with the server's certificate verified.

mbsync 1.4 keeps IMAP4rev1 modified UTF-7 names as the local folder names, and
stores messages with LF line ends; both are mbsync's documented behaviour.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mailhaven.codec.mailbox_names import encode_mutf7
from tests.interop.helpers import (
    TRICKY_NAMES,
    USER,
    Snapshot,
    append_all,
    corpus_sample,
    imap_session,
    maildir_messages,
    ok,
    password,
    quote,
    require_program,
    run,
    server_snapshot,
    snapshot_difference,
)
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(120)

LOCAL_NEW = b"From: me@example.org\nSubject: written offline\n\nComposed in the Maildir.\n"
SERVER_NEW = b"From: you@example.org\r\nSubject: arrived later\r\n\r\nDelivered meanwhile.\r\n"


def mbsyncrc(server: ServerThread, cert_file: Path, maildir: Path) -> str:
    return f"""\
IMAPAccount mailhaven
Host 127.0.0.1
Port {server.imaps_port}
User {USER}
Pass "{password()}"
SSLType IMAPS
CertificateFile {cert_file}

IMAPStore remote
Account mailhaven

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel everything
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
"""


def local_path(maildir: Path, name: str) -> Path:
    return maildir / encode_mutf7(name).decode("ascii")


def local_snapshot(maildir: Path) -> Snapshot:
    folders = {p.parent for p in maildir.rglob("cur")}
    snapshot: Snapshot = {}
    for folder in folders:
        name = str(folder.relative_to(maildir))
        snapshot[name] = maildir_messages(folder)
    return snapshot


def mutf7_names(snapshot: Snapshot) -> Snapshot:
    return {encode_mutf7(name).decode("ascii"): content for name, content in snapshot.items()}


def assert_converged(maildir: Path, remote: Snapshot) -> None:
    difference = snapshot_difference(local_snapshot(maildir), mutf7_names(remote))
    assert not difference, difference


def seed(server: ServerThread) -> list[bytes]:
    inbox = [path.read_bytes() for path in corpus_sample(12)]
    with imap_session(server) as client:
        append_all(client, "INBOX", inbox)
        for index, name in enumerate(TRICKY_NAMES):
            ok(client.create(quote(encode_mutf7(name).decode())))
            extra = corpus_sample(2, start=300 + index)
            append_all(client, quote(encode_mutf7(name).decode()), [p.read_bytes() for p in extra])
    return inbox


def message_file(folder: Path, uid: int) -> Path:
    return next(
        p for sub in ("new", "cur") for p in (folder / sub).iterdir() if f",U={uid}:" in p.name
    )


def test_two_way_sync_converges(server: ServerThread, cert_file: Path, tmp_path: Path) -> None:
    mbsync = require_program("mbsync")
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(mbsyncrc(server, cert_file, maildir))
    sync = [mbsync, "-c", config, "-a"]
    inbox = seed(server)

    run(sync)
    # Every folder, tricky names included, arrives byte for byte (LF line ends).
    assert_converged(maildir, server_snapshot(server))
    local_inbox = sorted(body for body, _ in maildir_messages(maildir / "INBOX"))
    assert local_inbox == sorted(raw.replace(b"\r\n", b"\n") for raw in inbox)

    # Changes on the server: new mail, a flag, a delete, a move, a rename.
    with imap_session(server) as client:
        append_all(client, "INBOX", [SERVER_NEW])
        ok(client.select("INBOX"))
        ok(client.uid("STORE", "1", "+FLAGS", "(\\Flagged)"))
        ok(client.uid("STORE", "2", "+FLAGS", "(\\Deleted)"))
        ok(client.expunge())
        ok(client.uid("MOVE", "3", quote(encode_mutf7("Grüße").decode())))
        ok(client.create("Renamed"))
        ok(client.rename('"Deep/er/and/deeper/still"', '"Deep/er/and/deeper/moved"'))
    # Changes in the Maildir: a message written offline, one read, one deleted.
    polish = local_path(maildir, "Zażółć gęślą jaźń")
    (polish / "new" / f"{time.time_ns()}.offline.host").write_bytes(LOCAL_NEW)
    read = message_file(maildir / "INBOX", 4)
    read.rename(read.parent.parent / "cur" / (read.name.partition(":2,")[0] + ":2,S"))
    message_file(maildir / "INBOX", 5).unlink()

    second = run(sync)
    # mbsync sees a rename as a deletion plus a creation, and for safety never
    # deletes a non-empty folder: the old one stays local, with a warning.
    stale = local_path(maildir, "Deep/er/and/deeper/still")
    assert b"near side box Deep/er/and/deeper/still is not empty" in second.stderr
    assert len(maildir_messages(stale)) == 2
    # Deleting its cur/ tells mbsync the user deleted it too.
    shutil.rmtree(stale / "cur")
    run(sync)
    converged = server_snapshot(server)
    assert_converged(maildir, converged)

    # Nothing was lost and every change arrived on the other side.
    inbox_now = {body: flags for body, flags in converged["INBOX"]}
    lf = [raw.replace(b"\r\n", b"\n") for raw in inbox]
    assert inbox_now[lf[0]] == {"\\Flagged"}
    assert lf[1] not in inbox_now and lf[2] not in inbox_now and lf[4] not in inbox_now
    assert inbox_now[lf[3]] == {"\\Seen"}
    assert SERVER_NEW.replace(b"\r\n", b"\n") in inbox_now
    assert lf[2] in {body for body, _ in converged["Grüße"]}
    assert LOCAL_NEW in {body for body, _ in converged["Zażółć gęślą jaźń"]}
    assert "Deep/er/and/deeper/still" not in converged
    assert len(converged["Deep/er/and/deeper/moved"]) == 2
    assert "Renamed" in converged

    # A third sync finds nothing left to do.
    run(sync)
    assert server_snapshot(server) == converged
    assert_converged(maildir, converged)
