"""MIME metadata computed once when a message is delivered.

:func:`analyze` parses a raw message a single time and produces everything FETCH
and SEARCH need later: ENVELOPE, BODY and BODYSTRUCTURE as ready wire bytes, the
sent date, the part tree with byte offsets (so BODY[section] and BINARY[part] are
slices of the stored message), and decoded text for SEARCH.  Any byte sequence is
accepted: a message that is not valid MIME still gets a structure.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
from dataclasses import dataclass

from mailhaven.codec.commands import Section
from mailhaven.mime import sections
from mailhaven.mime.bodystructure import body, bodystructure
from mailhaven.mime.envelope import envelope
from mailhaven.mime.headers import (
    decode_text,
    fields_parsed_once,
    find_value,
    parse_fields,
    unfold,
)
from mailhaven.mime.preview import part_charset, preview_text
from mailhaven.mime.sortkeys import SortData, sort_data
from mailhaven.mime.structure import LEAF, Part, parse_structure

# Version 2 added ``sort`` and ``preview``; version 1 records still load, with both
# None, and users of those fields compute them from the raw message instead.
_FORMAT_VERSION = 2


@dataclass(frozen=True)
class MessageMetadata:
    """What FETCH needs without re-parsing: ``envelope``, ``body`` and
    ``bodystructure`` are the values exactly as sent on the wire (RFC 9051
    section 7.5.2); ``sent_date`` is the Date: header (RFC 9051 section 6.4.4
    SENTBEFORE/SENTON/SENTSINCE), None when absent or unparseable; ``root`` is
    the part tree with byte offsets; ``sort`` the SORT/THREAD values (RFC 5256)
    and ``preview`` the PREVIEW text (RFC 8970)."""

    envelope: bytes
    body: bytes
    bodystructure: bytes
    sent_date: datetime.datetime | None
    root: Part
    sort: SortData | None = None
    preview: str | None = None

    def to_bytes(self) -> bytes:
        """Compact JSON (no code execution on load, unlike pickle).  Wire bytes are
        stored as Latin-1 text, which maps every byte to one code point."""
        sent = None if self.sent_date is None else self.sent_date.isoformat()
        record = [
            _FORMAT_VERSION,
            self.envelope.decode("latin-1"),
            self.body.decode("latin-1"),
            self.bodystructure.decode("latin-1"),
            sent,
            self.root.to_tuple(),
            None if self.sort is None else self.sort.to_list(),
            self.preview,
        ]
        return json.dumps(record, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageMetadata:
        version, envelope_text, body_text, structure_text, sent, root, *added = json.loads(data)
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(f"unsupported metadata format {version}")
        sort, preview = added if version == _FORMAT_VERSION else (None, None)
        return cls(
            envelope=envelope_text.encode("latin-1"),
            body=body_text.encode("latin-1"),
            bodystructure=structure_text.encode("latin-1"),
            sent_date=None if sent is None else datetime.datetime.fromisoformat(sent),
            root=Part.from_tuple(root),
            sort=None if sort is None else SortData.from_list(sort),
            preview=preview,
        )


@dataclass(frozen=True)
class AnalyzedMessage:
    """The metadata plus decoded text for SEARCH BODY (``body_text``: all text/*
    parts, transfer- and charset-decoded) and SEARCH TEXT (``header_text``: the
    header fields with RFC 2047 encoded words decoded)."""

    metadata: MessageMetadata
    body_text: str
    header_text: str


def analyze(raw: bytes) -> AnalyzedMessage:
    """Compute the metadata of a raw message; never raises."""
    with fields_parsed_once(raw):
        return _analyze(raw)


def _analyze(raw: bytes) -> AnalyzedMessage:
    root = parse_structure(raw)
    top_fields = parse_fields(raw, root.header_start, root.body_start)
    metadata = MessageMetadata(
        envelope=envelope(top_fields),
        body=body(raw, root),
        bodystructure=bodystructure(raw, root),
        sent_date=_sent_date(find_value(top_fields, b"date")),
        root=root,
        sort=sort_data(top_fields),
        preview=preview_text(raw, root, _decode_charset),
    )
    header_text = "\n".join(
        f"{decode_text(field.name)}: {decode_text(field.value)}" for field in top_fields
    )
    return AnalyzedMessage(metadata, _body_text(raw, root), header_text)


def _sent_date(value: bytes | None) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(unfold(value).decode("latin-1"))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _body_text(raw: bytes, root: Part) -> str:
    texts = []
    for part in root.walk():
        if part.kind != LEAF or not part.text:
            continue
        content = raw[part.body_start : part.body_end]
        # An undecodable part is searched as it is rather than not at all.
        with contextlib.suppress(sections.UnknownCTE):
            content = sections.decode_body(part, content)
        texts.append(_decode_charset(content, part_charset(raw, part)))
    return "\n".join(texts)


def _decode_charset(content: bytes, charset: str) -> str:
    try:
        return content.decode(charset)
    except (LookupError, UnicodeDecodeError):
        pass
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def sort_values(raw: bytes, metadata: MessageMetadata) -> SortData:
    """The stored sort values, computed from *raw* for messages stored before they
    were part of the metadata."""
    if metadata.sort is not None:
        return metadata.sort
    return sort_data(parse_fields(raw, metadata.root.header_start, metadata.root.body_start))


def preview(raw: bytes, metadata: MessageMetadata) -> str:
    """The stored PREVIEW text, computed from *raw* for older messages."""
    if metadata.preview is not None:
        return metadata.preview
    return preview_text(raw, metadata.root, _decode_charset)


def section_bytes(raw: bytes, metadata: MessageMetadata, section: Section) -> bytes:
    """BODY[section] (RFC 9051 section 6.4.5): ``Section()`` is the whole message.
    A part that does not exist gives b"" (as the reference server does)."""
    return sections.extract_section(raw, metadata.root, section)


def binary_bytes(raw: bytes, metadata: MessageMetadata, part: tuple[int, ...]) -> bytes:
    """BINARY[part] (RFC 3516 section 4.2): the content with its transfer encoding
    removed.  Raises :class:`UnknownCTE` for an unknown or undecodable encoding."""
    return sections.extract_binary(raw, metadata.root, part)


def binary_size(raw: bytes, metadata: MessageMetadata, part: tuple[int, ...]) -> int:
    """BINARY.SIZE[part] (RFC 3516 section 4.3).  Raises :class:`UnknownCTE`."""
    return len(binary_bytes(raw, metadata, part))


def header_value(raw: bytes, metadata: MessageMetadata, name: str) -> list[str]:
    """The RFC 2047 decoded, unfolded values of the top-level header fields called
    *name*, in message order (for SEARCH HEADER, FROM, SUBJECT...)."""
    return sections.top_header_values(raw, metadata.root, name)
