"""BODY[section], BINARY[part] and BINARY.SIZE[part] served from stored offsets
(RFC 9051 section 6.4.5, RFC 3501 section 6.4.5, RFC 3516).

Nothing here parses MIME structure again: the part tree computed at delivery
(:mod:`mailhaven.mime.structure`) gives every offset, so a section is a slice of
the raw message (HEADER.FIELDS needs only the fields of one header block).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re

from mailhaven.codec.commands import Section
from mailhaven.mime.headers import decode_text, parse_fields
from mailhaven.mime.structure import MESSAGE, MULTIPART, Part


class UnknownCTE(Exception):
    """BINARY of a part whose Content-Transfer-Encoding cannot be decoded
    (RFC 3516 section 4.3: the server answers NO [UNKNOWN-CTE])."""


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section path names (RFC 9051 section 6.4.5), or None.

    Part 1 of a non-multipart entity is the entity itself; a path continuing
    past a message/rfc822 part continues in the encapsulated message.  A
    multipart without parts (its boundary never occurs) has no part 1."""
    part = root
    for position, number in enumerate(path):
        if part.kind == MULTIPART:
            if not 1 <= number <= len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1:
            return None
        if part.kind == MESSAGE and position + 1 < len(path):
            part = part.children[0]
    return part


def extract_section(raw: bytes, root: Part, section: Section) -> bytes:
    """The bytes of BODY[section].  A part that does not exist gives b"" (the
    reference server does the same rather than answering NO)."""
    if not section.part:
        return _message_section(raw, root, section)
    part = find_part(root, section.part)
    if part is None:
        return b""
    if section.text is None:
        return raw[part.body_start : part.body_end]
    if section.text == "MIME":
        return raw[part.header_start : part.body_start]
    if part.kind != MESSAGE:
        # HEADER/TEXT of a part are defined only for message/rfc822 parts.
        return b""
    return _message_section(raw, part.children[0], section)


def _message_section(raw: bytes, message: Part, section: Section) -> bytes:
    """HEADER, HEADER.FIELDS[.NOT], TEXT or the whole of a message."""
    if section.text is None:
        return raw[message.header_start : message.body_end]
    if section.text == "TEXT":
        return raw[message.body_start : message.body_end]
    if section.text == "HEADER":
        return raw[message.header_start : message.body_start]
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(raw, message, section.fields, section.text == "HEADER.FIELDS")
    return b""


