"""Header fetches read the header block stored apart at delivery (schema step 6), and
pick fields with a pattern instead of the field parser.  Both shortcuts must give
exactly the bytes of the general path: RFC 9051 section 6.4.5 (HEADER, HEADER.FIELDS,
HEADER.FIELDS.NOT)."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient

from mailhaven.codec.commands import Section
from mailhaven.mime import analyze
from mailhaven.mime.headers import parse_fields
from mailhaven.mime.sections import extract_section, header_block_section, header_fields
from mailhaven.mime.structure import parse_structure
from mailhaven.storage import SqliteStorage
from mailhaven.storage import sqlite as storage_sqlite
from mailhaven.storage.interface import NewMessage
from tests.support import (
    PASSWORD,
    ServerThread,
    alice_inbox,
    database_before_step,
    run_with_storage,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "messages"
WHEN = datetime.datetime(2024, 5, 17, 9, 30, 15, tzinfo=datetime.UTC)

# Header-like pieces: folding, bare LF, CR alone, blank lines, names in any case,
# white space before the colon, lines without a colon.
PIECES = [
    b"From: a@b\r\n",
    b"from :x\n",
    b"FROM\t: y\r\n",
    b"Subject: hello\r\n",
    b" folded\r\n",
    b"\tfolded\n",
    b"X-Long: one\r\n  two\r\n",
    b"Date: now",
    b"no colon here\r\n",
    b"Subject\r\n :late colon\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"body text\r\n",
    b"Fr\xc3\xb6m: latin\r\n",
    b"Content-Type: text/plain\r\n",
]
NAMES = ["FROM", "SUBJECT", "DATE", "X-LONG", "CONTENT-TYPE", "NO", "FR\u00d6M", "K\u212a", "A B"]


def corpus_messages() -> list[bytes]:
    if not CORPUS.is_dir():
        pytest.fail(f"corpus not found at {CORPUS}")
    return [path.read_bytes() for path in sorted(CORPUS.iterdir())]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=30),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
)
def test_field_pattern_picks_what_the_parser_picks(pieces: list[bytes], names: list[str]) -> None:
    raw = b"".join(pieces)
    root = parse_structure(raw)
    fields = tuple(names)
    for include in (True, False):
        by_parser = _parsed_fields(raw, fields, include)
        assert header_fields(raw, root, fields, include) == by_parser
    header = storage_sqlite._header_block(raw)
    assert header == raw[root.header_start : root.body_start]
    for text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        section = Section(text=text, fields=fields if text != "HEADER" else ())
        assert header_block_section(header, section) == extract_section(raw, root, section)


def _parsed_fields(raw: bytes, names: tuple[str, ...], include: bool) -> bytes:
    """HEADER.FIELDS[.NOT] the long way: the field parser, field by field."""
    root = parse_structure(raw)
    wanted = {name.lower().encode("ascii", "replace") for name in names}
    chosen = []
    for field in parse_fields(raw, root.header_start, root.body_start):
        text = raw[field.start : field.end]
        if (field.name.lower() in wanted) == include and b":" in text:
            chosen.append(text if text.endswith(b"\r\n") else text.rstrip(b"\n") + b"\r\n")
    return b"".join(chosen) + b"\r\n"


def test_stored_header_block_is_the_parsers_header_for_the_corpus() -> None:
    for raw in corpus_messages():
        root = analyze(raw).metadata.root
        assert storage_sqlite._header_block(raw) == raw[root.header_start : root.body_start]


def _new_message(raw: bytes) -> NewMessage:
    analyzed = analyze(raw)
    return NewMessage(raw, frozenset(), WHEN, analyzed.metadata.to_bytes())


def test_migration_stores_the_header_of_existing_messages(tmp_path: Path) -> None:
    """A database from before step 6 gets every content's header block."""
    path = tmp_path / "old.db"
    messages = corpus_messages()
    contents = [(raw, analyze(raw).metadata.to_bytes()) for raw in messages]
    database_before_step(path, storage_sqlite._SCHEMA_HEADERS, contents)

    async def check(storage: SqliteStorage) -> dict[int, bytes]:
        return await storage.fetch_headers(1, list(range(1, len(messages) + 1)))

    headers = run_with_storage(path, check)
    assert headers == {
        uid: storage_sqlite._header_block(raw) for uid, raw in enumerate(messages, start=1)
    }


