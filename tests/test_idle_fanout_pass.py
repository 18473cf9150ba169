"""IDLE's fan-out pass (mailhaven/imap/idle_fanout.py): parked idlers are served in one
sweep per change, the others are woken to refresh themselves, and every idler still
gets what RFC 3501/9051 promise it (EXISTS, one \\Recent, EXPUNGE or VANISHED)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable
from pathlib import Path

from mailhaven.codec.responses import Response
from mailhaven.imap.idle_fanout import IdleFanOut
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.mime import analyze
from mailhaven.storage.interface import NewMessage
from mailhaven.storage.sqlite import SqliteStorage
from tests.support import RawClient, ServerThread, alice_inbox, count_reads, mail, run_with_storage


class _Waiter:
    def __init__(self, parked: bool = True) -> None:
        self.parked = parked
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1
        self.parked = False  # a woken IDLE runs until it waits again


class _Session:
    """What the pass uses of a session: its view and its output."""

    def __init__(self, view: SelectedMailbox, writable: bool = True) -> None:
        self.selected: SelectedMailbox | None = view
        self.writable = writable
        self.sent = b""

    def can_send_now(self) -> bool:
        return self.writable

    def send_now(self, items: Iterable[Response]) -> None:
        assert self.writable
        self.sent += b"".join(item.encode() for item in items)


def _new_message(n: int) -> NewMessage:
    return NewMessage(
        raw=mail(n),
        flags=frozenset(),
        internal_date=datetime.datetime(2024, 1, n, tzinfo=datetime.UTC),
        metadata=analyze(mail(n)).metadata.to_bytes(),
    )


async def _settle(fan_out: IdleFanOut) -> None:
    while fan_out._tasks:  # noqa: SLF001 (the pass runs in a task of its own)
        await asyncio.sleep(0.001)


def _with_inbox(tmp_path: Path, scenario):  # noqa: ANN001, ANN202
    """``scenario(storage, inbox)`` on a fresh store with alice's INBOX."""

    async def run(storage: SqliteStorage):  # noqa: ANN202
        return await scenario(storage, await alice_inbox(storage))

    return run_with_storage(tmp_path / "store.db", run)


def test_parked_idlers_are_served_in_one_pass_with_one_read(tmp_path: Path) -> None:
    async def scenario(storage, inbox):  # noqa: ANN001, ANN202
        fan_out = IdleFanOut(storage)
        idlers = []
        for _ in range(5):
            session = _Session(await SelectedMailbox.open(storage, inbox, readonly=False))
            waiter = _Waiter()
            fan_out.enter(session, waiter)  # type: ignore[arg-type]
            idlers.append((session, waiter))
        calls = count_reads(storage)
        await storage.append(inbox.id, [_new_message(1)])
        await _settle(fan_out)
        reads = calls.count("_changes_since")
        # The one that owes the \Recent claim was woken to make it; its refresh does.
        claimers = [(s, w) for s, w in idlers if w.wakes]
        for session, _waiter in claimers:
            assert session.selected is not None
            await session.selected.refresh(storage)
        return idlers, claimers, reads

    idlers, claimers, reads = _with_inbox(tmp_path, scenario)
    assert reads == 1
    assert all(session.sent == b"* 1 EXISTS\r\n" for session, _ in idlers)
    assert len(claimers) == 1
    # RFC 3501 section 2.3.2: exactly one session holds the new message's \Recent.
    assert [len(session.selected.recent) for session, _ in idlers].count(1) == 1
    assert claimers[0][0].selected.recent == {1}


def test_busy_or_unwritable_idlers_are_woken_and_left_to_refresh(tmp_path: Path) -> None:
    async def scenario(storage, inbox):  # noqa: ANN001, ANN202
        fan_out = IdleFanOut(storage)
        served = _Session(await SelectedMailbox.open(storage, inbox, readonly=True))
        slow_reader = _Session(
            await SelectedMailbox.open(storage, inbox, readonly=True), writable=False
        )
        busy = _Session(await SelectedMailbox.open(storage, inbox, readonly=True))
        waiters = [_Waiter(), _Waiter(), _Waiter(parked=False)]
        for session, waiter in zip((served, slow_reader, busy), waiters, strict=True):
            fan_out.enter(session, waiter)  # type: ignore[arg-type]
        await storage.append(inbox.id, [_new_message(1)])
        await _settle(fan_out)
        return served, slow_reader, busy, waiters

    served, slow_reader, busy, waiters = _with_inbox(tmp_path, scenario)
    assert served.sent == b"* 1 EXISTS\r\n"
    assert served.selected.exists == 1
    assert [w.wakes for w in waiters] == [0, 1, 1]  # read-only: nobody owes a claim
    for session in (slow_reader, busy):
        assert session.sent == b""
        assert session.selected.exists == 0  # its own refresh will see the message


