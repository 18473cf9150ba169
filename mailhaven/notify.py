"""Notifications between the worker processes of one server (``[server] workers``).

Each worker holds one end of a socket pair whose other end stays with the supervisor
(:class:`Broker`).  Over it the worker sends, as text lines:

* ``changed <mailbox id>`` after each commit, so the other workers' sessions with the
  mailbox selected (IDLE in particular) refresh at once;
* ``count <kind> <key> <delta>`` when one of its connection counts changes
  (:mod:`mailhaven.security.connections`), so every worker applies the limits to the
  whole server.

The broker passes each line on to every other worker.  When a worker goes away it
tells the others to forget that worker's counts, and a worker that (re)starts gets the
current counts of the others first.  Nothing is persisted: a missed notification only
delays an update until the session's next command, which refreshes anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Callable

from mailhaven.security.connections import CONNECTION, LOGIN, SharedConnectionRegistry
from mailhaven.storage.interface import ChangeHub

log = logging.getLogger("mailhaven.workers")

CHANGED = "changed"
COUNT = "count"
COUNT_KINDS = (CONNECTION, LOGIN)


def changed_line(mailbox_id: int) -> bytes:
    return f"{CHANGED} {mailbox_id}\n".encode()


def count_line(kind: str, key: str, delta: int) -> bytes:
    return f"{COUNT} {kind} {key} {delta}\n".encode()


def parse_line(line: bytes) -> tuple[str, str, str, int] | None:
    """``(CHANGED, "", "", mailbox id)`` or ``(COUNT, kind, key, delta)``; None for
    anything else (logged by the caller)."""
    words = line.decode("ascii", "replace").split()
    try:
        if len(words) == 2 and words[0] == CHANGED:
            return CHANGED, "", "", int(words[1])
        if len(words) == 4 and words[0] == COUNT and words[1] in COUNT_KINDS:
            return COUNT, words[1], words[2], int(words[3])
    except ValueError:
        return None
    return None


# ---------------------------------------------------------------------- worker side


class RelayingChangeHub(ChangeHub):
    """A worker's :class:`ChangeHub`: what this process commits also goes to the other
    workers; what they commit arrives through :meth:`publish_from_elsewhere`."""

    def __init__(self, relay: Callable[[int], None]) -> None:
        super().__init__()
        self._relay = relay

    def publish(self, mailbox_id: int) -> None:
        super().publish(mailbox_id)
        self._relay(mailbox_id)

    def publish_from_elsewhere(self, mailbox_id: int) -> None:
        super().publish(mailbox_id)


class SupervisorLink:
    """A worker's end of the socket pair to the supervisor's broker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> SupervisorLink:
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send_changed(self, mailbox_id: int) -> None:
        self._send(changed_line(mailbox_id))

    def send_count(self, kind: str, key: str, delta: int) -> None:
        self._send(count_line(kind, key, delta))

    def _send(self, line: bytes) -> None:
        # No drain: the caller is a commit callback; the broker reads all the time.
        if not self._writer.is_closing():
            self._writer.write(line)

    async def receive(self, hub: RelayingChangeHub, registry: SharedConnectionRegistry) -> None:
        """Apply what the other workers send until the supervisor goes away."""
        with contextlib.suppress(ConnectionError):
            while line := await self._reader.readline():
                self._apply(line, hub, registry)

    @staticmethod
    def _apply(line: bytes, hub: RelayingChangeHub, registry: SharedConnectionRegistry) -> None:
        message = parse_line(line)
        if message is None:
            log.warning("unexpected message from the supervisor: %r", line[:100])
        elif message[0] == CHANGED:
            hub.publish_from_elsewhere(message[3])
        else:
            registry.apply_elsewhere(message[1], message[2], message[3])

    def close(self) -> None:
        self._writer.close()


# ---------------------------------------------------------------------- supervisor side


class _WorkerLine:
    """The broker's end of one worker's socket pair and the counts it reported."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.counts: Counter[tuple[str, str]] = Counter()

    def send(self, line: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(line)


class Broker:
    """Fans each worker's notifications out to the other workers (in the supervisor)."""

    def __init__(self) -> None:
        self._lines: dict[int, _WorkerLine] = {}  # by a number unique to each attach
        self._tasks: set[asyncio.Task[None]] = set()
        self._attached = 0

    async def attach(self) -> socket.socket:
        """A socket pair for a new worker: returns the worker's end (pass it to the
        worker process, then close it here).  The worker first gets the counts of
        the workers already running."""
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        line = _WorkerLine(writer)
        for (kind, key), count in self._counts_in_total().items():
            line.send(count_line(kind, key, count))
        self._attached += 1
        number = self._attached
        self._lines[number] = line
        task = asyncio.get_running_loop().create_task(self._relay(number, reader))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return theirs

    def _counts_in_total(self) -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        for line in self._lines.values():
            total.update(line.counts)
        return +total  # drops zero counts

    async def _relay(self, number: int, reader: asyncio.StreamReader) -> None:
        try:
            with contextlib.suppress(ConnectionError):
                while raw := await reader.readline():
                    self._relay_line(number, raw)
        finally:
            self._detach(number)

    def _relay_line(self, number: int, raw: bytes) -> None:
        message = parse_line(raw)
        if message is None:
            log.warning("unexpected message from a worker: %r", raw[:100])
            return
        if message[0] == COUNT:
            self._lines[number].counts[message[1], message[2]] += message[3]
        for other, line in self._lines.items():
            if other != number:
                line.send(raw)

    def _detach(self, number: int) -> None:
        """The worker is gone (its end closed when it exited): the others forget its
        connections."""
        gone = self._lines.pop(number)
        gone.writer.close()
        for (kind, key), count in gone.counts.items():
            if count:
                for line in self._lines.values():
                    line.send(count_line(kind, key, -count))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
