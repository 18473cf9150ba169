"""ENVELOPE, BODY and BODYSTRUCTURE stored apart at delivery (storage/sqlite_wire.py)
and the FETCH that serves them without decoding the metadata (imap/commands/fetch.py)."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhaven.codec import responses, wire
from mailhaven.codec.commands import Section
from mailhaven.mime import MessageMetadata, analyze, section_bytes
from mailhaven.storage import DATABASE_FILE, SqliteStorage, sqlite_wire
from mailhaven.storage import sqlite as storage_sqlite
from mailhaven.storage.fsck import check_database
from mailhaven.storage.interface import NewMessage, StoredWire
from tests.support import ServerThread, alice_inbox, database_before_step, run_with_storage

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "messages"
WHEN = datetime.datetime(2024, 5, 17, 9, 30, 15, tzinfo=datetime.UTC)
TAG = b"W7Q"


@pytest.fixture(scope="module")
def corpus() -> list[tuple[bytes, MessageMetadata]]:
    if not CORPUS.is_dir():
        pytest.fail(f"corpus not found at {CORPUS}")
    raws = [path.read_bytes() for path in sorted(CORPUS.iterdir())]
    return [(raw, analyze(raw).metadata) for raw in raws]


def _expected_wire(metadata: MessageMetadata) -> StoredWire:
    return StoredWire(metadata.envelope, metadata.body, metadata.bodystructure)


def _new_message(raw: bytes, metadata: MessageMetadata) -> NewMessage:
    return NewMessage(raw, frozenset(), WHEN, metadata.to_bytes())


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[bytes, MessageMetadata]]
) -> Iterator[ServerThread]:
    """A server whose INBOX holds the whole corpus, UID i + 1 being message i."""
    thread = ServerThread(tmp_path_factory.mktemp("wire")).start()
    user = thread.add_user("alice")
    inbox = thread.call(thread.storage.get_mailbox(user.id, "INBOX"))
    messages = [_new_message(raw, metadata) for raw, metadata in corpus]
    thread.call(thread.storage.append(inbox.id, messages))
    yield thread
    thread.stop()


def _fetch_stream(server: ServerThread, items: bytes) -> bytes:
    """The untagged bytes of ``UID FETCH 1:* items`` in EXAMINE'd INBOX."""
    client = server.raw()
    try:
        client.login("alice")
        assert client.command(b"E", b"EXAMINE INBOX")[-1].startswith(b"E OK")
        lines = client.command(TAG, b"UID FETCH 1:* " + items)
    finally:
        client.close()
    assert lines[-1].startswith(TAG + b" OK"), lines[-1]
    return b"\r\n".join(lines[:-1]) + b"\r\n"


def _drop_wire_rows(server: ServerThread, where: str) -> None:
    with sqlite3.connect(server.config.data_dir / DATABASE_FILE) as conn:
        conn.execute(f"DELETE FROM content_wire WHERE {where}")


def test_stored_wire_bytes_are_the_metadata_bytes_for_the_corpus(
    server: ServerThread, corpus: list[tuple[bytes, MessageMetadata]]
) -> None:
    inbox = server.call(server.storage.get_mailbox(1, "INBOX"))
    uids = list(range(1, len(corpus) + 1))
    stored = server.call(server.storage.fetch_wire(inbox.id, uids))
    assert stored == {
        uid: _expected_wire(metadata) for uid, (_, metadata) in enumerate(corpus, start=1)
    }


