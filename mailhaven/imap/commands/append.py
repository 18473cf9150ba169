"""APPEND (RFC 9051 section 6.3.12) with MULTIAPPEND (RFC 3502) and APPENDUID
(RFC 4315).  Each message's MIME metadata is computed here, once, before it is
stored; the parsing runs in a worker thread so big messages do not stall others."""

from __future__ import annotations

import asyncio
import datetime

from mailhaven.codec import commands as c
from mailhaven.codec import wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.flags import normalize_flags
from mailhaven.imap.session import Session, no
from mailhaven.mime import analyze
from mailhaven.storage.interface import NewMessage, OverQuota


async def append(session: Session, command: c.Append) -> Tagged:
    name = session.decode_mailbox_name(command.mailbox)
    mailbox = await session.find_mailbox(name, for_write=True)
    limit = session.config.limits.max_literal_size
    loop = asyncio.get_running_loop()
    prepared = []
    for message in command.messages:
        if not message.data:
            raise no("Cannot append an empty message", b"CANNOT")
        if len(message.data) > limit:
            raise no(f"Message is larger than the limit of {limit} bytes", b"TOOBIG")
        flags = normalize_flags(message.flags)
        analyzed = await loop.run_in_executor(None, analyze, message.data)
        prepared.append(
            NewMessage(
                raw=message.data,
                flags=flags,
                internal_date=message.internal_date
                or datetime.datetime.now(datetime.UTC).replace(microsecond=0),
                metadata=analyzed.metadata.to_bytes(),
                body_text=analyzed.body_text,
                header_text=analyzed.header_text,
            )
        )
    try:
        result = await session.storage.append(mailbox.id, prepared)
    except OverQuota as error:
        raise no(f"APPEND failed: {error}", b"OVERQUOTA") from None  # RFC 9208 section 4.3.1
    code = b"APPENDUID %d %s" % (result.uidvalidity, wire.sequence_set(result.destination_uids))
    return Tagged(command.tag, "OK", "APPEND completed", code)
