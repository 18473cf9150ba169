"""A small asyncio IMAP client for the benchmark: raw commands, untagged responses
with their literals inlined, nothing parsed that the caller does not ask for.

It is deliberately thin so that the same, cheap client code measures every server;
literals are sent as LITERAL+ (RFC 7888), which Mailhaven and Dovecot both support.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import re
import secrets
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
        client._note_capabilities(response)
        await client.ensure_capabilities()
        return client

    @classmethod
    async def login_scram(
        cls, host: str, port: int, user: str, password: str, *, tls: ssl.SSLContext | None = None
    ) -> ImapClient:
        """AUTHENTICATE SCRAM-SHA-256 (RFC 7677) with the salted password computed once
        per process, as a client that caches it does (RFC 5802 section 5.1): the
        server's work per login is a few HMACs instead of a password hash, so
        thousands of connections can log in quickly."""
        client = await cls.connect(host, port, tls=tls)
        exchange = _ScramExchange(user, password)
        tag = await client.send(b"AUTHENTICATE SCRAM-SHA-256 " + _b64(exchange.first()))
        server_first = base64.b64decode((await client.read_response())[2:])
        client.writer.write(_b64(exchange.final(server_first)) + b"\r\n")
        server_final = base64.b64decode((await client.read_response())[2:])
        if server_final != b"v=" + base64.b64encode(exchange.server_signature):
            raise ImapError("SCRAM: the server did not prove it knows the password")
        client.writer.write(b"\r\n")
        client._note_capabilities(await client.finish(tag))
        await client.ensure_capabilities()
        return client

    def _note_capabilities(self, response: Response) -> None:
        self.capabilities = _capabilities(response)

    async def ensure_capabilities(self) -> None:
        if not self.capabilities:
            self.capabilities = _capabilities(await self.command(b"CAPABILITY"))

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


class _ScramExchange:
    """The client side of RFC 5802 section 3 (no channel binding)."""

    def __init__(self, user: str, password: str) -> None:
        self.password = password
        self.nonce = secrets.token_hex(12)
        self.first_bare = f"n={user},r={self.nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        if not fields["r"].startswith(self.nonce):
            raise ImapError("SCRAM: the server's nonce does not extend ours")
        salted = _salted_password(self.password, base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@functools.cache
def _salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


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


def search_uids(response: Response) -> set[int]:
    """The numbers of ``* SEARCH`` responses, without a ``(MODSEQ n)`` after them.
    A split and ``int`` over the pieces, both in C, take two thirds of the time of
    a regular expression and a generator: a common word's answer carries tens of
    thousands of numbers, and the client's parsing is part of every server's time."""
    uids: set[int] = set()
    for line in response.untagged:
        if line.startswith(b"* SEARCH"):
            uids.update(map(int, line[8:].partition(b"(")[0].split()))
    return uids
