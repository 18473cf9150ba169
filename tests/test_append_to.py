"""Storage.append_to (one hand-off per delivery: MIME analysis and the transaction on the
writer thread when it is idle), and the LMTP and APPEND paths built on it."""

from __future__ import annotations

import asyncio
import datetime
import smtplib
import threading
from pathlib import Path

import pytest
from aiosmtpd.lmtp import LMTP

from mailhaven.mailflow.lmtp import MailhavenLMTP
from mailhaven.mailflow.messages import prepare
from mailhaven.storage import SqliteStorage
from mailhaven.storage.interface import MailboxNotFound, NewMessage, UserNotFound
from tests.support import ServerThread, count_reads, run_with_storage

RAW = b"From: Bob <bob@example.org>\r\nSubject: hello\r\n\r\nHi Alice.\r\n"
WHEN = datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.UTC)


def build(threads: list[str]):  # noqa: ANN201
    """A prepare callable that notes the thread it ran on."""

    def prepare_one() -> list[NewMessage]:
        threads.append(threading.current_thread().name)
        return [prepare(RAW, (), WHEN)]

    return prepare_one


def test_idle_writer_prepares_and_commits_in_one_hand_off(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "x")
        threads: list[str] = []
        result = await storage.append_to(user.id, "INBOX", build(threads))
        assert threads and threads[0].startswith("mailhaven-db-writer")
        inbox = await storage.get_mailbox(user.id, "INBOX")
        assert result.uidvalidity == inbox.uidvalidity
        assert result.destination_uids == (1,)
        (content,) = await storage.fetch_content(inbox.id, [1], raw=True, metadata=False)
        assert content.raw == RAW
        # The wire items given by prepare are what FETCH ENVELOPE serves.
        wire = await storage.fetch_wire(inbox.id, [1])
        assert wire[1].envelope.startswith(b'(NIL "hello"')

    run_with_storage(tmp_path / "test.db", body)


def test_busy_writer_prepares_elsewhere_meanwhile(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "x")
        release = threading.Event()
        blocker = asyncio.ensure_future(storage._write(lambda tx: release.wait(10)))
        await asyncio.sleep(0)
        threads: list[str] = []
        delivery = asyncio.ensure_future(storage.append_to(user.id, "INBOX", build(threads)))
        while not threads:  # prepared while the writer is still held by the blocker
            await asyncio.sleep(0.01)
        assert not threads[0].startswith("mailhaven-db-writer")
        release.set()
        await blocker
        assert (await delivery).destination_uids == (1,)

    run_with_storage(tmp_path / "test.db", body)


def test_fallback_and_missing_mailboxes(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "x")
        archive = await storage.append_to(user.id, "Archive", build([]), fallback="INBOX")
        archive_box = await storage.get_mailbox(user.id, "Archive")
        assert archive.uidvalidity == archive_box.uidvalidity
        fallen = await storage.append_to(user.id, "Nope", build([]), fallback="INBOX")
        inbox = await storage.get_mailbox(user.id, "INBOX")
        assert (fallen.uidvalidity, fallen.destination_uids) == (inbox.uidvalidity, (1,))
        with pytest.raises(MailboxNotFound):
            await storage.append_to(user.id, "Nope", build([]))
        # A \\Noselect placeholder takes no messages either.
        await storage.create_mailbox(user.id, "Parent/Child")
        await storage.delete_mailbox(user.id, "Parent")
        with pytest.raises(MailboxNotFound):
            await storage.append_to(user.id, "Parent", build([]))
        assert (await storage.mailbox_counts(inbox.id)).messages == 1

    run_with_storage(tmp_path / "test.db", body)


def test_local_delivery_needs_an_enabled_account(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "x")
        await storage.set_disabled("alice", True)
        with pytest.raises(UserNotFound):
            await storage.append_to(user.id, "INBOX", build([]), account_must_be_enabled=True)
        # APPEND by a session that is already logged in is not a delivery.
        result = await storage.append_to(user.id, "INBOX", build([]))
        assert result.destination_uids == (1,)
        await storage.delete_user("alice")
        with pytest.raises(UserNotFound):
            await storage.append_to(user.id, "INBOX", build([]), account_must_be_enabled=True)

    run_with_storage(tmp_path / "test.db", body)


