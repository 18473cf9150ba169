"""COMPRESS=DEFLATE (RFC 4978) over real sockets: plain, after STARTTLS, with IDLE,
and with a literal split across deflate blocks and TCP segments."""

from __future__ import annotations

import socket
import zlib

import pytest
from imapclient import IMAPClient

from mailhaven.deflate import DeflateStream
from tests.support import PASSWORD, ServerThread, insecure_context


class DeflateClient:
    """A byte-level client that speaks raw deflate after COMPRESS, like a real one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.plain = b""  # inflated (or, before COMPRESS, plain) bytes not yet read
        self.compressor: zlib._Compress | None = None
        self.decompressor: zlib._Decompress | None = None
        self.greeting = self.read_line()

    def send(self, data: bytes, *, flush: int = zlib.Z_SYNC_FLUSH) -> None:
        if self.compressor is not None:
            data = self.compressor.compress(data) + self.compressor.flush(flush)
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.plain:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            if self.decompressor is not None:
                chunk = self.decompressor.decompress(chunk)
            self.plain += chunk
        line, _, self.plain = self.plain.partition(b"\r\n")
        return line

    def read_until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.read_line())
            if lines[-1].startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.read_until_tagged(tag)

    def compress(self) -> list[bytes]:
        lines = self.command(b"Z", b"COMPRESS DEFLATE")
        assert lines[-1].startswith(b"Z OK"), lines
        assert not self.plain, "nothing may follow the OK uncompressed"
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decompressor = zlib.decompressobj(-15)
        return lines


def login(client: DeflateClient) -> None:
    lines = client.command(b"L", b'LOGIN alice "%s"' % PASSWORD.encode())
    assert lines[-1].startswith(b"L OK"), lines


def connect(server: ServerThread) -> DeflateClient:
    return DeflateClient(socket.create_connection(("127.0.0.1", server.imap_port), timeout=10))


def test_compress_is_advertised_after_login_and_commands_work_compressed(server):
    client = connect(server)
    login(client)
    capabilities = client.command(b"C", b"CAPABILITY")[0]
    assert b" COMPRESS=DEFLATE" in capabilities
    client.compress()
    assert client.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK [READ-WRITE]")
    assert client.command(b"N", b"NOOP") == [b"N OK NOOP completed"]
    client.sock.close()


def test_second_compress_is_refused_with_compressionactive(server):
    client = connect(server)
    login(client)
    client.compress()
    answer = client.command(b"Z2", b"COMPRESS DEFLATE")
    assert answer[-1].startswith(b"Z2 NO [COMPRESSIONACTIVE]")
    # Still compressed and still working after the refusal.
    assert client.command(b"N", b"NOOP")[-1] == b"N OK NOOP completed"


def test_compress_needs_authentication_and_a_known_algorithm(server):
    client = connect(server)
    assert client.command(b"Z", b"COMPRESS DEFLATE")[-1].startswith(b"Z BAD")
    login(client)
    assert client.command(b"Z", b"COMPRESS LZ4")[-1].startswith(b"Z BAD")
    assert client.command(b"N", b"NOOP")[-1] == b"N OK NOOP completed"  # not compressed


def test_literal_split_across_deflate_blocks_and_segments(server):
    client = connect(server)
    login(client)
    client.compress()
    message = b"Subject: split\r\n\r\n" + b"".join(
        b"line %05d of the body\r\n" % n for n in range(2000)
    )
    command = b"A APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n"
    # Cut inside the command line, in the literal and right before its final CRLF;
    # each piece is its own sync-flushed deflate block, some in one full-flush
    # block, sent as separate TCP segments.
    cuts = [0, 9, 30, 1000, 25000, len(command) - 1, len(command)]
    for index, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        flush = zlib.Z_FULL_FLUSH if index % 2 else zlib.Z_SYNC_FLUSH
        client.send(command[start:end], flush=flush)
    assert client.read_until_tagged(b"A")[-1].startswith(b"A OK [APPENDUID ")
    client.command(b"S", b"SELECT INBOX")
    client.send(b"F FETCH 1 BODY.PEEK[]\r\n")
    header = client.read_line()
    assert header == b"* 1 FETCH (BODY[] {%d}" % len(message)
    while len(client.plain) < len(message) + 3:
        client.plain += client.decompressor.decompress(client.sock.recv(65536))
    assert client.plain[: len(message)] == message
    client.plain = client.plain[len(message) :]
    assert client.read_until_tagged(b"F")[-1] == b"F OK FETCH completed"


def test_synchronising_literal_continuation_is_compressed(server):
    client = connect(server)
    login(client)
    client.compress()
    message = b"Subject: sync\r\n\r\nbody\r\n"
    client.send(b"A APPEND INBOX {%d}\r\n" % len(message))
    assert client.read_line().startswith(b"+ ")
    client.send(message + b"\r\n")
    assert client.read_until_tagged(b"A")[-1].startswith(b"A OK [APPENDUID ")


def test_idle_updates_arrive_at_once_through_compression(server):
    idler = connect(server)
    login(idler)
    idler.compress()
    idler.command(b"S", b"SELECT INBOX")
    idler.send(b"I IDLE\r\n")
    assert idler.read_line().startswith(b"+ ")
    other = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    other.login("alice", PASSWORD)
    other.append("INBOX", b"Subject: new\r\n\r\nhello\r\n")
    # A sync flush after every response: the EXISTS is readable without more output.
    assert idler.read_line() == b"* 1 EXISTS"
    idler.send(b"DONE\r\n")
    assert idler.read_until_tagged(b"I")[-1] == b"I OK IDLE terminated"
    other.logout()


def test_compress_after_starttls(server):
    plain = socket.create_connection(("127.0.0.1", server.imap_port), timeout=10)
    client = DeflateClient(plain)
    assert client.command(b"T", b"STARTTLS")[-1].startswith(b"T OK")
    client.sock = insecure_context().wrap_socket(plain, server_hostname="localhost")
    login(client)
    client.compress()
    client.command(b"S", b"SELECT INBOX")
    message = b"Subject: over tls\r\n\r\n" + b"x" * 5000 + b"\r\n"
    client.send(b"A APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    answer = client.read_until_tagged(b"A")
    assert answer[-1].startswith(b"A OK [APPENDUID ") and b"* 1 EXISTS" in answer
    assert client.command(b"O", b"LOGOUT")[-1].startswith(b"O OK")


def test_commands_pipelined_behind_compress_are_inflated(server):
    """A client that sends compressed commands before reading the OK still works:
    bytes received after the COMPRESS line are compressed data."""
    client = connect(server)
    login(client)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    pipelined = compressor.compress(b"N NOOP\r\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
    client.sock.sendall(b"Z COMPRESS DEFLATE\r\n" + pipelined)
    assert client.read_line().startswith(b"Z OK")
    client.decompressor = zlib.decompressobj(-15)
    client.compressor = compressor
    client.plain = client.decompressor.decompress(client.plain)
    assert client.read_until_tagged(b"N")[-1] == b"N OK NOOP completed"


def test_garbage_after_compress_closes_the_connection(server):
    client = connect(server)
    login(client)
    client.compress()
    client.sock.sendall(b"\xff\xff\xff\xff not deflate at all")
    with pytest.raises(ConnectionError):
        client.read_line()


def test_inflation_is_bounded_per_step():
    """A deflate bomb is inflated a bounded chunk at a time."""
    stream = DeflateStream(max_chunk=4096)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * 1_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    stream.feed(bomb)
    total = 0
    while stream.has_input:
        chunk = stream.inflate()
        assert len(chunk) <= 4096
        total += len(chunk)
    assert total == 1_000_000
