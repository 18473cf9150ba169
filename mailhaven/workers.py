"""Several server processes on one store: ``mailhaven serve`` with ``[server] workers``
greater than 1.

The supervisor (this process) prepares the data directory once (schema migration, the
self-signed certificate), binds the listeners, then starts the workers with the
multiprocessing "spawn" context and watches them:

* Each TCP listener is bound once per worker with ``SO_REUSEPORT``, all on the same
  port (a port 0 is chosen by the first bind), so the kernel spreads new connections
  over the workers.  The supervisor keeps its copies of the sockets: a restarted worker
  serves the same socket again, and connections queued on it while it was down are not
  lost.  A unix socket (LMTP) is one socket accepted by all workers.
* The supervisor logs one "listening" line per listener; the workers log none.
* A worker that exits while the server is not stopping is started again after a
  back-off (0.5 s, doubling up to 30 s; back to 0.5 s after 30 s of steady running).
* SIGTERM or SIGINT stops the workers with SIGTERM (their sessions get BYE) and then
  the supervisor, with exit code 0; SIGHUP is passed on (certificate reload).
* :class:`mailhaven.notify.Broker` relays change notifications and connection counts
  between the workers.  A worker whose supervisor is gone stops too: nobody would
  restart or stop it, and it would no longer hear the other workers' changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import stat
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from mailhaven import runtime
from mailhaven.config import Config
from mailhaven.logs import setup_logging
from mailhaven.notify import Broker, RelayingChangeHub, SupervisorLink
from mailhaven.security.connections import SharedConnectionRegistry
from mailhaven.server import SHUTDOWN_SECONDS, Server
from mailhaven.storage import open_storage
from mailhaven.tls import context_for

log = logging.getLogger("mailhaven.workers")

BACKLOG = 100  # asyncio.start_server's default
RESTART_FIRST_DELAY = 0.5
RESTART_MAX_DELAY = 30.0
STEADY_SECONDS = 30.0  # a worker that ran this long before dying restarts at once again
STOP_GRACE_SECONDS = SHUTDOWN_SECONDS + 10.0  # then a worker that has not exited is killed

Listeners = dict[str, list[socket.socket]]  # name -> one socket per worker (or one shared)


def supervise(config: Config) -> int:
    """Serve with ``config.workers`` processes until SIGTERM or SIGINT; the exit code."""
    # A refused event loop is a configuration error now, not a worker restarted forever.
    runtime.loop_factory(config.event_loop, implicit_tls=config.imaps_listen is not None)
    _prepare_data_dir(config)
    listeners = bind_listeners(config)
    try:
        return asyncio.run(Supervisor(config, listeners).run())
    finally:
        for sockets in listeners.values():
            for sock in sockets:
                sock.close()


def _prepare_data_dir(config: Config) -> None:
    """What the first start creates, done once here rather than raced by the workers."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    context_for(config)  # generates the self-signed certificate if there is none

    async def migrate() -> None:
        storage = open_storage(config.data_dir)
        await storage.open()
        await storage.close()

    asyncio.run(migrate())


# ---------------------------------------------------------------------- listeners


def bind_listeners(config: Config) -> Listeners:
    """Bind every configured listener for ``config.workers`` workers and log it."""
    listeners: Listeners = {}
    for name, address, kind in (
        ("imap", config.imap_listen, " (STARTTLS)"),
        ("imaps", config.imaps_listen, " (implicit TLS)"),
        ("lmtp", config.lmtp_listen, ""),
    ):
        if isinstance(address, Path):
            listeners[name] = [_bind_unix(address)]
            log.info("listening %s on unix:%s", name, address)
        elif address is not None:
            listeners[name] = _bind_tcp(address, config.workers)
            host, port = listeners[name][0].getsockname()[:2]
            log.info("listening %s on %s:%d%s", name, host, port, kind)
    return listeners


def _bind_tcp(address: tuple[str, int], workers: int) -> list[socket.socket]:
    """One socket per worker on the same port; one shared socket without SO_REUSEPORT."""
    first = _listening_socket(address)
    if not hasattr(socket, "SO_REUSEPORT"):
        return [first]
    port = first.getsockname()[1]
    return [first, *(_listening_socket((address[0], port)) for _ in range(workers - 1))]