def header_fields(raw: bytes, message: Part, names: tuple[str, ...], include: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields in message order,
    with their folding, then the blank line (RFC 9051 section 6.4.5)."""
    if include:
        pattern = _fields_pattern(names)
        if pattern is not None:
            block = raw[message.header_start : message.body_start]
            return _matching_fields(block, pattern)
    return _fields_by_parsing(raw, message.header_start, message.body_start, names, include)


def header_block_section(header: bytes, section: Section) -> bytes:
    """HEADER, HEADER.FIELDS or HEADER.FIELDS.NOT of a top-level message, from its header
    block alone (as stored apart at delivery; see :func:`is_header_section`)."""
    if section.text == "HEADER":
        return header
    if section.text == "HEADER.FIELDS":
        pattern = _fields_pattern(section.fields)
        if pattern is not None:
            return _matching_fields(header, pattern)
    include = section.text == "HEADER.FIELDS"
    return _fields_by_parsing(header, 0, len(header), section.fields, include)


def is_header_section(section: Section | None) -> bool:
    """Whether BODY[section] needs only the top-level header block."""
    return (
        section is not None
        and not section.part
        and section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")
    )


def _fields_by_parsing(
    raw: bytes, start: int, end: int, names: tuple[str, ...], include: bool
) -> bytes:
    wanted = {name.lower().encode("ascii", "replace") for name in names}
    chosen = [
        _with_crlf(raw[field.start : field.end])
        for field in parse_fields(raw, start, end)
        if (field.name.lower() in wanted) == include and b":" in raw[field.start : field.end]
    ]
    return b"".join(chosen) + b"\r\n"


# A field name is printable US-ASCII except ":" (RFC 5322 section 2.2).  Only such names
# can be searched for with a pattern; any other name is left to the field parser.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


@functools.lru_cache(maxsize=256)
def _fields_pattern(names: tuple[str, ...]) -> re.Pattern[bytes] | None:
    """One pattern finding every field called one of *names* in a header block that
    starts with a line end: a line starting with the name (a field's first line, since
    continuation lines start with white space, RFC 5322 section 2.2.3), then its
    continuation lines; the line end that follows, if any, is captured apart.  The same
    fields, with the same bytes, as :func:`parse_fields` would give.  Starting with a
    line end lets the regular expression engine skip from line to line."""
    encoded = [name.lower().encode("ascii", "replace") for name in names]
    if not encoded or not all(_FIELD_NAME.fullmatch(name) for name in encoded):
        return None
    alternatives = b"|".join(re.escape(name) for name in encoded)
    return re.compile(
        rb"\n((?:" + alternatives + rb")[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)(?=(\n?))",
        re.IGNORECASE,
    )


def _matching_fields(block: bytes, pattern: re.Pattern[bytes]) -> bytes:
    if block.startswith((b"\n", b"\r\n")):
        return b"\r\n"
    # The header ends at its first empty line, as in parse_fields.
    ends = [end for end in (block.find(b"\n\n"), block.find(b"\n\r\n")) if end >= 0]
    if ends:
        block = block[: min(ends) + 1]
    fields = pattern.findall(b"\n" + block)
    return b"".join([_with_crlf(field + line_end) for field, line_end in fields]) + b"\r\n"


def _with_crlf(field: bytes) -> bytes:
    if field.endswith(b"\r\n"):
        return field
    if field.endswith(b"\n"):
        return field[:-1] + b"\r\n"
    return field + b"\r\n"


_BASE64_JUNK = re.compile(rb"[ \t\r\n]+")
_BASE64_VALID = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def decode_base64(data: bytes) -> bytes:
    """Base64 (RFC 2045 section 6.8) ignoring line breaks and whitespace.  Bytes
    outside the alphabet, data after the padding or a dangling single character
    make it undecodable."""
    compact = _BASE64_JUNK.sub(b"", data)
    if not _BASE64_VALID.fullmatch(compact) or len(compact) % 4 == 1:
        raise UnknownCTE("invalid base64 data")
    if b"=" in compact and len(compact) % 4:
        raise UnknownCTE("invalid base64 padding")
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4))
    except binascii.Error as error:
        raise UnknownCTE(str(error)) from error


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})|=[ \t]*\r?\n|[ \t]+(?=\r?\n)")


def decode_quoted_printable(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 section 6.7): ``=XX`` escapes, soft line breaks
    and the trailing whitespace of encoded lines removed.  A malformed ``=`` stays
    as it is (section 6.7 note 1 recommends exactly that robustness)."""

    def replace(match: re.Match[bytes]) -> bytes:
        if match.group(1) is not None:
            return bytes([int(match.group(1), 16)])
        return b""

    return _QP_ESCAPE.sub(replace, data)


_IDENTITY = frozenset({None, "7bit", "8bit", "binary"})


def decode_body(part: Part, body: bytes) -> bytes:
    """The body with its Content-Transfer-Encoding removed (RFC 3516 section 4)."""
    if part.kind != "leaf" or part.cte in _IDENTITY:
        return body
    if part.cte == "base64":
        return decode_base64(body)
    if part.cte == "quoted-printable":
        return decode_quoted_printable(body)
    raise UnknownCTE(f"unknown Content-Transfer-Encoding {part.cte!r}")


def extract_binary(raw: bytes, root: Part, path: tuple[int, ...]) -> bytes:
    """BINARY[part]: the decoded content (RFC 3516 section 4.2, RFC 9051 6.4.5).
    A part that does not exist gives b""; raises :class:`UnknownCTE`."""
    part = find_part(root, path) if path else root
    if part is None:
        return b""
    return decode_body(part, raw[part.body_start : part.body_end])


def top_header_values(raw: bytes, root: Part, name: str) -> list[str]:
    """Decoded (RFC 2047), unfolded values of the top-level fields called *name*."""
    wanted = name.lower().encode("ascii", "replace")
    return [
        decode_text(field.value)
        for field in parse_fields(raw, root.header_start, root.body_start)
        if field.name.lower() == wanted
    ]
