"""Byte-level edge cases over a real socket: literals, limits, pipelining, TLS,
IMAP4rev2 mode, and bad input that must get BAD/NO and never a dropped connection."""

from __future__ import annotations

import socket
import ssl

import pytest

from mailhaven.config import LimitsConfig
from tests.support import PASSWORD, ServerThread, insecure_context


@pytest.fixture
def server(tmp_path):
    running = ServerThread(
        tmp_path, limits=LimitsConfig(max_line_length=8192, max_literal_size=100_000)
    ).start()
    running.add_user("alice")
    yield running
    running.stop()


@pytest.fixture
def raw(client):
    """conftest's logged-in ``client`` on this module's server, under its old name."""
    return client


def test_greeting_has_capabilities(server):
    client = server.raw()
    assert client.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2")
    client.close()


def test_synchronising_literal_gets_continuation(raw):
    msg = b"Subject: hi\r\n\r\nbody\r\n"
    raw.send(b"a1 APPEND INBOX {%d}\r\n" % len(msg))
    assert raw.read_line().startswith(b"+ ")
    raw.send(msg + b"\r\n")
    assert raw.read_until_tagged(b"a1")[-1].startswith(b"a1 OK [APPENDUID")


def test_non_synchronising_literal_and_pipelining(raw):
    msg = b"Subject: hi\r\n\r\nbody\r\n"
    raw.send(
        b"a1 APPEND INBOX {%d+}\r\n%s\r\na2 SELECT INBOX\r\na3 FETCH 1 (BODY.PEEK[])\r\n"
        % (len(msg), msg)
    )
    assert raw.read_until_tagged(b"a1")[-1].startswith(b"a1 OK")
    assert raw.read_until_tagged(b"a2")[-1].startswith(b"a2 OK [READ-WRITE]")
    lines = raw.read_until_tagged(b"a3")
    assert lines[0] == b"* 1 FETCH (BODY[] {%d}" % len(msg)
    assert lines[-1].startswith(b"a3 OK")


def test_literal_over_limit_is_refused_without_continuation(raw):
    raw.send(b"a1 APPEND INBOX {200000}\r\n")
    line = raw.read_line()
    assert line.startswith(b"a1 NO [TOOBIG]") or line.startswith(b"a1 BAD"), line
    assert raw.command(b"a2", b"NOOP")[-1] == b"a2 OK NOOP completed"


def test_non_synchronising_literal_over_limit_is_skipped(raw):
    raw.send(b"a1 APPEND INBOX {200000+}\r\n" + b"x" * 200000 + b"\r\n")
    line = raw.read_line()
    assert line.startswith(b"a1 "), line
    assert not line.startswith(b"a1 OK")
    assert raw.command(b"a2", b"NOOP")[-1] == b"a2 OK NOOP completed"


def test_line_over_limit_is_refused(raw):
    raw.send(b"a1 NOOP " + b"x" * 20000 + b"\r\n")
    line = raw.read_line()
    assert b"BAD" in line
    assert raw.command(b"a2", b"NOOP")[-1] == b"a2 OK NOOP completed"


@pytest.mark.parametrize(
    "line",
    [
        b"a1 FROB",
        b"a1 FETCH",
        b"a1 FETCH 1 (FLAGS",
        b"a1 SELECT",
        b'a1 LOGIN "unterminated',
        b"a1 SEARCH NOTAKEY",
        b"a1 STORE 1 +FLAGS (\\Seen",
        b"a1 UID FROB 1",
        b"\xff\xfe\x00garbage",
        b"",
    ],
)
def test_malformed_commands_get_bad(raw, line):
    raw.send(line + b"\r\n")
    response = raw.read_line()
    assert b" BAD " in response or response.startswith(b"* BAD"), response
    assert raw.command(b"z", b"NOOP")[-1].startswith(b"z OK")


def test_sequence_number_out_of_range_is_bad(raw):
    raw.command(b"s", b"SELECT INBOX")
    assert raw.command(b"f", b"FETCH 5 FLAGS")[-1].startswith(b"f BAD")
    assert raw.command(b"u", b"UID FETCH 5 FLAGS")[-1].startswith(b"u OK")


def test_too_many_bad_commands_disconnects(tmp_path):
    running = ServerThread(tmp_path, limits=LimitsConfig(max_bad_commands=3)).start()
    try:
        client = running.raw()
        for _ in range(3):
            client.send(b"x FROB\r\n")
        lines = [client.read_line() for _ in range(4)]
        assert lines[-1].startswith(b"* BYE")
        with pytest.raises(ConnectionError):
            client.read_line()
    finally:
        running.stop()


