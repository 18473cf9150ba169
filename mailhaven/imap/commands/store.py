"""STORE and UID STORE (RFC 9051 section 6.4.6), UNCHANGEDSINCE (RFC 7162
section 3.1.3)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.flags import normalize_flags
from mailhaven.imap.session import Session, bad, no


async def store(session: Session, command: c.Store) -> Tagged:
    view = session.require_selected()
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    if not command.uid and not view.sequence_in_range(command.sequence):
        raise bad("Invalid message sequence number")
    uids = view.resolve(command.sequence, uid=command.uid, saved=session.saved_search or ())
    flags = normalize_flags(command.flags)
    result = await session.storage.store_flags(
        view.mailbox.id, uids, command.mode, flags, command.unchanged_since
    )
    view.record_own_changes(result.changed)
    if not command.silent:
        failed = set(result.unchanged_since_failed)
        out = []
        for uid in uids:
            number = view.sequence_number(uid)
            if number is None or uid in failed:
                continue
            out.append(responses.fetch(number, view.flag_items(uid, with_uid=command.uid)))
        await session.send_all(out)
    if result.unchanged_since_failed:
        failed = result.unchanged_since_failed
        if not command.uid:
            failed = tuple(n for u in failed if (n := view.sequence_number(u)) is not None)
        code = b"MODIFIED " + wire.sequence_set(failed)
        return Tagged(command.tag, "OK", "Conditional STORE failed for some messages", code)
    return Tagged(command.tag, "OK", "STORE completed")
