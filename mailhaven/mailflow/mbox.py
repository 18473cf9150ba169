"""mbox files: reading mboxrd and mboxo, writing mboxrd.

Format (RFC 4155 and the mboxrd convention): each message starts with a
``From sender asctime-date`` line and ends with an empty line.  In mboxrd every
line matching ``>*From `` in a message got one more ``>`` when written, so reading
removes exactly one; in mboxo only ``From `` lines were quoted and reading turns
``>From `` back into ``From `` (which cannot tell a quoted line from a real
``>From``: use mboxrd where you can).  Lines end with LF in the file and CRLF in
the store.

Flags travel in the headers mutt and Dovecot use: ``Status:`` (``R`` seen, ``O``
old), ``X-Status:`` (``A`` answered, ``F`` flagged, ``T`` draft, ``D`` deleted) and
``X-Keywords:``.  They are lifted into IMAP flags on import and removed from the
message, and written back on export, so a round trip gives the same bytes.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailhaven.mailflow.messages import to_crlf, to_lf
from mailhaven.mailflow.source import SourceMessage

MBOXRD = "mboxrd"
MBOXO = "mboxo"
VARIANTS = (MBOXRD, MBOXO)

_FROM_LINE = re.compile(rb"From \S*\s+.*\d{4}\s*$")  # "From sender Mon Jan  1 12:00:00 2024"
_QUOTED_RD = re.compile(rb"^>(>*From )", re.MULTILINE)
_QUOTED_O = re.compile(rb"^>(From )", re.MULTILINE)
_TO_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_FLAG_HEADERS = (b"status", b"x-status", b"x-keywords")

STATUS_LETTERS = {"R": "\\Seen"}
X_STATUS_LETTERS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}


# ---------------------------------------------------------------------- reading


def read_mbox(path: Path, variant: str = MBOXRD) -> Iterator[SourceMessage]:
    """The messages of one mbox file, in file order (streamed, not loaded whole)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown mbox variant {variant!r}")
    with path.open("rb") as stream:
        for number, (from_line, lines) in enumerate(_split(stream), start=1):
            yield _message(from_line, b"".join(lines), variant, f"{path} message {number}")


def _split(stream: BinaryIO) -> Iterator[tuple[bytes, list[bytes]]]:
    """(From_ line, message lines) pairs.  A From_ line starts a message at the top
    of the file, after an empty line, or when it carries a date (so a message whose
    last line had no line break still ends at the next From_ line)."""
    from_line: bytes | None = None
    lines: list[bytes] = []
    previous_blank = True
    for line in stream:
        if line.startswith(b"From ") and (previous_blank or _FROM_LINE.match(line)):
            if from_line is not None:
                yield from_line, _without_separator(lines)
            from_line, lines = line, []
        elif from_line is not None:
            lines.append(line)
        previous_blank = line in (b"\n", b"\r\n")
    if from_line is not None:
        yield from_line, _without_separator(lines)


def _without_separator(lines: list[bytes]) -> list[bytes]:
    """Drop the one line break a writer adds after each message."""
    if lines and lines[-1].endswith(b"\n"):
        lines[-1] = lines[-1][:-1]
        if lines[-1].endswith(b"\r"):
            lines[-1] = lines[-1][:-1]
    return lines


def _message(from_line: bytes, data: bytes, variant: str, origin: str) -> SourceMessage:
    data = (_QUOTED_RD if variant == MBOXRD else _QUOTED_O).sub(rb"\1", data)
    data, flags = _lift_flag_headers(data)
    return SourceMessage(
        raw=to_crlf(data),
        flags=frozenset(flags),
        internal_date=_from_date(from_line),
        origin=origin,
    )


def _from_date(from_line: bytes) -> datetime.datetime | None:
    """The asctime date of a From_ line, taken as UTC when it names no zone."""
    parts = from_line.decode("latin-1").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(parts[2].strip())
    except (ValueError, TypeError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _header_end(data: bytes) -> int:
    """Offset just past the header's last line break (the empty line stays in the body)."""
    if data.startswith(b"\n"):
        return 0
    end = data.find(b"\n\n")
    return len(data) if end < 0 else end + 1


def _lift_flag_headers(data: bytes) -> tuple[bytes, set[str]]:
    end = _header_end(data)
    kept: list[bytes] = []
    flags: set[str] = set()
    current: str | None = None  # the flag header whose continuation lines follow
    for line in data[:end].splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current is not None:
            flags |= _flags_from(current, line)
            continue
        name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
        if name in _FLAG_HEADERS:
            current = name.decode("ascii")
            flags |= _flags_from(current, line.split(b":", 1)[1])
        else:
            current = None
            kept.append(line)
    return b"".join(kept) + data[end:], flags


def _flags_from(header: str, value: bytes) -> set[str]:
    text = value.decode("utf-8", "replace")
    if header == "x-keywords":
        return {word for word in re.split(r"[\s,]+", text) if word}
    letters = STATUS_LETTERS if header == "status" else X_STATUS_LETTERS
    return {letters[letter] for letter in text.strip() if letter in letters}


# ---------------------------------------------------------------------- writing


def flag_headers(flags: Iterable[str]) -> bytes:
    """Status/X-Status/X-Keywords lines for *flags* (empty when there are none)."""
    flags = set(flags)
    status = "".join(letter for letter, flag in STATUS_LETTERS.items() if flag in flags)
    x_status = "".join(letter for letter, flag in X_STATUS_LETTERS.items() if flag in flags)
    keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
    lines = b""
    if status:
        lines += f"Status: {status}O\n".encode()
    if x_status:
        lines += f"X-Status: {x_status}\n".encode()
    if keywords:
        lines += f"X-Keywords: {' '.join(keywords)}\n".encode()
    return lines


def mbox_entry(raw: bytes, flags: Iterable[str], internal_date: datetime.datetime) -> bytes:
    """One message as an mboxrd entry: From_ line, quoted LF text, empty line."""
    data = to_lf(raw)
    end = _header_end(data)
    data = data[:end] + flag_headers(flags) + data[end:]
    stamp = internal_date.astimezone(datetime.UTC).strftime("%a %b %d %H:%M:%S %Y")
    return b"From MAILER-DAEMON " + stamp.encode() + b"\n" + _TO_QUOTE.sub(rb">\1", data) + b"\n"
