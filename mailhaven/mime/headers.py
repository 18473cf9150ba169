"""Header blocks located over the raw message bytes (RFC 5322 section 2.2).

The standard library's ``email`` parser does not report byte offsets, so header
fields are found here by scanning lines: a field starts at a line that does not
begin with whitespace and runs until the next such line (continuation lines are
folding, RFC 5322 section 2.2.3).  Values are kept as bytes; decoding into text
(RFC 2047 encoded words) is a separate step used only for SEARCH.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.header
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: ``name`` as written (without trailing whitespace), ``value``
    the bytes after the colon with leading whitespace skipped and the final line end
    removed (folding kept), ``start``/``end`` the offsets of the whole field in the
    raw message including its line end."""

    name: bytes
    value: bytes
    start: int
    end: int


def line_end(raw: bytes, pos: int, limit: int) -> int:
    """Offset just past the line starting at *pos* (past its LF), at most *limit*."""
    newline = raw.find(b"\n", pos, limit)
    return limit if newline < 0 else newline + 1


# analyze() reads each part's header block from several places (structure, ENVELOPE,
# BODYSTRUCTURE, PREVIEW, SORT values): while it runs, blocks of its message are parsed
# once per thread.  Only the message being analysed is remembered, and only meanwhile.
_analysis = threading.local()


@contextlib.contextmanager
def fields_parsed_once(raw: bytes) -> Iterator[None]:
    """Within this block, parse_fields of *raw* parses each header block only once."""
    _analysis.raw, _analysis.blocks = raw, {}
    try:
        yield
    finally:
        _analysis.raw = _analysis.blocks = None


def parse_fields(raw: bytes, start: int, end: int) -> list[HeaderField]:
    """The header fields in ``raw[start:end]``, a header block as located by the
    structure parser (it may or may not include the terminating blank line)."""
    if getattr(_analysis, "raw", None) is not raw:
        return _parse_fields(raw, start, end)
    blocks: dict[tuple[int, int], list[HeaderField]] = _analysis.blocks
    fields = blocks.get((start, end))
    if fields is None:
        fields = blocks[start, end] = _parse_fields(raw, start, end)
    return list(fields)  # the fields are frozen; the list is the caller's own


def _parse_fields(raw: bytes, start: int, end: int) -> list[HeaderField]:
    fields: list[HeaderField] = []
    pos = start
    while pos < end:
        stop = line_end(raw, pos, end)
        if raw[pos:stop] in (b"\r\n", b"\n"):
            break
        field_end = stop
        while field_end < end and raw[field_end] in b" \t":
            field_end = line_end(raw, field_end, end)
        fields.append(_make_field(raw, pos, field_end))
        pos = field_end
    return fields


def _make_field(raw: bytes, start: int, end: int) -> HeaderField:
    text = raw[start:end]
    colon = text.find(b":")
    if colon < 0:
        # A line without a colon: keep it as a nameless-value field so offsets stay
        # contiguous; it never matches a field name.
        return HeaderField(text.rstrip(b"\r\n"), b"", start, end)
    value = text[colon + 1 :].lstrip(b" \t")
    if value.endswith(b"\n"):
        value = value[:-1]
    if value.endswith(b"\r"):
        value = value[:-1]
    return HeaderField(text[:colon].rstrip(b" \t"), value, start, end)


def find_value(fields: list[HeaderField], name: bytes) -> bytes | None:
    """The value of the first field called *name* (case-insensitive), or None."""
    wanted = name.lower()
    for field in fields:
        if field.name.lower() == wanted:
            return field.value
    return None


def unfold(value: bytes) -> bytes:
    """Remove the CR/LF of folding, keeping the whitespace that follows
    (RFC 5322 section 2.2.3)."""
    return value.replace(b"\r", b"").replace(b"\n", b"")


def decode_text(value: bytes) -> str:
    """Unfolded header text with RFC 2047 encoded words decoded; undecodable
    charsets and 8-bit bytes are decoded leniently (UTF-8, then Latin-1)."""
    text = _lenient_str(unfold(value))
    if "=?" not in text:
        return text
    try:
        chunks = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError, email.errors.HeaderParseError):
        return text  # e.g. bad base64 in an encoded word: keep it as written
    parts: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            parts.append(chunk)
        else:
            parts.append(_decode_charset(chunk, charset))
    return "".join(parts)


def _decode_charset(data: bytes, charset: str | None) -> str:
    if charset and charset != "unknown-8bit":
        try:
            return data.decode(charset, errors="replace")
        except (LookupError, ValueError):  # unknown charset, or one with a NUL in it
            pass
    return _lenient_str(data)


def _lenient_str(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
