"""BODY[section], BINARY[part] and header values on small hand-written messages."""

from __future__ import annotations

import datetime

import pytest

from mailhaven.codec.commands import Section
from mailhaven.mime import (
    MessageMetadata,
    UnknownCTE,
    analyze,
    binary_bytes,
    binary_size,
    header_value,
    section_bytes,
)

NESTED = (
    b"From: Alice <alice@example.com>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= menu\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
    b"X-Long: first\r\n"
    b"  second\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hello\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n"
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9 soft=\r\n"
    b"break\r\n"
    b"--inner\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAEC\r\n"
    b"/w==\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


@pytest.fixture(scope="module")
def nested() -> MessageMetadata:
    return analyze(NESTED).metadata


def test_whole_message_header_and_text(nested: MessageMetadata) -> None:
    header_end = NESTED.index(b"\r\n\r\n") + 4
    assert section_bytes(NESTED, nested, Section()) == NESTED
    assert section_bytes(NESTED, nested, Section(text="HEADER")) == NESTED[:header_end]
    assert section_bytes(NESTED, nested, Section(text="TEXT")) == NESTED[header_end:]


def test_leaf_part_and_its_mime_header(nested: MessageMetadata) -> None:
    assert section_bytes(NESTED, nested, Section((1,))) == b"hello"
    mime = section_bytes(NESTED, nested, Section((1,), "MIME"))
    assert mime == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"


def test_nested_multipart_parts(nested: MessageMetadata) -> None:
    assert section_bytes(NESTED, nested, Section((2, 1))) == b"caf=C3=A9 soft=\r\nbreak"
    assert section_bytes(NESTED, nested, Section((2, 2))) == b"AAEC\r\n/w=="
    whole = section_bytes(NESTED, nested, Section((2,)))
    # The close delimiter line is part of the multipart, its line end included:
    # the next boundary line follows it directly.
    assert whole.startswith(b"--inner\r\n") and whole.endswith(b"--inner--\r\n")


def test_message_rfc822_sections(nested: MessageMetadata) -> None:
    encapsulated = b"Subject: inner\r\n\r\ninner body"
    assert section_bytes(NESTED, nested, Section((3,))) == encapsulated
    assert section_bytes(NESTED, nested, Section((3,), "HEADER")) == b"Subject: inner\r\n\r\n"
    assert section_bytes(NESTED, nested, Section((3,), "TEXT")) == b"inner body"
    assert section_bytes(NESTED, nested, Section((3, 1))) == b"inner body"


def test_header_and_text_only_exist_for_message_parts(nested: MessageMetadata) -> None:
    assert section_bytes(NESTED, nested, Section((1,), "HEADER")) == b""
    assert section_bytes(NESTED, nested, Section((1,), "TEXT")) == b""


def test_missing_parts_are_empty(nested: MessageMetadata) -> None:
    assert section_bytes(NESTED, nested, Section((4,))) == b""
    assert section_bytes(NESTED, nested, Section((1, 2))) == b""
    assert section_bytes(NESTED, nested, Section((2, 3), "MIME")) == b""
    assert binary_bytes(NESTED, nested, (9,)) == b""


def test_header_fields_keep_folding_and_order(nested: MessageMetadata) -> None:
    fields = Section(text="HEADER.FIELDS", fields=("X-LONG", "FROM"))
    assert section_bytes(NESTED, nested, fields) == (
        b"From: Alice <alice@example.com>\r\nX-Long: first\r\n  second\r\n\r\n"
    )


def test_header_fields_not(nested: MessageMetadata) -> None:
    fields = Section(text="HEADER.FIELDS.NOT", fields=("FROM", "SUBJECT", "DATE", "X-LONG"))
    expected = b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    assert section_bytes(NESTED, nested, fields) == expected


def test_header_fields_of_encapsulated_message(nested: MessageMetadata) -> None:
    fields = Section((3,), "HEADER.FIELDS", ("SUBJECT",))
    assert section_bytes(NESTED, nested, fields) == b"Subject: inner\r\n\r\n"


def test_binary_decodes_transfer_encodings(nested: MessageMetadata) -> None:
    assert binary_bytes(NESTED, nested, (1,)) == b"hello"
    assert binary_bytes(NESTED, nested, (2, 1)) == "café softbreak".encode()
    assert binary_bytes(NESTED, nested, (2, 2)) == b"\x00\x01\x02\xff"
    assert binary_size(NESTED, nested, (2, 2)) == 4


def test_header_value_decodes_encoded_words(nested: MessageMetadata) -> None:
    assert header_value(NESTED, nested, "subject") == ["café menu"]
    assert header_value(NESTED, nested, "X-LONG") == ["first  second"]
    assert header_value(NESTED, nested, "cc") == []


def test_metadata_fields(nested: MessageMetadata) -> None:
    assert nested.sent_date == datetime.datetime(
        2024, 1, 1, 10, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert nested.envelope.startswith(b'("Mon, 1 Jan 2024 10:00:00 +0100" ')
    assert b'(("Alice" NIL "alice" "example.com"))' in nested.envelope
    assert nested.body.endswith(b' "mixed")')
    assert b'("boundary" "outer")' in nested.bodystructure


def test_metadata_round_trips(nested: MessageMetadata) -> None:
    assert MessageMetadata.from_bytes(nested.to_bytes()) == nested


def test_analyze_collects_search_text() -> None:
    analyzed = analyze(NESTED)
    assert "hello" in analyzed.body_text
    assert "café softbreak" in analyzed.body_text
    assert "inner body" in analyzed.body_text
    assert "Subject: café menu" in analyzed.header_text


def test_bad_base64_raises_unknown_cte() -> None:
    raw = b"Content-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n"
    metadata = analyze(raw).metadata
    with pytest.raises(UnknownCTE):
        binary_bytes(raw, metadata, (1,))
    assert section_bytes(raw, metadata, Section((1,))) == b"!!not base64!!\r\n"


def test_unknown_encoding_raises_unknown_cte() -> None:
    raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    metadata = analyze(raw).metadata
    with pytest.raises(UnknownCTE):
        binary_size(raw, metadata, (1,))


def test_missing_close_boundary_ends_at_message_end() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\nfirst\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>last</p>\r\n"
    )
    metadata = analyze(raw).metadata
    assert section_bytes(raw, metadata, Section((1,))) == b"first"
    assert section_bytes(raw, metadata, Section((2,))) == b"<p>last</p>\r\n"
    assert b'"html"' in metadata.bodystructure


def test_boundary_never_present_gives_empty_part() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=nope\r\n\r\njust text\r\n"
    metadata = analyze(raw).metadata
    assert metadata.body == b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    assert section_bytes(raw, metadata, Section((1,))) == b""
    assert section_bytes(raw, metadata, Section(text="TEXT")) == b"just text\r\n"


def test_bare_lf_message() -> None:
    raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nbody\n--x--\n"
    metadata = analyze(raw).metadata
    assert section_bytes(raw, metadata, Section((1,))) == b"body"
    assert section_bytes(raw, metadata, Section(text="HEADER.FIELDS", fields=("SUBJECT",))) == (
        b"Subject: lf\r\n\r\n"
    )


def test_single_part_message_part_one_is_its_body() -> None:
    raw = b"Subject: s\r\n\r\nbody text\r\n"
    metadata = analyze(raw).metadata
    assert section_bytes(raw, metadata, Section((1,))) == b"body text\r\n"
    assert metadata.sent_date is None
    assert metadata.body == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 1)'


def test_text_of_message_without_blank_line_is_empty() -> None:
    raw = b"Subject: only a header\r\nX: y\r\n"
    metadata = analyze(raw).metadata
    assert section_bytes(raw, metadata, Section(text="HEADER")) == raw
    assert section_bytes(raw, metadata, Section(text="TEXT")) == b""
