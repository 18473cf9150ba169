"""APPEND (RFC 9051 section 6.3.12) with MULTIAPPEND (RFC 3502) and APPENDUID
(RFC 4315).  Each message's MIME metadata is computed here, once, before it is
stored, off the event loop so big messages do not stall others: the storage runs
the analysis and the transaction in one hand-off to its writer when it can."""

from __future__ import annotations

import functools

from mailhaven.codec import commands as c
from mailhaven.codec import wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.flags import normalize_flags
from mailhaven.imap.session import Session, no
from mailhaven.mailflow.messages import prepare
from mailhaven.storage.interface import MailboxNotFound, NewMessage, OverQuota


async def append(session: Session, command: c.Append) -> Tagged:
    name = session.decode_mailbox_name(command.mailbox)
    limit = session.config.limits.max_literal_size
    for message in command.messages:
        if not message.data:
            raise no("Cannot append an empty message", b"CANNOT")
        if len(message.data) > limit:
            raise no(f"Message is larger than the limit of {limit} bytes", b"TOOBIG")
    # Flags are checked here, on the loop: an invalid one is BAD before anything is stored.
    flags = [normalize_flags(message.flags) for message in command.messages]
    build = functools.partial(_prepare_all, command.messages, flags)
    try:
        result = await session.storage.append_to(session.require_user().id, name, build)
    except MailboxNotFound:
        raise no(f"Mailbox {name!r} does not exist", b"TRYCREATE") from None  # RFC 9051 7.1
    except OverQuota as error:
        raise no(f"APPEND failed: {error}", b"OVERQUOTA") from None  # RFC 9208 section 4.3.1
    code = b"APPENDUID %d %s" % (result.uidvalidity, wire.sequence_set(result.destination_uids))
    return Tagged(command.tag, "OK", "APPEND completed", code)


def _prepare_all(
    messages: tuple[c.AppendMessage, ...], flags: list[frozenset[str]]
) -> list[NewMessage]:
    """The stored form of every message (blocking: MIME analysis)."""
    return [
        prepare(message.data, message_flags, message.internal_date)
        for message, message_flags in zip(messages, flags, strict=True)
    ]
