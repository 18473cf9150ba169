"""IDLE (RFC 2177, RFC 9051 section 6.3.13): report changes as they happen until
the client sends DONE.  Changes arrive from the store's change hub, which is fed
by every commit in this process (other sessions, APPEND, delivery).

While nothing happens, an untagged OK goes out every ``idle_keepalive_seconds``
(configuration ``[imap]``, default 120) so NATs and mobile networks do not drop
the connection (RFC 2177 section 3 asks clients to re-issue IDLE at least every 29
minutes; this keeps the path open in between)."""

from __future__ import annotations

import asyncio

from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.session import Session, State, bad, untagged_ok


async def idle(session: Session, command: c.Idle) -> Tagged | None:
    wakeup = _Wakeup(asyncio.get_running_loop(), session.config.idle_keepalive_seconds)
    # Changes to the selected mailbox come through the process's fan-out: written by
    # it while this IDLE is parked, a wake of this task otherwise (see idle_fanout).
    fan_out = session.context.idle_fan_out
    idling_on = fan_out.enter(session, wakeup)
    await session.send(responses.Continuation(b"idling"))
    line_task = asyncio.ensure_future(
        session.channel.read_raw_line(timeout=session.config.limits.autologout_seconds)
    )
    line_task.add_done_callback(wakeup.wake)
    try:
        while True:
            if session.state is State.SELECTED:
                await session.send_updates(allow_expunge=True)
            woken = await wakeup.wait()
            if line_task.done():
                break
            if not woken:
                await session.send(untagged_ok("Still here"))
    finally:
        if idling_on is not None:
            fan_out.leave(idling_on, session)
        wakeup.close()
        line_task.cancel()
    line = line_task.result()
    if line is None:
        session.close()
        return None
    if line.strip().upper() != b"DONE":
        raise bad("Expected DONE to end IDLE")
    return Tagged(command.tag, "OK", "IDLE terminated")


class _Wakeup:
    """What an idling session waits for: a change, the client's line or the keepalive
    time.  A commit wakes every idler of the mailbox at once, so a wake must cost
    little: one future per wait, no task, and one keepalive timer per IDLE that is
    moved forward rather than cancelled and created anew at each wait (10,000
    discarded timers per commit would also keep the garbage collector busy).  A wake
    while the session is busy is kept."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._future: asyncio.Future[bool] | None = None
        self._pending = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def parked(self) -> bool:
        """True while the IDLE waits in :meth:`wait` and nothing has woken it."""
        return self._future is not None and not self._future.done()

    def wake(self, *_: object) -> None:
        self._resolve(True)

    def _resolve(self, woken: bool) -> None:
        if self._future is None:
            self._pending = self._pending or woken
        elif not self._future.done():
            self._future.set_result(woken)

    def _on_timer(self) -> None:
        self._timer = None
        if self._future is None:
            return  # between waits: the next wait arms it again
        if self._loop.time() >= self._deadline:
            self._resolve(False)
        else:  # a wake moved the deadline on since this timer was armed
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    async def wait(self) -> bool:
        """True when woken, False when the timeout passed without a wake."""
        if self._pending:
            self._pending = False
            return True
        self._deadline = self._loop.time() + self._timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
        self._future = self._loop.create_future()
        try:
            return await self._future
        finally:
            self._future = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
