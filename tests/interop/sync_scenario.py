"""The round trip every Maildir sync client goes through: seed the server, sync,
change both sides (new mail, flags, deletes, a move, a folder renamed), sync again
and check that both sides hold the same messages and nothing was lost."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mailhaven.codec.mailbox_names import encode_mutf7
from tests.interop.helpers import (
    Snapshot,
    append_all,
    corpus_sample,
    imap_session,
    maildir_messages,
    ok,
    quote,
    snapshot_difference,
)
from tests.support import ServerThread

LOCAL_NEW = b"From: me@example.org\nSubject: written offline\n\nComposed in the Maildir.\n"
SERVER_NEW = b"From: you@example.org\r\nSubject: arrived later\r\n\r\nDelivered meanwhile.\r\n"
OFFLINE_FOLDER = "Zażółć gęślą jaźń"
MOVE_TARGET = "Grüße"
RENAMED_FROM = "Deep/er/and/deeper/still"
RENAMED_TO = "Deep/er/and/deeper/moved"


def rev1_name(name: str) -> str:
    """*name* as an IMAP4rev1 quoted mailbox argument (modified UTF-7)."""
    return quote(encode_mutf7(name).decode("ascii"))


@dataclass
class MaildirLayout:
    """Where a client keeps each IMAP folder: *local_name* maps a server name to the
    folder's path below *root*."""

    root: Path
    local_name: Callable[[str], str]
    # How a message is compared: the bytes themselves unless the client rewrites them.
    normalise: Callable[[bytes], bytes] = bytes

    def folder(self, name: str) -> Path:
        return self.root / self.local_name(name)

    def snapshot(self) -> Snapshot:
        return {
            str(cur.parent.relative_to(self.root)): maildir_messages(cur.parent)
            for cur in self.root.rglob("cur")
        }

    def assert_matches(self, remote: Snapshot, *, ignore: Iterable[str] = ()) -> None:
        local = self._normalised(self.snapshot())
        expected = self._normalised(
            {self.local_name(name): content for name, content in remote.items()}
        )
        for name in ignore:
            local.pop(self.local_name(name), None)
        difference = snapshot_difference(local, expected)
        assert not difference, difference

    def _normalised(self, snapshot: Snapshot) -> Snapshot:
        return {
            name: sorted((self.normalise(body), flags) for body, flags in content)
            for name, content in snapshot.items()
        }

    def message_file(self, name: str, uid: int) -> Path:
        """The file of the message with server UID *uid* (both mbsync and OfflineIMAP
        write ",U=<uid>" into the file name)."""
        pattern = re.compile(rf",U={uid}[,:]")
        folder = self.folder(name)
        return next(
            p for sub in ("new", "cur") for p in (folder / sub).iterdir() if pattern.search(p.name)
        )


def seed(server: ServerThread, folders: Iterable[str]) -> list[bytes]:
    """Twelve corpus messages in INBOX and two in each of *folders*."""
    inbox = [path.read_bytes() for path in corpus_sample(12)]
    with imap_session(server) as client:
        append_all(client, "INBOX", inbox)
        for index, name in enumerate(folders):
            ok(client.create(rev1_name(name)))
            extra = [path.read_bytes() for path in corpus_sample(2, start=300 + index)]
            append_all(client, rev1_name(name), extra)
    return inbox


def change_server(server: ServerThread) -> None:
    """New mail, a flag, a delete, a move and a folder renamed on the server."""
    with imap_session(server) as client:
        append_all(client, "INBOX", [SERVER_NEW])
        ok(client.select("INBOX"))
        ok(client.uid("STORE", "1", "+FLAGS", "(\\Flagged)"))
        ok(client.uid("STORE", "2", "+FLAGS", "(\\Deleted)"))
        ok(client.expunge())
        ok(client.uid("MOVE", "3", rev1_name(MOVE_TARGET)))
        ok(client.rename(rev1_name(RENAMED_FROM), rev1_name(RENAMED_TO)))


def change_local(layout: MaildirLayout) -> None:
    """A message written offline, one marked read, one deleted in the Maildir."""
    offline = layout.folder(OFFLINE_FOLDER) / "new" / f"{time.time_ns()}.offline.localhost"
    offline.write_bytes(LOCAL_NEW)
    read = layout.message_file("INBOX", 4)
    read.rename(read.parent.parent / "cur" / (read.name.partition(":2,")[0] + ":2,S"))
    layout.message_file("INBOX", 5).unlink()


def assert_changes_arrived(converged: Snapshot, inbox: list[bytes]) -> None:
    """Every change made on either side is on the server, and nothing else went."""
    inbox_now = dict(converged["INBOX"])
    lf = [raw.replace(b"\r\n", b"\n") for raw in inbox]
    assert inbox_now[lf[0]] == {"\\Flagged"}
    assert lf[1] not in inbox_now and lf[2] not in inbox_now and lf[4] not in inbox_now
    assert inbox_now[lf[3]] == {"\\Seen"}
    assert all(inbox_now[raw] == frozenset() for raw in lf[5:])
    assert SERVER_NEW.replace(b"\r\n", b"\n") in inbox_now
    assert lf[2] in {body for body, _ in converged[MOVE_TARGET]}
    assert LOCAL_NEW in {body for body, _ in converged[OFFLINE_FOLDER]}
    assert len(converged[RENAMED_TO]) == 2