def test_idlers_at_different_modseqs_each_get_their_own_changes(tmp_path: Path) -> None:
    async def scenario(storage, inbox):  # noqa: ANN001, ANN202
        fan_out = IdleFanOut(storage)
        behind = _Session(await SelectedMailbox.open(storage, inbox, readonly=True))
        await storage.append(inbox.id, [_new_message(1)])
        ahead = _Session(await SelectedMailbox.open(storage, inbox, readonly=True))
        for session in (behind, ahead):
            fan_out.enter(session, _Waiter())  # type: ignore[arg-type]
        calls = count_reads(storage)
        await storage.append(inbox.id, [_new_message(2)])
        await _settle(fan_out)
        return behind, ahead, calls.count("_changes_since")

    behind, ahead, reads = _with_inbox(tmp_path, scenario)
    assert behind.sent == b"* 2 EXISTS\r\n"
    assert ahead.sent == b"* 2 EXISTS\r\n"
    assert list(behind.selected.uids) == list(ahead.selected.uids) == [1, 2]
    assert reads == 2


def test_an_idler_that_left_is_not_served(tmp_path: Path) -> None:
    async def scenario(storage, inbox):  # noqa: ANN001, ANN202
        fan_out = IdleFanOut(storage)
        session = _Session(await SelectedMailbox.open(storage, inbox, readonly=True))
        mailbox_id = fan_out.enter(session, _Waiter())  # type: ignore[arg-type]
        assert mailbox_id == inbox.id
        fan_out.leave(mailbox_id, session)  # type: ignore[arg-type]
        await storage.append(inbox.id, [_new_message(1)])
        await _settle(fan_out)
        return session, storage.changes._listeners  # noqa: SLF001

    session, listeners = _with_inbox(tmp_path, scenario)
    assert session.sent == b""
    assert not listeners  # the last idler gone, the fan-out no longer listens


# ---------------------------------------------------------------------- over sockets


def _idle(server: ServerThread, enable: bytes | None = None) -> RawClient:
    client = server.raw()
    client.login("alice")
    if enable is not None:
        assert client.command(b"E", b"ENABLE " + enable)[-1].startswith(b"E OK")
    assert client.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    client.send(b"I IDLE\r\n")
    assert client.read_line().startswith(b"+ ")
    return client


def _end_idle(client: RawClient) -> list[bytes]:
    client.send(b"DONE\r\n")
    lines = client.read_until_tagged(b"I")
    assert lines[-1] == b"I OK IDLE terminated"
    return lines[:-1]


def test_idlers_get_flag_changes_and_expunges_in_their_own_dialect(server) -> None:
    writer = server.raw()
    writer.login("alice")
    for n in (1, 2):
        message = mail(n)
        writer.send(b"A APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        assert writer.read_until_tagged(b"A")[-1].startswith(b"A OK")
    assert writer.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    plain = _idle(server)
    condstore = _idle(server, b"CONDSTORE")
    qresync = _idle(server, b"QRESYNC")

    assert writer.command(b"F", b"UID STORE 2 +FLAGS (\\Flagged)")[-1].startswith(b"F OK")
    assert plain.read_line() == b"* 2 FETCH (UID 2 FLAGS (\\Flagged))"
    modseq_line = condstore.read_line()
    assert modseq_line.startswith(b"* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (")
    assert qresync.read_line().startswith(b"* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (")

    writer.command(b"D", b"UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    for client in (plain, condstore, qresync):
        assert client.read_line().startswith(b"* 1 FETCH (UID 1 FLAGS (\\Deleted)")
    assert writer.command(b"X", b"EXPUNGE")[-1].startswith(b"X OK")
    # RFC 9051 section 7.5.1 (EXPUNGE may be sent during IDLE); RFC 7162 section 3.2.10.
    assert plain.read_line() == b"* 1 EXPUNGE"
    assert condstore.read_line() == b"* 1 EXPUNGE"
    assert qresync.read_line() == b"* VANISHED 1"
    for client in (plain, condstore, qresync):
        _end_idle(client)
        lines = client.command(b"N", b"UID SEARCH ALL")
        assert b"* SEARCH 2" in lines
        client.close()
    writer.close()


def test_the_recent_claimer_reports_recent_before_its_idle_ends(server) -> None:
    idlers = [_idle(server) for _ in range(5)]
    writer = server.imaplib_client("alice")
    writer.append("INBOX", None, None, mail(1))
    for client in idlers:
        assert client.read_line() == b"* 1 EXISTS"
    untagged = [_end_idle(client) for client in idlers]
    assert sum(lines == [b"* 1 RECENT"] for lines in untagged) == 1
    assert sum(lines == [] for lines in untagged) == 4
    writer.logout()
