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
import os
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from mailhaven import runtime
from mailhaven.codec.protocol import (
    CommandReceived,
    CommandRejected,
    ContinuationNeeded,
    Limits,
    RawLine,
    ServerProtocol,
)
from mailhaven.codec.responses import Tagged, Untagged
from mailhaven.config import Config, ConfigError
from mailhaven.deflate import CompressedDataError, DeflateStream
from mailhaven.imap.capabilities import capability_code
from mailhaven.imap.dispatch import execute
from mailhaven.imap.session import ServerContext, Session, State
from mailhaven.logs import new_session_id, session_logger
from mailhaven.mailflow.lmtp import LmtpListener, start_lmtp
from mailhaven.security.connections import ConnectionRegistry
from mailhaven.storage import open_storage, quota_defaults
from mailhaven.storage.interface import Storage
from mailhaven.tls import context_for
from mailhaven.tls_diagnostics import failure_reason, offered_versions, peek_client_hello

log = logging.getLogger("mailhaven.server")
tls_log = logging.getLogger("mailhaven.tls")

READ_SIZE = 65536
SHUTDOWN_SECONDS = 5.0  # how long connections get to end cleanly on SIGTERM


class ConnectionClosed(ConnectionError):
    """The client went away or timed out; the connection ends quietly."""