def _listening_socket(address: tuple[str, int]) -> socket.socket:
    family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
        address[0], address[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _bind_unix(path: Path) -> socket.socket:
    # A socket file left by a server that was killed would make bind fail.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.stat().st_mode):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------------- supervisor


@dataclass
class _Slot:
    """One of the ``workers`` places, filled by a process and refilled when it dies."""

    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    failures: int = 0  # deaths in a row without a steady run between them
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Starts, restarts, signals and stops the worker processes."""

    def __init__(self, config: Config, listeners: Listeners) -> None:
        self._config = config
        self._listeners = listeners
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(config.workers)]
        self._broker = Broker()
        self._stopping = False
        self._restarts: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
        for slot in self._slots:
            await self._start(slot)
        await stop.wait()
        log.info("shutting down")
        await self._stop_workers()
        await self._broker.close()
        return 0

    async def _start(self, slot: _Slot) -> None:
        broker_end = await self._broker.attach()
        sockets = {name: group[slot.index % len(group)] for name, group in self._listeners.items()}
        process = self._context.Process(
            target=worker_main,
            args=(self._config, sockets, broker_end),
            name=f"mailhaven-worker-{slot.index}",
        )
        process.start()
        broker_end.close()  # the worker has its own copy; its exit then closes the pair
        slot.process, slot.started = process, time.monotonic()
        slot.exited.clear()
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, slot)
        log.info("worker started worker=%d pid=%d", slot.index, process.pid)

    def _exited(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()
        slot.exited.set()
        if self._stopping:
            log.info("worker stopped worker=%d pid=%d", slot.index, process.pid)
            return
        if time.monotonic() - slot.started >= STEADY_SECONDS:
            slot.failures = 0
        delay = min(RESTART_FIRST_DELAY * 2**slot.failures, RESTART_MAX_DELAY)
        slot.failures += 1
        log.warning(
            "worker died worker=%d pid=%d exitcode=%s restart_in=%.1fs",
            *(slot.index, process.pid, process.exitcode, delay),
        )
        task = asyncio.get_running_loop().create_task(self._restart_later(slot, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart_later(self, slot: _Slot, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._start(slot)

    def _signal_workers(self, signum: int) -> None:
        for slot in self._slots:
            if slot.process is not None and not slot.exited.is_set():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)  # type: ignore[arg-type]

    async def _stop_workers(self) -> None:
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        self._signal_workers(signal.SIGTERM)
        running = [slot for slot in self._slots if slot.process and not slot.exited.is_set()]
        waits = [asyncio.create_task(slot.exited.wait()) for slot in running]
        if waits:
            _done, stuck = await asyncio.wait(waits, timeout=STOP_GRACE_SECONDS)
            for task in stuck:
                task.cancel()
        for slot in running:
            if not slot.exited.is_set() and slot.process is not None:
                log.error("worker did not stop, killing it worker=%d", slot.index)
                slot.process.kill()
                slot.process.join()


# ---------------------------------------------------------------------- worker


def worker_main(config: Config, sockets: dict[str, socket.socket], broker: socket.socket) -> None:
    """A worker process: serve on the supervisor's *sockets* until SIGTERM."""
    # Ctrl-C reaches the whole process group; the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(config.log_level)
    runtime.raise_file_limit(config.limits.max_connections)
    implicit_tls = config.imaps_listen is not None
    runtime.run(
        _serve_as_worker(config, sockets, broker), config.event_loop, implicit_tls=implicit_tls
    )


async def _serve_as_worker(
    config: Config, sockets: dict[str, socket.socket], broker: socket.socket
) -> None:
    link = await SupervisorLink.open(broker)
    storage = open_storage(config.data_dir)
    hub = RelayingChangeHub(link.send_changed)
    storage.changes = hub  # before any session subscribes
    registry = SharedConnectionRegistry(config.limits, link.send_count)
    server = Server(config, storage=storage, prebound=sockets, connections=registry)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    receiving = loop.create_task(link.receive(hub, registry))
    receiving.add_done_callback(lambda _task: stop.set())
    await stop.wait()
    if receiving.done():
        log.warning("the supervisor is gone, stopping pid=%d", os.getpid())
    receiving.cancel()
    await server.stop()
    link.close()
