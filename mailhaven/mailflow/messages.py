"""Turning raw bytes from outside (LMTP, mbox, Maildir, another IMAP server) into
messages the store accepts, and back.

Every stored message goes through :func:`mailhaven.mime.analyze` once, here, like an
APPEND does.  IMAP serves messages with CRLF line endings (RFC 9051 section 2.2 and
RFC 5322 section 2.1) while mbox and Maildir files hold LF: :func:`to_crlf` and
:func:`to_lf` convert, and are inverse to each other on any message without bare CR.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from mailhaven.mime import analyze
from mailhaven.storage.flags import normalize_flags
from mailhaven.storage.interface import NewMessage, StoredWire

_BARE_LF = re.compile(rb"(?<!\r)\n")


def to_crlf(data: bytes) -> bytes:
    """Every LF not already preceded by CR becomes CRLF."""
    return _BARE_LF.sub(b"\r\n", data)


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def prepare(
    raw: bytes, flags: Iterable[str] = (), internal_date: datetime.datetime | None = None
) -> NewMessage:
    """A message ready for :meth:`Storage.append`: metadata computed, flags
    normalised, INTERNALDATE now unless given (blocking: run it off the loop)."""
    analyzed = analyze(raw)
    metadata = analyzed.metadata
    return NewMessage(
        raw=raw,
        flags=normalize_flags(flags),
        internal_date=internal_date or now(),
        metadata=metadata.to_bytes(),
        body_text=analyzed.body_text,
        header_text=analyzed.header_text,
        wire=StoredWire(metadata.envelope, metadata.body, metadata.bodystructure),
    )
