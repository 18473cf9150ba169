"""Finding one header field's values fast, for the SEARCH header keys (FROM, SUBJECT,
HEADER..., RFC 9051 section 6.4.4).

:func:`mailhaven.mime.sections.top_header_values` splits the whole header into
fields, about 65 µs for a typical message; a SUBJECT search over the candidates the
text index proposes spent most of its time there.  :func:`top_field_values` finds the
wanted field's lines with one regular expression over the header block instead and
gives the same values: the same field boundaries (a field starts at every line that
does not begin with a space or tab, up to the first empty line; RFC 5322 section
2.2.3), the same ASCII-only case-insensitive name comparison and the same decoding.
Names the expression cannot express that way fall back to the full split.
"""

from __future__ import annotations

import functools
import re

from mailhaven.mime.headers import decode_text, line_end, parse_fields

_WHITESPACE = b" \t"


@functools.lru_cache(maxsize=64)
def _field_start(wanted: bytes) -> re.Pattern[bytes] | None:
    """A pattern matching the start of a field called *wanted* up to its colon, or
    None when such a name cannot be matched at a line start (empty, or with
    whitespace, a colon or a line break in it)."""
    if not wanted or wanted[:1] in (b" ", b"\t") or wanted[-1:] in (b" ", b"\t"):
        return None
    if any(char in wanted for char in b":\r\n"):
        return None
    # re.IGNORECASE on bytes folds ASCII letters only, as bytes.lower() does.  A line
    # without a colon is a field whose name is the whole line and whose value is empty.
    return re.compile(
        b"^" + re.escape(wanted) + rb"(?:([ \t]*:)|\r*(?:\n|\Z))", re.MULTILINE | re.IGNORECASE
    )


def top_field_values(block: bytes, name: str) -> list[str]:
    """The RFC 2047 decoded, unfolded values of the fields called *name* in the
    header *block*, in order: for a message's top-level header block, what
    :func:`mailhaven.mime.header_value` returns."""
    wanted = name.lower().encode("ascii", "replace")
    pattern = _field_start(wanted)
    if pattern is None:
        fields = parse_fields(block, 0, len(block))
        return [decode_text(field.value) for field in fields if field.name.lower() == wanted]
    end = _fields_end(block)
    values = []
    for match in pattern.finditer(block, 0, end):
        with_colon = match.group(1) is not None
        field_end = line_end(block, match.end(), end) if with_colon else match.end()
        folded = field_end < end and block[field_end] in _WHITESPACE
        while field_end < end and block[field_end] in _WHITESPACE:
            field_end = line_end(block, field_end, end)
        if with_colon:
            value = block[match.end() : field_end].lstrip(_WHITESPACE)
            values.append(decode_text(value.removesuffix(b"\n").removesuffix(b"\r")))
        elif not folded:  # folded, the colon-less name runs into the next line
            values.append("")
    return values


def _fields_end(block: bytes) -> int:
    """Where the first empty line starts (the fields end there), or the block's end."""
    if block.startswith((b"\n", b"\r\n")):
        return 0
    ends = [found + 1 for found in (block.find(b"\n\n"), block.find(b"\n\r\n")) if found >= 0]
    return min(ends, default=len(block))
