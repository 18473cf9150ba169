"""PREVIEW text (RFC 8970), computed once at delivery from the first text part."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable

from mailhaven.mime import sections
from mailhaven.mime.headers import find_value, parse_fields
from mailhaven.mime.rfc822 import parse_content_type, parse_disposition
from mailhaven.mime.structure import LEAF, Part

# RFC 8970 section 3.3: SHOULD be at most 200 characters, MUST NOT exceed 256.
PREVIEW_LENGTH = 200

_INVISIBLE_HTML = re.compile(
    r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_HTML_TAG = re.compile(r"<[^>]*>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def preview_text(raw: bytes, root: Part, decode: Callable[[bytes, str], str]) -> str:
    """Up to :data:`PREVIEW_LENGTH` characters of the first inline text/plain part
    (else the first text/html part, markup removed), whitespace collapsed; "" when
    the message has no such part (RFC 8970 section 3.2 then asks for "")."""
    plain: Part | None = None
    markup: Part | None = None
    for part in root.walk():
        if part.kind != LEAF or not part.text or _is_attachment(raw, part):
            continue
        # An invalid Content-Type leaves the text/plain default (RFC 2045 section 5.2).
        subtype = _subtype(raw, part)
        if subtype in (b"plain", b"") and plain is None:
            plain = part
        elif subtype == b"html" and markup is None:
            markup = part
    chosen = plain or markup
    if chosen is None:
        return ""
    content = raw[chosen.body_start : chosen.body_end]
    with contextlib.suppress(sections.UnknownCTE):
        content = sections.decode_body(chosen, content)
    text = decode(content, part_charset(raw, chosen))
    if chosen is markup:
        text = _strip_html(text)
    return " ".join(text.split())[:PREVIEW_LENGTH]


def _strip_html(text: str) -> str:
    text = _HTML_COMMENT.sub(" ", text)
    text = _INVISIBLE_HTML.sub(" ", text)
    return html.unescape(_HTML_TAG.sub(" ", text))


def _header(raw: bytes, part: Part, name: bytes) -> bytes | None:
    return find_value(parse_fields(raw, part.header_start, part.body_start), name)


def _subtype(raw: bytes, part: Part) -> bytes:
    value = _header(raw, part, b"content-type")
    return b"plain" if value is None else parse_content_type(value).subtype.lower()


def _is_attachment(raw: bytes, part: Part) -> bool:
    value = _header(raw, part, b"content-disposition")
    return value is not None and parse_disposition(value)[0].lower() == b"attachment"


def part_charset(raw: bytes, part: Part) -> str:
    """The charset parameter of *part*'s Content-Type (RFC 2045 section 5.2 default)."""
    value = _header(raw, part, b"content-type")
    if value is not None:
        for name, param in parse_content_type(value).params:
            if name.lower() == b"charset":
                return param.decode("latin-1")
    return "us-ascii"
