"""Encoding of IMAP data items on the server-to-client side (RFC 9051 section 4).

Pure functions from Python values to wire bytes.  Strings are sent quoted when
RFC 9051 section 4.3 allows it (7-bit, no CR/LF/NUL, short) and as literals otherwise,
so any byte sequence can be sent safely.
"""

from __future__ import annotations

import datetime
import functools
import operator
from collections.abc import Iterable

NIL = b"NIL"

# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR excludes CR, LF, NUL and 8-bit
# (RFC 9051 section 9 allows UTF-8 only after ENABLE UTF8=ACCEPT).
_QUOTED_MAX = 1024
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}


def _quotable(data: bytes, utf8: bool) -> bool:
    return (
        len(data) <= _QUOTED_MAX
        and (data.isascii() or (utf8 and _is_utf8(data)))
        and b"\r" not in data
        and b"\n" not in data
        and b"\0" not in data
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def literal(data: bytes) -> bytes:
    """``literal = "{" number "}" CRLF *CHAR8`` (RFC 9051 section 4.3)."""
    return b"{%d}\r\n" % len(data) + data


def string(data: bytes | str, *, utf8: bool = False) -> bytes:
    """A ``string``: quoted when possible, a literal otherwise.  With *utf8* (after
    ENABLE IMAP4rev2 / UTF8=ACCEPT), quoted strings may hold UTF-8 (RFC 9051 sec. 9)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(data: bytes | str | None) -> bytes:
    """``nstring = string / nil``."""
    return NIL if data is None else string(data)


def astring(data: bytes | str, *, utf8: bool = False) -> bytes:
    """``astring``: bare atom when the value is a valid atom, else a string."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data and data.isascii() and not any(c in _ATOM_SPECIALS for c in data):
        return data
    return string(data, utf8=utf8)


def number(value: int) -> bytes:
    return b"%d" % value


def paren(items: Iterable[bytes]) -> bytes:
    """A parenthesised, space-separated list of already-encoded items."""
    return b"(" + b" ".join(items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    return paren(flag.encode("ascii") for flag in flags)


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Compress numbers into a ``sequence-set`` (``1:3,7``); the input need not be
    sorted.  Used for COPYUID/APPENDUID (RFC 4315) and ESEARCH ALL (RFC 4731)."""
    ordered = sorted(set(numbers))
    if not any(map((1).__eq__, map(operator.sub, ordered[1:], ordered))):
        # No two numbers in a row (ESEARCH ALL of a word in every third message of a
        # large mailbox: tens of thousands): one formatting call, the test run in C.
        return (b"%d," * len(ordered))[:-1] % tuple(ordered)
    spans: list[bytes] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        spans.append(b"%d" % ordered[i] if i == j else b"%d:%d" % (ordered[i], ordered[j]))
        i = j + 1
    return b",".join(spans)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_time(value: datetime.datetime) -> bytes:
    """``date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP
    zone DQUOTE`` (RFC 9051 section 9), e.g. ``"01-Jan-2024 12:00:00 +0000"``."""
    # Aware datetimes of one instant compare equal whatever their zone, so the zone
    # is part of the cache key.
    return _date_time(value, value.utcoffset())


@functools.lru_cache(maxsize=65536)
def _date_time(value: datetime.datetime, offset: datetime.timedelta | None) -> bytes:
    # A first sync formats every INTERNALDATE of the mailbox, and a client that
    # syncs again asks for the same ones.
    offset = offset or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f'"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d} '
        f'{value:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode("ascii")
