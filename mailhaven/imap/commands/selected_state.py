"""CHECK, CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE (RFC 9051 sections 6.4.1-6.4.3,
RFC 3691, RFC 4315 section 2.1)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.session import Session, no


async def check(session: Session, command: c.Check) -> Tagged:
    """Every command is already durable when answered; CHECK is a NOOP here."""
    return Tagged(command.tag, "OK", "CHECK completed")


async def close(session: Session, command: c.Close) -> Tagged:
    """RFC 9051 6.4.2: silently expunge (unless read-only) and deselect."""
    view = session.require_selected()
    if not view.readonly:
        await session.storage.expunge(view.mailbox.id)
    session.leave_selected()
    return Tagged(command.tag, "OK", "CLOSE completed")


async def unselect(session: Session, command: c.Unselect) -> Tagged:
    session.leave_selected()
    return Tagged(command.tag, "OK", "UNSELECT completed")


async def expunge(session: Session, command: c.Expunge) -> Tagged:
    view = session.require_selected()
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    uids = None
    if command.uids is not None:
        uids = view.resolve(command.uids, uid=True, saved=session.saved_search or ())
    expunged = await session.storage.expunge(view.mailbox.id, uids)
    await send_expunged(session, expunged)
    return Tagged(command.tag, "OK", "EXPUNGE completed")


async def send_expunged(session: Session, uids: list[int]) -> None:
    """Report messages this session removed: EXPUNGE per message, or one
    VANISHED once QRESYNC is enabled (RFC 7162 section 3.2.10)."""
    view = session.require_selected()
    numbers = view.remove_expunged(uids)
    if view.qresync:
        if uids:
            await session.send(responses.vanished(uids))
            view.report_modseq_in_tagged = True
        return
    await session.send_all(responses.expunge(n) for n in numbers)
