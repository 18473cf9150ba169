"""LMTP delivery (RFC 2033) over real sockets: smtplib.LMTP, swaks, IDLE."""

from __future__ import annotations

import dataclasses
import shutil
import smtplib
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from mailhaven.config import QuotaConfig
from tests.support import ServerThread

MESSAGE = b"From: Bob <bob@example.org>\r\nSubject: hello\r\n\r\nHi Alice.\r\n"


@pytest.fixture
def server(tmp_path: Path):
    server = ServerThread(tmp_path).start()
    server.add_user("alice")
    server.add_user("carol@example.com")
    yield server
    server.stop()


def lmtp(server: ServerThread) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=30)
    client.ehlo("test.example")  # smtplib.LMTP sends LHLO
    return client


def messages_in(server: ServerThread, user: str, folder: str = "INBOX") -> list[bytes]:
    async def read() -> list[bytes]:
        account = await server.storage.get_user(user)
        mailbox = await server.storage.get_mailbox(account.id, folder)
        summaries = await server.storage.message_summaries(mailbox.id)
        contents = await server.storage.fetch_content(
            mailbox.id, [s.uid for s in summaries], raw=True, metadata=False
        )
        return [content.raw for content in contents]

    return server.call(read())


def test_per_recipient_replies_after_data(server: ServerThread) -> None:
    client = lmtp(server)
    client.mail("bob@example.org")
    assert client.rcpt("alice@localhost")[0] == 250
    code, text = client.rcpt("nobody@localhost")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert client.rcpt("carol@example.com")[0] == 250
    assert client.rcpt("alice")[0] == 250  # a bare local part
    assert client.rcpt("alice@other.example")[0] == 550  # not a served domain
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(MESSAGE + b".\r\n")
    # One reply per accepted recipient, in order (RFC 2033 section 4.2).
    replies = [client.getreply() for _ in range(3)]
    assert [code for code, _ in replies] == [250, 250, 250]
    assert all(text.startswith(b"2.0.0") for _, text in replies)
    client.quit()

    delivered = messages_in(server, "alice")
    assert len(delivered) == 2
    assert delivered[0] == (
        b"Return-Path: <bob@example.org>\r\nDelivered-To: alice@localhost\r\n" + MESSAGE
    )
    assert delivered[1].startswith(b"Return-Path: <bob@example.org>\r\nDelivered-To: alice\r\n")
    assert messages_in(server, "carol@example.com") == [
        b"Return-Path: <bob@example.org>\r\nDelivered-To: carol@example.com\r\n" + MESSAGE
    ]


def test_sendmail_and_address_extension_files_into_existing_folder(server: ServerThread) -> None:
    client = lmtp(server)
    refused = client.sendmail(
        "bob@example.org",
        ["alice+Archive@localhost", "alice+nosuchfolder@localhost", "carol+x@example.com"],
        MESSAGE,
    )
    client.quit()
    assert refused == {}
    assert len(messages_in(server, "alice", "Archive")) == 1
    assert len(messages_in(server, "alice", "INBOX")) == 1  # unknown folder: INBOX
    assert len(messages_in(server, "carol@example.com", "INBOX")) == 1


def test_storage_failure_answers_451_for_that_recipient(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = server.storage
    alice = server.call(storage.get_user("alice"))
    real_append_to = storage.append_to

    async def append_failing_for_alice(user_id, name, prepare, **options):  # noqa: ANN001, ANN003, ANN202
        if user_id == alice.id:
            raise sqlite3.OperationalError("database is locked")
        return await real_append_to(user_id, name, prepare, **options)

    monkeypatch.setattr(storage, "append_to", append_failing_for_alice)
    client = lmtp(server)
    client.mail("bob@example.org")
    client.rcpt("alice@localhost")
    client.rcpt("carol@example.com")
    client.putcmd("data")
    client.getreply()
    client.send(MESSAGE + b".\r\n")
    first, second = client.getreply(), client.getreply()
    client.quit()
    assert (first[0], first[1][:5]) == (451, b"4.3.0")
    assert second[0] == 250


def test_idle_client_sees_lmtp_delivery_at_once(server: ServerThread) -> None:
    raw = server.raw()
    raw.login("alice")
    raw.command(b"S", b"SELECT INBOX")
    raw.send(b"I IDLE\r\n")
    assert raw.read_line().startswith(b"+ ")
    client = lmtp(server)
    client.sendmail("bob@example.org", ["alice@localhost"], MESSAGE)
    client.quit()
    raw.sock.settimeout(10)  # a bound on failure only: EXISTS comes with the commit
    assert raw.read_line() == b"* 1 EXISTS"
    raw.send(b"DONE\r\n")
    assert raw.read_until_tagged(b"I")[-1].startswith(b"I OK")
    raw.close()


def test_swaks_delivers_over_lmtp(server: ServerThread) -> None:
    swaks = shutil.which("swaks")
    assert swaks, "swaks is not installed: apt-get install swaks (CI installs it in .ci/run)"
    result = subprocess.run(
        [
            swaks,
            "--protocol",
            "LMTP",
            "--server",
            "127.0.0.1",
            "--port",
            str(server.lmtp_port),
            "--from",
            "bob@example.org",
            "--to",
            "alice@localhost,nobody@localhost",
            "--header",
            "Subject: via swaks",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # swaks exits non-zero when a recipient is refused; the transcript shows each reply.
    assert "<** 550 5.1.1 nobody@localhost" in result.stdout, result.stdout
    assert "<-  250 2.0.0 alice@localhost: delivered" in result.stdout, result.stdout
    delivered = messages_in(server, "alice")
    assert len(delivered) == 1 and b"Subject: via swaks" in delivered[0]


def test_unix_socket_listener(tmp_path: Path) -> None:
    socket_path = tmp_path / "lmtp.sock"
    server = ServerThread(tmp_path)
    server.config = dataclasses.replace(server.config, lmtp_listen=socket_path)
    server.server.config = server.config
    server.start()
    try:
        server.add_user("alice")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(socket_path))
        client = smtplib.LMTP()
        client.sock = sock
        client.file = None
        assert client.getreply()[0] == 220
        client.ehlo("test")
        assert client.sendmail("bob@example.org", ["alice@localhost"], MESSAGE) == {}
        client.quit()
        assert len(messages_in(server, "alice")) == 1
    finally:
        server.stop()


def test_lines_over_1000_octets_are_delivered_unchanged(server: ServerThread) -> None:
    message = b"Subject: long\r\n\r\n" + b"x" * 5000 + b"\r\n"
    client = lmtp(server)
    assert client.sendmail("bob@example.org", ["alice@localhost"], message) == {}
    client.quit()
    assert messages_in(server, "alice")[0].endswith(message)


def test_over_quota_answers_552_for_that_recipient_only(tmp_path: Path) -> None:
    running = ServerThread(tmp_path, quota=QuotaConfig(default_messages=1)).start()
    try:
        running.add_user("alice")
        running.add_user("bob")
        client = lmtp(running)
        client.sendmail("x@example.org", ["alice@localhost"], MESSAGE)  # alice is now full
        client.mail("x@example.org")
        assert client.rcpt("alice@localhost")[0] == 250
        assert client.rcpt("bob@localhost")[0] == 250
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(MESSAGE + b".\r\n")
        replies = [client.getreply() for _ in range(2)]
        assert replies[0][0] == 552 and replies[0][1].startswith(b"5.2.2")
        assert replies[1][0] == 250
        client.quit()
        assert len(messages_in(running, "alice")) == 1
        assert len(messages_in(running, "bob")) == 1
    finally:
        running.stop()