def test_first_sync_sends_the_same_bytes_from_stored_wire_and_from_metadata(
    server: ServerThread, corpus: list[tuple[bytes, MessageMetadata]]
) -> None:
    items = b"(UID RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE)"
    expected = responses.encoded_fetches(
        (
            uid,
            [
                (b"UID", b"%d" % uid),
                (b"RFC822.SIZE", b"%d" % len(raw)),
                (b"ENVELOPE", metadata.envelope),
                (b"BODY", metadata.body),
                (b"BODYSTRUCTURE", metadata.bodystructure),
            ],
        )
        for uid, (raw, metadata) in enumerate(corpus, start=1)
    )
    from_stored_wire = _fetch_stream(server, items)
    # Every other message without its row: those are answered from their metadata,
    # in the same batches as the others.
    _drop_wire_rows(server, "content_id % 2 = 0")
    from_both = _fetch_stream(server, items)
    _drop_wire_rows(server, "1")
    from_metadata = _fetch_stream(server, items)
    assert from_stored_wire == expected
    assert from_both == expected
    assert from_metadata == expected
    # Put the rows back for the other tests of this module.
    with sqlite3.connect(server.config.data_dir / DATABASE_FILE) as conn:
        sqlite_wire.backfill(conn)


def test_fetch_mixing_stored_wire_and_section_items(
    server: ServerThread, corpus: list[tuple[bytes, MessageMetadata]]
) -> None:
    """ENVELOPE with a body section takes the metadata path; its bytes are the same."""
    header = Section(text="HEADER")
    expected = responses.encoded_fetches_with_literals(
        (
            uid,
            [
                (b"UID", b"%d" % uid),
                (b"ENVELOPE", metadata.envelope),
                (b"BODY[HEADER]", wire.literal(section_bytes(raw, metadata, header))),
                (b"BODYSTRUCTURE", metadata.bodystructure),
            ],
        )
        for uid, (raw, metadata) in enumerate(corpus, start=1)
    )
    assert _fetch_stream(server, b"(UID ENVELOPE BODY.PEEK[HEADER] BODYSTRUCTURE)") == expected


def test_migration_stores_the_wire_bytes_of_existing_messages(
    tmp_path: Path, corpus: list[tuple[bytes, MessageMetadata]]
) -> None:
    """Every content of a version-7 database gets its row, except one whose metadata
    does not decode: that one keeps being answered from its metadata."""
    path = tmp_path / "old.db"
    contents = [(raw, metadata.to_bytes()) for raw, metadata in corpus]
    contents.append((b"Subject: x\r\n\r\nbody\r\n", b"not json"))
    database_before_step(path, sqlite_wire.MIGRATION, contents)

    async def stored(storage: SqliteStorage) -> dict[int, StoredWire]:
        return await storage.fetch_wire(1, list(range(1, len(contents) + 1)))

    assert run_with_storage(path, stored) == {
        uid: _expected_wire(metadata) for uid, (_, metadata) in enumerate(corpus, start=1)
    }
    with sqlite3.connect(path) as conn:
        version = (storage_sqlite.SCHEMA_VERSION,)  # every later step ran too
        assert conn.execute("PRAGMA user_version").fetchone() == version


def test_wire_rows_go_with_their_content_and_fsck_checks_them(tmp_path: Path) -> None:
    path = tmp_path / "test.db"
    raws = [b"Subject: kept\r\n\r\nbody\r\n", b"Subject: gone\r\n\r\nbody\r\n"]

    async def scenario(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        messages = [_new_message(raw, analyze(raw).metadata) for raw in raws]
        await storage.append(inbox.id, messages)
        await storage.store_flags(inbox.id, [2], "+", frozenset({"\\Deleted"}))
        assert await storage.expunge(inbox.id) == [2]
        assert list(await storage.fetch_wire(inbox.id, [1, 2])) == [1]

    run_with_storage(path, scenario)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM content_wire").fetchone() == (1,)
    assert check_database(path) == []
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM content_wire")
        conn.execute("DELETE FROM content_headers")
    problems = check_database(path)
    assert len(problems) == 2
    assert any("ENVELOPE" in problem for problem in problems)
    assert any("header block" in problem for problem in problems)


def test_a_failed_backfill_leaves_the_database_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    raw = b"Subject: x\r\n\r\nbody\r\n"
    database_before_step(path, sqlite_wire.MIGRATION, [(raw, analyze(raw).metadata.to_bytes())])

    def failing_backfill(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(
        storage_sqlite._MIGRATION_BACKFILLS, sqlite_wire.MIGRATION, failing_backfill
    )
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(SqliteStorage(path).open())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert "content_wire" not in tables