ADDRESSES = [
    "<sender@example.net>",
    "<a@b> SIZE=100 BODY=8BITMIME",
    " <x.y+z@localhost>",
    "<>",
    "a@b",
    '<"q r"@b>',
    "<a..b@c>",
    "<@r:a@b>",
    "<a@[1.2.3.4]>",
    "<.a@b>",
    "<Ünï@b>",
    "<a@b>x",
    "<a@b> ",
    "<a@b>  X=1",
    "<a@b>\tX",
    "<a@b",
    "",
]


@pytest.mark.parametrize("limit", [0, 3])
def test_plain_paths_parse_as_aiosmtpd_parses_them(limit: int) -> None:
    ours, theirs = MailhavenLMTP.__new__(MailhavenLMTP), LMTP.__new__(LMTP)
    ours.local_part_limit = theirs.local_part_limit = limit
    for address in ADDRESSES:
        assert ours._getaddr(address) == theirs._getaddr(address), address


@pytest.fixture
def server(tmp_path: Path):
    server = ServerThread(tmp_path).start()
    server.add_user("alice")
    yield server
    server.stop()


def test_lmtp_recipient_disabled_after_rcpt_is_refused_at_data(server: ServerThread) -> None:
    client = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=30)
    client.ehlo("test.example")
    client.mail("bob@example.org")
    assert client.rcpt("alice@localhost")[0] == 250
    server.call(server.storage.set_disabled("alice", True))
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(RAW + b".\r\n")
    code, text = client.getreply()
    client.quit()
    assert (code, text[:5]) == (550, b"5.1.1")


def test_append_to_a_missing_mailbox_is_trycreate_and_stores_nothing(
    server: ServerThread,
) -> None:
    raw = server.raw()
    raw.login("alice")
    reply = raw.command(b"a1", b"APPEND Nope {%d+}\r\n" % len(RAW) + RAW)
    assert reply[-1].startswith(b"a1 NO [TRYCREATE]")
    reply = raw.command(b"a2", b"APPEND INBOX {%d+}\r\n" % len(RAW) + RAW)
    assert b"[APPENDUID " in reply[-1] and reply[-1].endswith(b" 1] APPEND completed")
    raw.close()


def test_analyze_parses_each_header_block_once_and_forgets_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailhaven.mime import analyze, headers

    raw = (
        b"From: a@example.org\r\nSubject: two parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n"
    )
    expected = analyze(raw)
    blocks: list[tuple[int, int]] = []
    real = headers._parse_fields

    def counting(data: bytes, start: int, end: int):  # noqa: ANN202
        blocks.append((start, end))
        return real(data, start, end)

    monkeypatch.setattr(headers, "_parse_fields", counting)
    assert analyze(raw) == expected
    assert len(blocks) == len(set(blocks))  # each block parsed once within analyze
    assert headers._analysis.raw is None  # nothing of the message kept afterwards
    headers.parse_fields(raw, 0, 20)
    headers.parse_fields(raw, 0, 20)
    assert blocks[-2:] == [(0, 20), (0, 20)]  # outside analyze, no memo


def test_account_lookup_is_read_on_the_loop_thread(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        await storage.create_user("Alice@example.com", "x")
        reads = count_reads(storage)
        user = await storage.get_user("alice@EXAMPLE.com")  # names are case-insensitive
        assert user is not None and user.name == "Alice@example.com"
        assert await storage.get_user("bob") is None
        assert reads == []
        # A thread other than the loop's cannot use the loop's connection: the readers.
        assert await asyncio.to_thread(asyncio.run, storage.get_user("nobody")) is None
        assert reads == ["_get_user"]

    run_with_storage(tmp_path / "test.db", body)
