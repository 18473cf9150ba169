"""STORE and UID STORE (RFC 9051 section 6.4.6), UNCHANGEDSINCE (RFC 7162
section 3.1.3)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap import condstore
from mailhaven.imap.flags import normalize_flags
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.session import Session, bad, no
from mailhaven.storage.flags import store_applier
from mailhaven.storage.interface import StoreResult


async def store(session: Session, command: c.Store) -> Tagged:
    view = session.require_selected()
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    if not command.uid and not view.sequence_in_range(command.sequence):
        raise bad("Invalid message sequence number")
    if command.unchanged_since is not None:
        await condstore.enable_condstore(session)
    uids = view.resolve(command.sequence, uid=command.uid, saved=session.saved_search or ())
    flags = normalize_flags(command.flags)
    # What the client would expect each message to look like afterwards, from the
    # flags it was last told about.
    applied = store_applier(command.mode, flags)
    expected = {uid: applied(view.flags_of(uid)) for uid in uids if uid in view}
    result = await session.storage.store_flags(
        view.mailbox.id, uids, command.mode, flags, command.unchanged_since
    )
    view.record_own_changes(result.changed)
    await session.send_all(_fetch_responses(view, command, uids, result, expected))
    if result.unchanged_since_failed:
        failed = result.unchanged_since_failed
        if not command.uid:
            failed = tuple(n for u in failed if (n := view.sequence_number(u)) is not None)
        code = b"MODIFIED " + wire.sequence_set(failed)
        return Tagged(command.tag, "OK", "Conditional STORE failed for some messages", code)
    return Tagged(command.tag, "OK", "STORE completed")


def _fetch_responses(
    view: SelectedMailbox,
    command: c.Store,
    uids: list[int],
    result: StoreResult,
    expected: dict[int, frozenset[str]],
) -> list[responses.Data]:
    """The FETCH responses a STORE owes.  Without .SILENT: FLAGS of every message.
    With .SILENT: nothing, except that under UNCHANGEDSINCE every stored message
    gets its MODSEQ (RFC 7162 section 3.1.3), and a message whose flags also changed
    in another session gets its FLAGS, since this session's own view of it moves on
    now.  Once CONDSTORE is on, UID and MODSEQ always come along (section 3.2.4)."""
    failed = set(result.unchanged_since_failed)
    out = []
    for uid in uids:
        number = view.sequence_number(uid)
        if number is None or uid in failed:
            continue
        current = view.flags_of(uid)
        with_uid = command.uid or view.condstore
        if not command.silent or current != expected.get(uid, current):
            items = view.flag_items(uid, with_uid=with_uid)
        elif command.unchanged_since is not None:
            items = [(b"MODSEQ", b"(%d)" % view.modseq_of(uid))]
            if with_uid:
                items.insert(0, (b"UID", b"%d" % uid))
        else:
            continue
        out.append(responses.fetch(number, items))
    return out
