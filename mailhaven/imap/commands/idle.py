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
    woken = asyncio.Event()
    session.change_listener = woken.set
    await session.send(responses.Continuation(b"idling"))
    line_task = asyncio.ensure_future(
        session.channel.read_raw_line(timeout=session.config.limits.autologout_seconds)
    )
    try:
        while True:
            if session.state is State.SELECTED:
                await session.send_updates(allow_expunge=True)
            woken_task = asyncio.ensure_future(woken.wait())
            done, _ = await asyncio.wait(
                {line_task, woken_task},
                timeout=session.config.idle_keepalive_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            woken_task.cancel()
            woken.clear()
            if line_task in done:
                break
            if not done:
                await session.send(untagged_ok("Still here"))
    finally:
        session.change_listener = None
        line_task.cancel()
    line = line_task.result()
    if line is None:
        session.close()
        return None
    if line.strip().upper() != b"DONE":
        raise bad("Expected DONE to end IDLE")
    return Tagged(command.tag, "OK", "IDLE terminated")