def test_login_disabled_without_tls(tmp_path):
    running = ServerThread(tmp_path, allow_plaintext=False).start()
    running.add_user("alice")
    try:
        client = running.raw()
        assert b"LOGINDISABLED" in client.greeting and b"STARTTLS" in client.greeting
        assert b"AUTH=PLAIN" not in client.greeting
        lines = client.command(b"a", b'LOGIN alice "%s"' % PASSWORD.encode())
        assert lines[-1].startswith(b"a NO [PRIVACYREQUIRED]")
        # STARTTLS, then the same login works.
        assert client.command(b"b", b"STARTTLS")[-1].startswith(b"b OK")
        tls = insecure_context().wrap_socket(client.sock, server_hostname="localhost")
        client.sock, client.buffer = tls, b""
        caps = client.command(b"c", b"CAPABILITY")[0]
        assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps
        client.login("alice")
        client.close()
        # Implicit TLS port.
        imap = running.imaplib_tls_client()
        imap.login("alice", PASSWORD)
        imap.logout()
    finally:
        running.stop()


def test_starttls_discards_pipelined_plaintext(tmp_path):
    running = ServerThread(tmp_path, allow_plaintext=False).start()
    try:
        sock = socket.create_connection(("127.0.0.1", running.imap_port))
        sock.recv(4096)
        sock.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
        data = b""
        while b"a OK" not in data:
            data += sock.recv(4096)
        tls = insecure_context().wrap_socket(sock, server_hostname="localhost")
        tls.sendall(b"c NOOP\r\n")
        reply = tls.recv(4096)
        assert reply.startswith(b"c OK"), reply  # b CAPABILITY was dropped
        tls.close()
    finally:
        running.stop()


def test_imap4rev2_mode(raw):
    raw.command(b"a", b"APPEND INBOX {21+}\r\nSubject: x\r\n\r\nhello\r\n")
    lines = raw.command(b"e", b"ENABLE IMAP4rev2")
    assert lines[0] == b"* ENABLED IMAP4rev2"
    lines = raw.command(b"s", b"SELECT INBOX")
    assert not any(b"RECENT" in line for line in lines)
    assert any(line.startswith(b"* LIST (") for line in lines)
    lines = raw.command(b"f", b"SEARCH ALL")
    assert lines[0] == b'* ESEARCH (TAG "f") ALL 1'
    lines = raw.command(b"c", 'CREATE "Größe"'.encode())
    assert lines[-1].startswith(b"c OK")
    lines = raw.command(b"l", b'LIST "" "Gr*"')
    assert lines[0] == '* LIST (\\HasNoChildren) "/" "Größe"'.encode()


def test_binary_fetch_of_undecodable_part_is_unknown_cte(raw):
    msg = (
        b"Subject: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: x-unknown\r\n\r\nabc\r\n"
    )
    raw.command(b"a", b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
    raw.command(b"s", b"SELECT INBOX")
    lines = raw.command(b"f", b"FETCH 1 (BINARY[1])")
    assert lines[-1].startswith(b"f NO [UNKNOWN-CTE]")
    lines = raw.command(b"g", b"FETCH 1 (BODY.PEEK[1])")
    assert lines[-1].startswith(b"g OK")


def test_tls_handshake_on_implicit_port(server):
    with (
        socket.create_connection(("127.0.0.1", server.imaps_port)) as sock,
        insecure_context().wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.recv(4096).startswith(b"* OK")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(("127.0.0.1", server.imaps_port)) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")


def test_binary_append_with_nul_is_kept_and_sent_safely(raw):
    msg = b"Subject: nul\r\n\r\na\0b\r\n"
    lines = raw.command(b"a", b"APPEND INBOX ~{%d+}\r\n%s" % (len(msg), msg))
    assert lines[-1].startswith(b"a OK")
    raw.command(b"s", b"SELECT INBOX")
    # BODY[] may not carry NUL (RFC 9051 section 4.3): it is sent as 0x80.
    lines = raw.command(b"f", b"FETCH 1 (BODY.PEEK[])")
    assert lines[0] == b"* 1 FETCH (BODY[] {%d}" % len(msg)
    assert lines[1:4] == [b"Subject: nul", b"", b"a\x80b"]
    # BINARY returns the stored bytes in a literal8 (RFC 3516 section 4.2).
    lines = raw.command(b"g", b"FETCH 1 (BINARY.PEEK[1])")
    assert lines[0] == b"* 1 FETCH (BINARY[1] ~{5}"
    assert lines[1] == b"a\0b"
