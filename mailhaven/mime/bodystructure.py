"""BODY and BODYSTRUCTURE (RFC 9051 section 7.5.2, RFC 3501 section 7.4.2).

Written from the part tree and each part's header:

* type and subtype as written; no Content-Type means ``"text" "plain"``
  (RFC 2045 section 5.2), or ``message/rfc822`` inside multipart/digest;
* text parts always carry a charset, ``us-ascii`` by default (RFC 2045 section 5.2);
* encoding defaults to ``7bit`` (RFC 2045 section 6.1);
* size in octets of the body, and the line count for text/* and message/rfc822;
* for message/rfc822 also the encapsulated ENVELOPE and BODY[STRUCTURE];
* the extension data (MD5, disposition, language, location) only in BODYSTRUCTURE.

A multipart whose boundary never occurs has no parts, which the grammar does not
allow; it is shown with one empty text/plain part.
"""

from __future__ import annotations

from mailhaven.codec import wire
from mailhaven.mime.envelope import envelope, nstring_nolf
from mailhaven.mime.headers import HeaderField, find_value, parse_fields
from mailhaven.mime.rfc822 import (
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_single_token,
)
from mailhaven.mime.structure import MESSAGE, MULTIPART, Part

_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'


def _params(params: tuple[tuple[bytes, bytes], ...], default_charset: bool) -> bytes:
    items = [wire.string(item) for pair in params for item in pair]
    if default_charset and not any(name.lower() == b"charset" for name, _ in params):
        items += [b'"charset"', b'"us-ascii"']
    return wire.paren(items) if items else wire.NIL


def _extension(fields: list[HeaderField]) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc (RFC 9051 section 9)."""
    disposition_value = find_value(fields, b"content-disposition")
    if disposition_value is None:
        disposition_item = wire.NIL
    else:
        kind, params = parse_disposition(disposition_value)
        disposition_item = wire.paren([wire.string(kind), _params(params, False)])
    language_value = find_value(fields, b"content-language")
    languages = () if language_value is None else parse_language(language_value)
    language_item = wire.paren(wire.string(tag) for tag in languages) if languages else wire.NIL
    location = nstring_nolf(find_value(fields, b"content-location"))
    return [disposition_item, language_item, location]


def _encoding(token: bytes | None) -> bytes:
    """body-fld-enc as written; the default ``7bit`` (RFC 2045 section 6.1) when
    absent or malformed."""
    return b'"7bit"' if token is None else wire.string(token)


class _Writer:
    def __init__(self, raw: bytes, extended: bool) -> None:
        self.raw = raw
        self.extended = extended

    def fields(self, part: Part) -> list[HeaderField]:
        return parse_fields(self.raw, part.header_start, part.body_start)

    def write(self, part: Part) -> bytes:
        if part.kind == MULTIPART:
            return self._multipart(part)
        return self._single(part)

    def _multipart(self, part: Part) -> bytes:
        fields = self.fields(part)
        content_type = parse_content_type(find_value(fields, b"content-type") or b"")
        if part.children:
            children = b"".join(self.write(child) for child in part.children)
        else:
            children = _EMPTY_BODY + (b" NIL NIL NIL NIL)" if self.extended else b")")
        items = [children + b" " + wire.string(content_type.subtype)]
        if self.extended:
            items.append(_params(content_type.params, False))
            items += _extension(fields)
        return b"(" + b" ".join(items) + b")"

    def _single(self, part: Part) -> bytes:
        fields = self.fields(part)
        content_type_value = find_value(fields, b"content-type")
        if part.kind == MESSAGE:
            maintype, subtype = b"message", b"rfc822"
            params = (
                () if content_type_value is None else parse_content_type(content_type_value).params
            )
        elif content_type_value is None:
            maintype, subtype, params = b"text", b"plain", ()
        else:
            content_type = parse_content_type(content_type_value)
            maintype, subtype, params = (
                content_type.maintype,
                content_type.subtype,
                content_type.params,
            )
        encoding_value = find_value(fields, b"content-transfer-encoding")
        encoding = None if encoding_value is None else parse_single_token(encoding_value)
        body_size = part.body_end - part.body_start
        items = [
            wire.string(maintype),
            wire.string(subtype),
            _params(params, part.text),
            nstring_nolf(find_value(fields, b"content-id")),
            nstring_nolf(find_value(fields, b"content-description")),
            _encoding(encoding),
            wire.number(body_size),
        ]
        if part.kind == MESSAGE:
            inner = part.children[0]
            items.append(envelope(self.fields(inner)))
            items.append(self.write(inner))
        if part.text or part.kind == MESSAGE:
            items.append(wire.number(self.raw.count(b"\n", part.body_start, part.body_end)))
        if self.extended:
            items.append(nstring_nolf(find_value(fields, b"content-md5")))
            items += _extension(fields)
        return wire.paren(items)


def body(raw: bytes, root: Part) -> bytes:
    """BODY: the non-extensible form."""
    return _Writer(raw, extended=False).write(root)


def bodystructure(raw: bytes, root: Part) -> bytes:
    """BODYSTRUCTURE: with extension data."""
    return _Writer(raw, extended=True).write(root)
