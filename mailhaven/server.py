"""The asyncio IMAP server: listeners, one :class:`Connection` per client socket.

A connection owns the socket and a sans-IO :class:`ServerProtocol`; it feeds the
protocol bytes, runs each parsed command through the dispatcher, and writes what
the session produces.  Writes wait for the socket to drain, so a client that never
reads cannot make the server buffer unbounded output.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
from dataclasses import dataclass, field

from mailhaven.codec.protocol import (
    CommandReceived,
    CommandRejected,
    ContinuationNeeded,
    Limits,
    RawLine,
    ServerProtocol,
)
from mailhaven.codec.responses import Tagged, Untagged
from mailhaven.config import Config
from mailhaven.deflate import CompressedDataError, DeflateStream
from mailhaven.imap.capabilities import capability_code
from mailhaven.imap.dispatch import execute
from mailhaven.imap.session import ServerContext, Session, State
from mailhaven.logs import new_session_id, session_logger
from mailhaven.mailflow.lmtp import LmtpListener, start_lmtp
from mailhaven.storage import open_storage, quota_defaults
from mailhaven.storage.interface import Storage
from mailhaven.tls import context_for

log = logging.getLogger("mailhaven.server")

READ_SIZE = 65536
SHUTDOWN_SECONDS = 5.0  # how long connections get to end cleanly on SIGTERM


class ConnectionClosed(Exception):
    """The client went away or timed out; the connection ends quietly."""


class Connection:
    """One client connection; implements the session's :class:`Channel`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ServerContext,
        tls_context: ssl.SSLContext | None,
        *,
        implicit_tls: bool,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._tls_context = tls_context
        self._secure = implicit_tls
        self._limits = _limits(context.config)
        self._protocol = ServerProtocol(self._limits)
        self._deflate: DeflateStream | None = None  # after COMPRESS DEFLATE (RFC 4978)
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        self._peer_host = str(peer[0])
        self._peer = f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer)
        self.session_id = new_session_id()
        self.log = session_logger(self.session_id)
        self.session = Session(context, self, self.log)
        self.bytes_in = 0
        self.bytes_out = 0

    # ------------------------------------------------------------- Channel

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def tls_available(self) -> bool:
        return self._tls_context is not None

    @property
    def peer_address(self) -> str:
        return self._peer

    @property
    def peer_is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self._peer_host.split("%")[0]).is_loopback
        except ValueError:
            return False

    @property
    def compressing(self) -> bool:
        return self._deflate is not None

    async def write(self, data: bytes) -> None:
        data = self._outgoing(data)
        self.bytes_out += len(data)
        self._writer.write(data)
        await self._writer.drain()

    def _outgoing(self, data: bytes) -> bytes:
        return self._deflate.compress(data) if self._deflate is not None else data

    async def read_raw_line(self, timeout: float | None = None) -> bytes | None:
        self._protocol.expect_raw_line()
        try:
            while True:
                event = self._protocol.next_event()
                if isinstance(event, RawLine):
                    return event.line
                if event is None:
                    await self._receive(timeout)
        except ConnectionClosed:
            return None

    async def start_tls(self) -> None:
        assert self._tls_context is not None
        try:
            await self._writer.start_tls(self._tls_context)
        except (ConnectionError, ssl.SSLError) as error:
            # Usually a client that cannot agree on a TLS version or distrusts the
            # certificate: worth one line for the operator, not a traceback.
            self.log.info("tls handshake failed client=%s error=%s", self._peer, error)
            raise
        self._secure = True
        # RFC 9051 section 11.1: discard anything pipelined before the handshake.
        self._protocol = ServerProtocol(self._limits)
        self.log.info("tls started %s", _tls_description(self._writer))

    def set_utf8(self, enabled: bool) -> None:
        self._protocol.utf8 = enabled

    def start_compression(self) -> None:
        """RFC 4978 section 3: everything after the tagged OK is compressed, both
        ways.  Bytes already received after the COMPRESS command (a client that
        did not wait for the OK) are compressed data too."""
        self._deflate = DeflateStream()
        self._deflate.feed(self._protocol.take_unframed())
        self.log.info("compression started deflate")

    def shutdown(self) -> None:
        """Say goodbye without waiting for the client and close (server stopping)."""
        if not self._writer.is_closing():
            self._writer.write(self._outgoing(Untagged("BYE", "Server shutting down").encode()))
            self._writer.close()

    # ------------------------------------------------------------- the loop

    async def run(self) -> None:
        self.log.info("connect client=%s tls=%s", self._peer, "implicit" if self._secure else "no")
        reason = "logout"
        try:
            greeting_code = capability_code(self.session)
            await self.write(Untagged("OK", "Mailhaven ready", greeting_code).encode())
            reason = await self._serve_commands()
        except ConnectionClosed as closed:
            reason = str(closed) or "client closed the connection"
        except (ConnectionError, ssl.SSLError) as error:
            reason = f"connection error: {error}"
        finally:
            self.session.close()
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await self._writer.wait_closed()
            self.log.info(
                "disconnect client=%s reason=%r in=%d out=%d",
                self._peer,
                reason,
                self.bytes_in,
                self.bytes_out,
            )

    async def _serve_commands(self) -> str:
        limits = self.session.config.limits
        while True:
            event = self._protocol.next_event()
            if event is None:
                authenticated = self.session.state is not State.NOT_AUTHENTICATED
                timeout = (
                    limits.autologout_seconds if authenticated else limits.preauth_timeout_seconds
                )
                await self._receive(timeout, say_bye=True)
            elif isinstance(event, ContinuationNeeded):
                await self.write(b"+ Ready for literal data\r\n")
            elif isinstance(event, CommandReceived):
                self.session.bad_in_a_row = 0
                await execute(self.session, event.command)
                if self.session.state is State.LOGOUT:
                    return "logout"
            elif isinstance(event, CommandRejected) and await self._reject(event):
                return "too many bad commands"

    async def _reject(self, event: CommandRejected) -> bool:
        """Answer a command that could not be parsed; True when it is time to hang up."""
        error = event.error
        self.log.info("command rejected: %s client=%s", error.text, self._peer)
        if error.tag is not None:
            await self.write(Tagged(error.tag, error.status, error.text, error.code).encode())
        else:
            await self.write(Untagged("BAD", error.text, error.code).encode())
        self.session.bad_in_a_row += 1
        if self.session.bad_in_a_row >= self.session.config.limits.max_bad_commands:
            await self.write(Untagged("BYE", "Too many invalid commands").encode())
            return True
        return False

    async def _receive(self, timeout: float | None, *, say_bye: bool = False) -> None:
        if self._deflate is not None and self._deflate.has_input:
            self._protocol.receive_data(self._inflate())
            return
        try:
            data = await asyncio.wait_for(self._reader.read(READ_SIZE), timeout)
        except TimeoutError:
            if say_bye:
                await self.write(Untagged("BYE", "Autologout: idle for too long").encode())
            raise ConnectionClosed("timeout") from None
        if not data:
            raise ConnectionClosed("client closed the connection")
        self.bytes_in += len(data)
        if self._deflate is not None:
            self._deflate.feed(data)
            data = self._inflate()
        self._protocol.receive_data(data)

    def _inflate(self) -> bytes:
        assert self._deflate is not None
        try:
            return self._deflate.inflate()
        except CompressedDataError as error:
            raise ConnectionClosed(str(error)) from None


