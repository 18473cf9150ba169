"""COMPRESS DEFLATE (RFC 4978 section 3): answer OK uncompressed, then compress
both directions from the byte after that OK's CRLF (see :mod:`mailhaven.deflate`)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec.responses import Tagged
from mailhaven.imap.session import Session, no


async def compress(session: Session, command: c.Compress) -> None:
    if session.channel.compressing:
        raise no("DEFLATE is already active on this connection", b"COMPRESSIONACTIVE")
    await session.send(Tagged(command.tag, "OK", "DEFLATE active"))
    session.channel.start_compression()
