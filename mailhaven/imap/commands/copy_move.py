"""COPY, MOVE and their UID forms (RFC 9051 sections 6.4.7-6.4.8, RFC 6851 MOVE,
RFC 4315 COPYUID)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.commands.selected_state import send_expunged
from mailhaven.imap.session import Session, bad, no, untagged_ok
from mailhaven.storage.interface import CopyResult, OverQuota


def _copyuid(result: CopyResult) -> bytes:
    return b"COPYUID %d %s %s" % (
        result.uidvalidity,
        wire.sequence_set(result.source_uids),
        wire.sequence_set(result.destination_uids),
    )


async def _source_and_destination(session: Session, command: c.Copy | c.Move):
    view = session.require_selected()
    if not command.uid and not view.sequence_in_range(command.sequence):
        raise bad("Invalid message sequence number")
    uids = view.resolve(command.sequence, uid=command.uid, saved=session.saved_search or ())
    destination = await session.find_mailbox(
        session.decode_mailbox_name(command.mailbox), for_write=True
    )
    return view, uids, destination


async def copy(session: Session, command: c.Copy) -> Tagged:
    view, uids, destination = await _source_and_destination(session, command)
    if not uids:
        return Tagged(command.tag, "OK", "No messages copied")
    try:
        result = await session.storage.copy(view.mailbox.id, uids, destination.id)
    except OverQuota as error:
        raise no(f"COPY failed: {error}", b"OVERQUOTA") from None  # RFC 9208 section 4.3.1
    return Tagged(command.tag, "OK", "COPY completed", _copyuid(result))


async def move(session: Session, command: c.Move) -> Tagged:
    """RFC 6851 section 3.3: COPYUID in an untagged OK before the EXPUNGEs."""
    view, uids, destination = await _source_and_destination(session, command)
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    if not uids:
        return Tagged(command.tag, "OK", "No messages moved")
    try:
        result = await session.storage.move(view.mailbox.id, uids, destination.id)
    except OverQuota as error:
        raise no(f"MOVE failed: {error}", b"OVERQUOTA") from None  # RFC 9208 section 4.3.1
    await session.send(untagged_ok("Moved", _copyuid(result)))
    await send_expunged(session, list(result.source_uids))
    return Tagged(command.tag, "OK", "MOVE completed")
