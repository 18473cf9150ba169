"""A small asyncio IMAP client for the benchmark: raw commands, untagged responses
with their literals inlined, nothing parsed that the caller does not ask for.

It is deliberately thin so that the same, cheap client code measures every server;
literals are sent as LITERAL+ (RFC 7888), which Mailhaven and Dovecot both support.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n\Z")
STREAM_LIMIT = 64 * 1024 * 1024


class ImapError(Exception):
    """A command did not end with OK, or the server closed the connection."""


@dataclass
class Response:
    status: bytes
    text: bytes
    untagged: list[bytes] = field(default_factory=list)


Untagged = Callable[[bytes], None]


class ImapClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._tags = itertools.count(1)
        self.capabilities: set[bytes] = set()

    @classmethod
    async def connect(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None
    ) -> ImapClient:
        reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
        client = cls(reader, writer)
        greeting = await client.read_response()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"unexpected greeting {greeting[:80]!r}")
        if tls is not None:
            await client.command(b"STARTTLS")
            await writer.start_tls(tls)
        return client

    @classmethod
    async def login(
        cls, host: str, port: int, user: str, password: str, *, tls: ssl.SSLContext | None = None
    ) -> ImapClient:
        client = await cls.connect(host, port, tls=tls)
        response = await client.command(b"LOGIN " + quoted(user) + b" " + quoted(password))
        client.capabilities = _capabilities(response)
        if not client.capabilities:
            client.capabilities = _capabilities(await client.command(b"CAPABILITY"))
        return client

    async def read_response(self) -> bytes:
        """One complete response line with its literals."""
        parts = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            parts.append(line)
            literal = _LITERAL_AT_END.search(line)
            if literal is None:
                return b"".join(parts)
            parts.append(await self.reader.readexactly(int(literal.group(1))))

    async def send(self, command: bytes) -> bytes:
        tag = b"b%d" % next(self._tags)
        self.writer.write(tag + b" " + command + b"\r\n")
        await self.writer.drain()
        return tag

    async def finish(self, tag: bytes, on_untagged: Untagged | None = None) -> Response:
        """Read until *tag* completes; OK or raise.  Untagged responses go to
        *on_untagged* when given (streaming) and are collected otherwise."""
        collected: list[bytes] = []
        handle = on_untagged or collected.append
        prefix = tag + b" "
        while True:
            try:
                response = await self.read_response()
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                raise ImapError(f"connection lost: {error}") from None
            if response.startswith(prefix):
                status, _, text = response[len(prefix) :].rstrip(b"\r\n").partition(b" ")
                if status != b"OK":
                    raise ImapError(
                        f"{tag.decode()} {status.decode()} {text.decode(errors='replace')}"
                    )
                return Response(status, text, collected)
            if not response.startswith(b"+"):
                handle(response)

    async def command(self, command: bytes, on_untagged: Untagged | None = None) -> Response:
        return await self.finish(await self.send(command), on_untagged)

    async def logout(self) -> None:
        with contextlib.suppress(ImapError):
            await self.command(b"LOGOUT")
        self.close()

    def close(self) -> None:
        self.writer.close()


def quoted(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal_plus(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def _capabilities(response: Response) -> set[bytes]:
    pattern = re.compile(rb"CAPABILITY ([^\]\r\n]*)")
    found: set[bytes] = set()
    for line in [*response.untagged, response.text]:
        match = pattern.search(line)
        if match:
            found.update(match.group(1).upper().split())
    return found


_NUMBERS = re.compile(rb"\d+")


def search_uids(response: Response) -> set[int]:
    """The numbers of ``* SEARCH`` responses (or ESEARCH ALL, when it is used)."""
    uids: set[int] = set()
    for line in response.untagged:
        if line.startswith(b"* SEARCH"):
            uids.update(int(n) for n in _NUMBERS.findall(line[8:]))
    return uids