class Connection:
    """One client connection; implements the session's :class:`Channel`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ServerContext,
        tls_context: Callable[[], ssl.SSLContext | None],
        *,
        implicit_tls: bool,
    ) -> None:
        self._reader = reader
        self._writer = writer
        # Looked up at each STARTTLS, so a certificate reloaded on SIGHUP is used.
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
        self._commands_since_read = 0

    # ------------------------------------------------------------- Channel

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def tls_available(self) -> bool:
        return self._tls_context() is not None

    @property
    def peer_host(self) -> str:
        return self._peer_host

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
        """Write and wait until the socket takes it: the server holds at most one
        response plus the transport's buffer for a client that does not read, and
        drops that client after ``limits.write_timeout_seconds``."""
        data = self._outgoing(data)
        self.bytes_out += len(data)
        self._writer.write(data)
        transport = self._writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            return  # the socket took everything: nothing to wait for (10,000 idlers' EXISTS)
        try:
            # asyncio.timeout, not wait_for: no extra task, so a write that need not
            # wait does not yield to the event loop either.
            async with asyncio.timeout(self.session.config.limits.write_timeout_seconds):
                await self._writer.drain()
        except TimeoutError:
            self._writer.transport.abort()  # close() would wait for the client to read
            raise ConnectionClosed("write timeout: the client does not read") from None

    @property
    def writable_now(self) -> bool:
        """True when the socket has taken everything written so far."""
        transport = self._writer.transport
        return not transport.get_write_buffer_size() and not transport.is_closing()

    def write_nowait(self, data: bytes) -> None:
        """Write without waiting, for one small response when :attr:`writable_now`
        (IDLE's fan-out): what the socket does not take waits in the transport, and
        the next :meth:`write` waits for it (back-pressure as ever)."""
        data = self._outgoing(data)
        self.bytes_out += len(data)
        self._writer.write(data)

    @property
    def buffered_output(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self._writer.transport.get_write_buffer_size()

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
        tls_context = self._tls_context()
        assert tls_context is not None
        transport = self._writer.transport
        transport.pause_reading()  # the ClientHello stays in the socket for the peek
        hello = await peek_client_hello(
            transport.get_extra_info("socket"), self.session.config.limits.preauth_timeout_seconds
        )
        try:
            await self._writer.start_tls(
                tls_context,
                ssl_handshake_timeout=self.session.config.limits.preauth_timeout_seconds,
            )
        except (ssl.SSLError, OSError, TimeoutError) as error:
            log_handshake_failure(self._peer, "starttls", hello, error, self.session.config)
            transport.abort()
            raise ConnectionClosed("TLS handshake failed") from None
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
        self.log.info(
            "connect client=%s tls=%s pid=%d",
            self._peer,
            "implicit" if self._secure else "no",
            os.getpid(),
        )
        reason = "logout"
        try:
            greeting_code = capability_code(self.session)
            await self.write(Untagged("OK", "Mailhaven ready", greeting_code).encode())
            reason = await self._serve_commands()
        except ConnectionClosed as closed:
            reason = str(closed) or "client closed the connection"
        except (ConnectionError, ssl.SSLError) as error:
            reason = f"connection error: {error}"
        except Exception:
            # A bug outside any command (commands answer NO [SERVERBUG] themselves):
            # log it and end this connection without disturbing the others.
            self.log.exception("connection failed")
            reason = "internal error"
        finally:
            if self.session.user is not None:
                self.session.context.connections.release_login(self.session.user.id)
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
                self._commands_since_read += 1
                if self._commands_since_read > limits.max_pipelined_commands:
                    if await self._refuse_pipelined(event):
                        return "too many bad commands"
                    continue
                self.session.bad_in_a_row = 0
                await execute(self.session, event.command)
                if self.session.state is State.LOGOUT:
                    return "logout"
            elif isinstance(event, CommandRejected) and await self._reject(event):
                return "too many bad commands"

    async def _refuse_pipelined(self, event: CommandReceived) -> bool:
        """More commands arrived at once than ``limits.max_pipelined_commands``: the
        excess is answered BAD [LIMIT] and counts as bad commands (so a flood ends in
        BYE); True when it is time to hang up."""
        text = "Too many pipelined commands: wait for responses before sending more"
        await self.write(Tagged(event.command.tag, "BAD", text, b"LIMIT").encode())
        return await self._count_bad_command()

    async def _reject(self, event: CommandRejected) -> bool:
        """Answer a command that could not be parsed; True when it is time to hang up."""
        error = event.error
        self.log.info("command rejected: %s client=%s", error.text, self._peer)
        if error.tag is not None:
            await self.write(Tagged(error.tag, error.status, error.text, error.code).encode())
        else:
            await self.write(Untagged("BAD", error.text, error.code).encode())
        return await self._count_bad_command()

    async def _count_bad_command(self) -> bool:
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
            # asyncio.timeout, not wait_for: no task wrapped around each read (half the
            # cost, paid once per command).
            async with asyncio.timeout(timeout):
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            if say_bye:
                await self.write(Untagged("BYE", "Autologout: idle for too long").encode())
            raise ConnectionClosed("timeout") from None
        if not data:
            raise ConnectionClosed("client closed the connection")
        self.bytes_in += len(data)
        self._commands_since_read = 0
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


def _where_to_listen(address: tuple[str, int], prebound: socket.socket | None) -> dict[str, Any]:
    """The keyword arguments of ``create_server`` for *address* or a bound socket."""
    if prebound is not None:
        return {"sock": prebound}
    return {"host": address[0], "port": address[1]}


def _tls_description(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    return f"version={ssl_object.version()} cipher={cipher[0] if cipher else '?'}"


def _peer_ip(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """(IP, "IP:port") of the client of *transport*."""
    peer = transport.get_extra_info("peername") or ("unknown", 0)
    return str(peer[0]), f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer)


def log_handshake_failure(
    peer: str, listener: str, hello: bytes, error: BaseException, config: Config
) -> None:
    """One line per failed handshake, naming the versions on both sides and why."""
    tls_log.warning(
        "tls handshake failed client=%s listener=%s offered=%s accepted=%s+ reason=%s",
        peer,
        listener,
        offered_versions(hello),
        config.tls.min_version,
        failure_reason(error),
    )


class _HeldConnection(asyncio.Protocol):
    """Keeps a new implicit-TLS connection unread until the server starts the
    handshake itself (so it can log why a handshake fails, and use the certificate
    current at that moment)."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport subclass: uvloop's
        # TCPTransport only implements its methods.
        transport = cast(asyncio.Transport, transport)
        transport.pause_reading()
        self._server._spawn(self._server._accept_implicit_tls(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed before or during the handshake; the handshake task sees it."""


@dataclass
class Server:
    """The listeners of one server process, startable and stoppable from tests."""

    config: Config
    storage: Storage | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    context: ServerContext | None = None
    tls_context: ssl.SSLContext | None = None
    _servers: list[asyncio.Server] = field(default_factory=list)
    _connections: dict[asyncio.Task[None], Connection] = field(default_factory=dict)
    lmtp: LmtpListener | None = None
    _handshakes: set[asyncio.Task[None]] = field(default_factory=set)
    # A worker process (mailhaven/workers.py) serves on sockets its supervisor bound
    # ("imap", "imaps", "lmtp"), and counts connections with the other workers.
    prebound: dict[str, socket.socket] = field(default_factory=dict)
    connections: ConnectionRegistry | None = None

    async def start(self) -> None:
        if self.storage is None:
            self.storage = open_storage(self.config.data_dir)
        self.storage.quota_defaults = quota_defaults(self.config)
        await self.storage.open()
        self.context = ServerContext(self.storage, self.config)
        if self.connections is not None:
            self.context.connections = self.connections
        self.tls_context = context_for(self.config)
        loop = asyncio.get_running_loop()
        for name, address, implicit in (
            ("imap", self.config.imap_listen, False),
            ("imaps", self.config.imaps_listen, True),
        ):
            if address is None:
                continue
            where = _where_to_listen(address, self.prebound.get(name))
            if implicit:
                server = await loop.create_server(lambda: _HeldConnection(self), **where)
            else:
                server = await asyncio.start_server(self._handle_cleartext, **where)
            self._servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            self.addresses[name] = (host, port)
            kind = "implicit TLS" if implicit else "STARTTLS"
            # A supervisor already announced the sockets it bound, once for all workers.
            log.log(
                logging.DEBUG if self.prebound else logging.INFO,
                "listening %s on %s:%d (%s)",
                *(name, host, port, kind),
            )
        if self.config.lmtp_listen is not None:
            self.lmtp = await start_lmtp(self.storage, self.config, self.prebound.get("lmtp"))

    def reload_tls(self) -> None:
        """Load the certificate and key again (SIGHUP).  New handshakes use them;
        established sessions keep theirs.  A broken file keeps the old pair."""
        try:
            self.tls_context = context_for(self.config)
        except ConfigError as error:
            log.error("tls reload failed, keeping the current certificate: %s", error)
            return
        log.info("tls certificate reloaded")

    def _current_tls_context(self) -> ssl.SSLContext | None:
        return self.tls_context

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _accept_implicit_tls(self, transport: asyncio.Transport) -> None:
        """RFC 8314 implicit TLS: admit, handshake (logging failures), then serve."""
        ip, peer = _peer_ip(transport)
        assert self.context is not None and self.tls_context is not None
        if self._refuse_connection(ip, peer) is not None:
            transport.abort()  # no TLS yet, so no way to say BYE
            return
        try:
            await self._handshake_and_serve(transport, peer)
        finally:
            self.context.connections.release_connection(ip)

    async def _handshake_and_serve(self, transport: asyncio.Transport, peer: str) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.config.limits.preauth_timeout_seconds
        hello = await peek_client_hello(transport.get_extra_info("socket"), timeout)
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        tls_context = self.tls_context
        assert tls_context is not None
        try:
            tls_transport = await loop.start_tls(
                transport, protocol, tls_context, server_side=True, ssl_handshake_timeout=timeout
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as error:
            log_handshake_failure(peer, "imaps", hello, error, self.config)
            transport.abort()
            return
        assert tls_transport is not None
        writer = asyncio.StreamWriter(tls_transport, protocol, reader, loop)
        await self._serve(reader, writer, implicit=True)

    def _refuse_connection(self, ip: str, peer: str) -> str | None:
        assert self.context is not None
        refusal = self.context.connections.admit_connection(ip)
        if refusal is not None:
            log.warning("connection refused client=%s reason=%r", peer, refusal)
        return refusal

    async def _handle_cleartext(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ip, peer = _peer_ip(writer.transport)
        assert self.context is not None
        refusal = self._refuse_connection(ip, peer)
        if refusal is not None:
            writer.write(Untagged("BYE", refusal, b"UNAVAILABLE").encode())
            writer.close()
            return
        try:
            await self._serve(reader, writer, implicit=False)
        finally:
            self.context.connections.release_connection(ip)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, implicit: bool
    ) -> None:
        task = asyncio.current_task()
        assert task is not None and self.context is not None
        connection = Connection(
            reader, writer, self.context, self._current_tls_context, implicit_tls=implicit
        )
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            del self._connections[task]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handshakes):
            task.cancel()
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
    log.info("event loop %s", runtime.loop_name())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT (``mailhaven serve``); returns the exit code."""
    runtime.raise_file_limit(config.limits.max_connections)
    implicit_tls = config.imaps_listen is not None
    return runtime.run(_serve_until_signalled(config), config.event_loop, implicit_tls=implicit_tls)