def test_header_rows_go_with_their_content(tmp_path: Path) -> None:
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        raw = b"Subject: gone\r\nX: y\r\n\r\nbody\r\n"
        await storage.append(inbox.id, [_new_message(raw)])
        assert await storage.fetch_headers(inbox.id, [1, 2]) == {
            1: b"Subject: gone\r\nX: y\r\n\r\n"
        }
        await storage.store_flags(inbox.id, [1], "+", frozenset({"\\Deleted"}))
        assert await storage.expunge(inbox.id) == [1]

    run_with_storage(path, scenario)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM content_headers").fetchone() == (0,)


def test_claim_recent_with_nothing_to_claim_does_not_wait_for_the_writer(
    tmp_path: Path,
) -> None:
    """Every session with the mailbox selected claims \\Recent after each new message;
    those that find nothing must not queue behind a commit in progress."""

    async def scenario() -> None:
        storage = SqliteStorage(tmp_path / "test.db")
        await storage.open()
        release = threading.Event()
        try:
            inbox = await alice_inbox(storage)
            await storage.append(inbox.id, [_new_message(b"Subject: x\r\n\r\nx\r\n")])
            assert await storage.claim_recent(inbox.id) == {1}
            loop = asyncio.get_running_loop()
            writer_busy = loop.run_in_executor(storage._writer, release.wait)
            # Only a guard against hanging: with the writer busy, a claim that queued
            # behind it would never finish.
            assert await asyncio.wait_for(storage.claim_recent(inbox.id), 30) == set()
            assert not writer_busy.done()
            release.set()
            await writer_busy
            await storage.append(inbox.id, [_new_message(b"Subject: y\r\n\r\ny\r\n")])
            assert await storage.claim_recent(inbox.id) == {2}
        finally:
            release.set()
            await storage.close()

    asyncio.run(scenario())


TRICKY = [
    b"Subject: one\r\nX-Long: a\r\n  b\r\nFrom: x@y\r\n\r\nbody\r\n",
    b"from : lower\nSUBJECT:\tbare LF\n folded\n\nbody\n",
    b"Subject: header only, no blank line",
    b"\r\nbody without a header\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\nSubject: multi\r\n\r\n--b\r\n"
    b"Subject: inner\r\n\r\ninner\r\n--b--\r\n",
]
ITEMS = [
    b"BODY.PEEK[HEADER.FIELDS (SUBJECT X-LONG)]",
    b"BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]",
    b"BODY.PEEK[HEADER]",
    b"BODY.PEEK[HEADER]<3.10>",
    b"RFC822.HEADER",
]


def test_header_items_alone_match_header_items_fetched_with_the_message(
    server: ServerThread,
) -> None:
    """Alone, header items are served from the stored header block; with BODY[] they
    are sliced from the whole message.  Both must give the same bytes."""
    storage = server.storage
    user = server.call(storage.get_user("alice"))
    inbox = server.call(storage.get_mailbox(user.id, "INBOX"))
    # Stored directly: IMAP clients turn bare LFs into CRLF when they append.
    server.call(storage.append(inbox.id, [_new_message(raw) for raw in TRICKY]))
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    client.login("alice", PASSWORD)
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    alone = client.fetch(uids, ITEMS)
    with_message = client.fetch(uids, [*ITEMS, b"BODY.PEEK[]"])
    for uid, raw in zip(uids, TRICKY, strict=True):
        assert with_message[uid][b"BODY[]"] == raw
        for key, value in alone[uid].items():
            assert with_message[uid][key] == value, (raw, key)
        header = storage_sqlite._header_block(raw)
        assert alone[uid][b"RFC822.HEADER"] == header
        assert alone[uid][b"BODY[HEADER]<3>"] == header[3:13]
    client.logout()
