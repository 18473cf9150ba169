"""The LMTP mail data read in chunks (mailflow.lmtp_data) gives what aiosmtpd's
line-by-line DATA gives: content, dot-stuffing, limits, and nothing read past the end."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.mailflow.lmtp_data import LINE_TOO_LONG, TOO_MUCH_DATA, read_mail_data
from tests.support import ServerThread

NEXT = b"RSET\r\n"  # a pipelined command after the data: must stay in the stream


def stuffed(content: bytes) -> bytes:
    """What a client sends for *content* (RFC 5321 section 4.5.2): a period doubled at
    the start of every line, CRLF at the end, then the final ".<CRLF>"."""
    if not content:
        return b".\r\n"
    lines = content.split(b"\r\n")
    sent = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    if not sent.endswith(b"\r\n"):
        sent += b"\r\n"
    return sent + b".\r\n"


def line_by_line(sent: bytes) -> bytes:
    """aiosmtpd 1.4's reading, as a reference: lines up to CRLF, the first lone "."
    ends the data, one leading period removed from each line."""
    lines = []
    rest = sent
    while True:
        line, _, rest = rest.partition(b"\r\n")
        if line == b".":
            break
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in lines)


async def read_in_pieces(
    stream: bytes,
    pieces: list[int],
    *,
    limit: int = 1 << 20,
    size_limit: int | None = None,
    line_limit: int = 1 << 20,
):  # noqa: ANN202
    """read_mail_data on a reader fed *stream* in pieces of the given sizes (the rest
    at the end), as TCP segments arrive; also what is left in the reader after it."""
    reader = asyncio.StreamReader(limit=limit)

    async def feed() -> None:
        at = 0
        for size in pieces:
            reader.feed_data(stream[at : at + size])
            at += size
            await asyncio.sleep(0)
        reader.feed_data(stream[at:])
        reader.feed_eof()

    feeding = asyncio.ensure_future(feed())
    result = await read_mail_data(reader, size_limit=size_limit, line_limit=line_limit)
    await feeding
    return result, await reader.read()


LINE = st.one_of(
    st.sampled_from([b"", b".", b"..", b". ", b"end.", b"a\nb", b"x\r", b".\r", b"\n."]),
    st.binary(max_size=12).map(lambda b: b.replace(b"\r\n", b"")),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(LINE, max_size=12),
    pieces=st.lists(st.integers(1, 9), max_size=8),
    limit=st.sampled_from([8, 16, 1 << 20]),
)
def test_same_content_as_line_by_line(lines: list[bytes], pieces: list[int], limit: int) -> None:
    content = b"".join(line + b"\r\n" for line in lines)
    sent = stuffed(content)
    # A small stream limit makes long stretches without ".<CRLF>" overrun it.
    result, rest = asyncio.run(read_in_pieces(sent + NEXT, pieces, limit=limit))
    assert result.error is None
    assert result.content == line_by_line(sent) == content
    assert rest == NEXT


@pytest.mark.parametrize(
    ("sent", "content"),
    [
        (b".\r\n", b""),  # no data at all
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"a.\r\nb\r\n.\r\n", b"a.\r\nb\r\n"),  # a line ending in a period
        (b"x\n.\r\n.\r\n", b"x\n.\r\n"),  # a bare LF does not end a line
        (b"...x\r\n.\r\n", b"..x\r\n"),
    ],
)
def test_edges(sent: bytes, content: bytes) -> None:
    for piece in (1, 2, 3, len(sent)):
        result, rest = asyncio.run(read_in_pieces(sent + NEXT, [piece] * len(sent)))
        assert (result.content, result.error, rest) == (content, None, NEXT)


def test_too_much_data_is_read_to_the_end_then_refused() -> None:
    sent = stuffed(b"0123456789\r\n" * 100)
    result, rest = asyncio.run(read_in_pieces(sent + NEXT, [100] * 5, size_limit=1000))
    assert (result.content, result.error, rest) == (b"", TOO_MUCH_DATA, NEXT)
    exact = stuffed(b"x" * 998)  # 1000 bytes with its CRLF: at the limit, accepted
    result, rest = asyncio.run(read_in_pieces(exact + NEXT, [], size_limit=1000))
    assert (result.error, len(result.content)) == (None, 1000)


def test_a_line_over_the_limit_is_refused() -> None:
    long_line = stuffed(b"short\r\n" + b"y" * 200 + b"\r\nshort\r\n")
    result, rest = asyncio.run(read_in_pieces(long_line + NEXT, [7] * 40, limit=64, line_limit=150))
    assert (result.content, result.error, rest) == (b"", LINE_TOO_LONG, NEXT)
    fits = stuffed(b"y" * 148)  # 150 bytes with its CRLF, as aiosmtpd counts
    result, _rest = asyncio.run(read_in_pieces(fits + NEXT, [], limit=64, line_limit=150))
    assert result.error is None and result.content == b"y" * 148 + b"\r\n"


def test_pipelined_delivery_over_a_socket(tmp_path: Path) -> None:
    """The data, its final period and the next command in one segment: the message is
    stored byte for byte (dot-stuffing undone) and RSET still gets its reply."""
    server = ServerThread(tmp_path).start()
    try:
        server.add_user("alice")
        body = b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nend.\r\n"
        with socket.create_connection(("127.0.0.1", server.lmtp_port), timeout=30) as sock:
            replies = sock.makefile("rb")

            def reply() -> bytes:
                line = replies.readline()
                while line[3:4] == b"-":
                    line = replies.readline()
                return line

            assert reply().startswith(b"220")
            for command in (b"LHLO test\r\n", b"MAIL FROM:<bob@example.org>\r\n"):
                sock.sendall(command)
                assert reply().startswith(b"250")
            sock.sendall(b"RCPT TO:<alice@localhost>\r\nDATA\r\n")
            assert reply().startswith(b"250")
            assert reply().startswith(b"354")
            sock.sendall(stuffed(body) + NEXT)
            assert reply().startswith(b"250 2.0.0")
            assert reply().startswith(b"250")  # RSET
            sock.sendall(b"QUIT\r\n")
            assert reply().startswith(b"221")

        async def stored() -> bytes:
            user = await server.storage.get_user("alice")
            inbox = await server.storage.get_mailbox(user.id, "INBOX")
            (content,) = await server.storage.fetch_content(inbox.id, [1], raw=True, metadata=False)
            return content.raw

        raw = server.call(stored())
        assert raw.endswith(b"\r\n" + body)
        assert raw.startswith(b"Return-Path: <bob@example.org>\r\n")
    finally:
        server.stop()