def _limits(config: Config) -> Limits:
    limits = config.limits
    return Limits(
        max_line_length=limits.max_line_length,
        max_literal_size=limits.max_literal_size,
        max_nesting=limits.max_nesting,
    )


def _tls_description(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    return f"version={ssl_object.version()} cipher={cipher[0] if cipher else '?'}"


@dataclass
class Server:
    """The listeners of one server process, startable and stoppable from tests."""

    config: Config
    storage: Storage | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _connections: dict[asyncio.Task[None], Connection] = field(default_factory=dict)
    lmtp: LmtpListener | None = None

    async def start(self) -> None:
        if self.storage is None:
            self.storage = open_storage(self.config.data_dir)
        self.storage.quota_defaults = quota_defaults(self.config)
        await self.storage.open()
        context = ServerContext(self.storage, self.config)
        tls_context = context_for(self.config)
        listeners = [
            ("imap", self.config.imap_listen, False),
            ("imaps", self.config.imaps_listen, True),
        ]
        for name, address, implicit in listeners:
            if address is None:
                continue

            async def handle(reader, writer, implicit=implicit):  # noqa: ANN001
                await self._handle(reader, writer, context, tls_context, implicit)

            server = await asyncio.start_server(
                handle, address[0], address[1], ssl=tls_context if implicit else None
            )
            self._servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            self.addresses[name] = (host, port)
            kind = "implicit TLS" if implicit else "STARTTLS"
            log.info("listening %s on %s:%d (%s)", name, host, port, kind)
        if self.config.lmtp_listen is not None:
            self.lmtp = await start_lmtp(self.storage, self.config)

    async def _handle(self, reader, writer, context, tls_context, implicit) -> None:  # noqa: ANN001
        task = asyncio.current_task()
        assert task is not None
        connection = Connection(reader, writer, context, tls_context, implicit_tls=implicit)
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            del self._connections[task]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            connection.shutdown()
        if self._connections:
            _, stuck = await asyncio.wait(list(self._connections), timeout=SHUTDOWN_SECONDS)
            for task in stuck:
                task.cancel()
        for server in self._servers:
            await server.wait_closed()
        if self.lmtp is not None:
            await self.lmtp.close()
        if self.storage is not None:
            await self.storage.close()


async def _serve_until_signalled(config: Config) -> int:
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT (``mailhaven serve``); returns the exit code."""
    return asyncio.run(_serve_until_signalled(config))
