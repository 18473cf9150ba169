"""The fast header field lookup of SEARCH (mailhaven/imap/search_fields.py) gives
exactly what the full header split (mailhaven.mime.header_value) gives, and the
store cuts the same header block out of a stored message."""

from __future__ import annotations

import datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.imap.search_fields import top_field_values
from mailhaven.mailflow.messages import prepare
from mailhaven.mime import analyze, header_value
from mailhaven.storage import SqliteStorage
from tests.support import alice_inbox, run_with_storage

NAMES = ["Subject", "subject", "SUBJECT ", " Subject", "From", "X-Tag", "", "a:b", "Ünï"]

# Header lines built from pieces that stress the boundaries: folding, blank and
# whitespace-only lines, bare LF and CR, colons in odd places, encoded words.
_PIECES = st.sampled_from(
    [
        b"Subject",
        b"subject",
        b"SUBJECT ",
        b"From",
        b"X-Tag",
        b"\xc3\x9cn\xc3\xaf",
        b":",
        b" ",
        b"\t",
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\n ",
        b"\r\n\r\n",
        b"hello",
        b"=?UTF-8?B?UXVhcnRlcmx5?=",
        b"=?ISO-8859-1?Q?M=FCller?=",
        b"=?UTF-8?Q?a=0Ab?=",
        b"<a@b.example>",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=30), st.sampled_from(NAMES))
def test_same_values_as_the_full_header_split(pieces: list[bytes], name: str) -> None:
    raw = b"".join(pieces) + b"\r\n\r\nbody\r\nSubject: not a header\r\n"
    metadata = analyze(raw).metadata
    assert top_field_values(_header_block(raw), name) == header_value(raw, metadata, name)


def test_folded_repeated_and_encoded_fields() -> None:
    raw = (
        b"Subject: first\r\n  folded part\r\nX-Other: y\r\nsubject :second\r\n"
        b"SUBJECT:\t=?UTF-8?B?UXVhcnRlcmx5IEZvcmVjYXN0?=\r\n\r\nSubject: body line\r\n"
    )
    metadata = analyze(raw).metadata
    expected = ["first  folded part", "second", "Quarterly Forecast"]
    assert top_field_values(_header_block(raw), "Subject") == expected
    assert header_value(raw, metadata, "Subject") == expected
    assert top_field_values(_header_block(raw), "X-Missing") == []


def _header_block(raw: bytes) -> bytes:
    root = analyze(raw).metadata.root
    return raw[root.header_start : root.body_start]


def test_store_cuts_the_top_level_header_block(tmp_path: Path) -> None:
    raw = (
        b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nSubject: inner\r\n\r\nhello\r\n--b--\r\n"
    )
    new = prepare(raw, internal_date=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC))

    async def check(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [new])
        blocks = await storage.fetch_headers(inbox.id, [1, 2])
        assert blocks == {1: _header_block(raw)}
        assert top_field_values(blocks[1], "subject") == ["parts"]

    run_with_storage(tmp_path / "test.db", check)
