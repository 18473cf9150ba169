"""Many sessions asking the store the same thing at once get one answer.

One commit wakes every session that has the mailbox selected (all of them at once
when they IDLE: RFC 2177), and each then asks what changed since the modseq it last
saw and, when messages are new, claims their ``\\Recent``.  Asked one by one, 10,000
idlers cost 10,000 reads and 10,000 write transactions, serialised behind the single
writer; here they cost one read per distinct question and one claim per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# What a claim returns: the UIDs now \Recent for the caller, and the mailbox's highest
# modseq seen inside the claiming transaction (every message up to it was claimed).
Claim = tuple[set[int], int]


class SharedReads:
    """Concurrent calls with the same key share one read.

    The key must capture everything the answer depends on, including how recent it
    must be: a caller joins a read only if that read began late enough for it (see
    ``ChangeHub.generation``)."""

    def __init__(self) -> None:
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}

    async def read(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> T:
        future = self._in_flight.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._in_flight[key] = future
            future.add_done_callback(functools.partial(self._forget, key))
        # Shielded: one cancelled caller must not cancel the read the others wait for.
        return await asyncio.shield(future)

    def _forget(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if self._in_flight.get(key) is future:
            del self._in_flight[key]


class RecentClaims:
    """One ``\\Recent`` claim per change instead of one per woken session.

    RFC 3501 section 2.3.2 (RFC 9051 dropped ``\\Recent``) gives each new message's
    ``\\Recent`` to exactly one session.  A session that has seen the mailbox up to
    modseq M needs a claim only if no claim in this process has covered M yet: a
    claim running or done after M was committed has already handed every message up
    to M to its session.  Messages added by other processes raise the modseq too, so
    they are claimed once they are seen here."""

    def __init__(self) -> None:
        self._claimed_through: dict[int, int] = {}
        self._in_flight: dict[int, tuple[int, asyncio.Future[Claim]]] = {}

    async def claim(
        self, mailbox_id: int, seen_modseq: int, start: Callable[[], Awaitable[Claim]]
    ) -> set[int]:
        while True:
            if self._claimed_through.get(mailbox_id, 0) >= seen_modseq:
                return set()
            pending = self._in_flight.get(mailbox_id)
            if pending is None:
                break
            requested_at, future = pending
            if requested_at >= seen_modseq:
                return set()  # that claim began after seen_modseq was committed
            # Begun earlier: it may miss messages this caller knows of; see what it covered.
            if future.done():
                # Its done callback may not have run yet, and awaiting a done future
                # does not yield to the loop: without this the loop would spin here.
                self._finished(mailbox_id, future)
                continue
            with contextlib.suppress(Exception):
                await asyncio.shield(future)
        future = asyncio.ensure_future(start())
        self._in_flight[mailbox_id] = (seen_modseq, future)
        future.add_done_callback(functools.partial(self._finished, mailbox_id))
        uids, _covered = await asyncio.shield(future)
        return uids

    def _finished(self, mailbox_id: int, future: asyncio.Future[Claim]) -> None:
        pending = self._in_flight.get(mailbox_id)
        if pending is not None and pending[1] is future:
            del self._in_flight[mailbox_id]
        if future.cancelled() or future.exception() is not None:
            return
        _uids, covered = future.result()
        if covered > self._claimed_through.get(mailbox_id, 0):
            self._claimed_through[mailbox_id] = covered
