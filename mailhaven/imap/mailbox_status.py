"""The ``* STATUS`` response shared by STATUS and LIST-STATUS (RFC 9051 section
6.3.11, RFC 5819, RFC 8438 SIZE, RFC 7889 APPENDLIMIT, RFC 9208 DELETED-STORAGE,
RFC 8474 MAILBOXID)."""

from __future__ import annotations

from mailhaven.codec import responses
from mailhaven.imap.session import Session, bad


def kibibytes(octets: int) -> int:
    """RFC 9208 section 5.1: storage is counted in units of 1024 octets, rounded
    up so that usage never looks smaller than it is."""
    return -(-octets // 1024)


def mailbox_id_value(object_id: int) -> bytes:
    """``"(" objectid ")"`` of a MAILBOXID (RFC 8474 section 7)."""
    return b"(F%d)" % object_id


async def status_response(
    session: Session, mailbox_id: int, name: str, items: tuple[str, ...]
) -> responses.Data:
    """``* STATUS`` for RFC 9051 6.3.11 items, RFC 8438 SIZE, RFC 7889 APPENDLIMIT."""
    counts = await session.storage.mailbox_counts(mailbox_id)
    values: dict[str, int | bytes] = {
        "MESSAGES": counts.messages,
        "RECENT": counts.recent,
        "UIDNEXT": counts.uidnext,
        "UIDVALIDITY": counts.uidvalidity,
        "UNSEEN": counts.unseen,
        "DELETED": counts.deleted,
        "SIZE": counts.size,
        "HIGHESTMODSEQ": counts.highest_modseq,
        "APPENDLIMIT": session.config.limits.max_literal_size,
        "DELETED-STORAGE": kibibytes(counts.deleted_size),  # RFC 9208 section 4.1.4
        "MAILBOXID": mailbox_id_value(counts.object_id),  # RFC 8474 section 4.3
    }
    unknown = [item for item in items if item not in values]
    if unknown:
        raise bad(f"Unknown STATUS item {unknown[0]}")
    return responses.status(
        session.encode_mailbox_name(name),
        [(item, values[item]) for item in items],
        utf8=session.utf8,
    )
