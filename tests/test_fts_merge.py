"""The text index's segments are merged when the writer is idle (storage.fts_merge), not
inside the deliveries: FTS5 automerge is off in new and migrated databases, and idle
merge steps leave no level with as many segments as automerge would have merged."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from mailhaven.mailflow.messages import prepare
from mailhaven.storage import SqliteStorage, fts_merge, text_backlog
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage.interface import NewMessage
from tests.support import alice_inbox, database_before_step, run_with_storage

USERMERGE = 4  # FTS5's default: a level with this many segments is merged
BURST = 30  # single-message transactions, more than crisismerge (16) merges alone


@pytest.fixture(autouse=True)
def one_segment_per_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each delivery's content indexed in a batch of its own right after it
    (storage.text_backlog), one segment each, as when deliveries come far enough apart
    for the writer to index in between: the segments these tests merge."""
    monkeypatch.setattr(text_backlog, "BACKLOG_BOUND", 1)


def _varint(blob: bytes, at: int) -> tuple[int, int]:
    """An SQLite varint (big-endian, 7 bits per byte, the ninth byte whole)."""
    value = 0
    for index in range(9):
        byte = blob[at + index]
        if index == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at + index + 1
    raise AssertionError("unreachable")


def segments_per_level(path: Path) -> list[int]:
    """How many segments each level of the index holds, from FTS5's structure record
    (rowid 10 of the %_data table: a 4-byte cookie, then varints: levels, segments,
    write counter, and per level merge state, segment count and each segment's id and
    first and last page)."""
    conn = sqlite3.connect(path)
    try:
        (blob,) = conn.execute("SELECT block FROM contents_fts_data WHERE id = 10").fetchone()
    finally:
        conn.close()
    levels, at = _varint(blob, 4)
    _segments, at = _varint(blob, at)
    _writes, at = _varint(blob, at)
    counts = []
    for _ in range(levels):
        _merging, at = _varint(blob, at)
        count, at = _varint(blob, at)
        for _ in range(3 * count):
            _value, at = _varint(blob, at)
        counts.append(count)
    return counts


def automerge_setting(path: Path) -> int | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT v FROM contents_fts_config WHERE k = 'automerge'").fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def message(number: int) -> NewMessage:
    return prepare(
        f"Subject: note {number}\r\n\r\nword{number:03d} common-needle text\r\n".encode()
    )


def test_new_database_has_automerge_off(tmp_path: Path) -> None:
    run_with_storage(tmp_path / "new.db", alice_inbox)
    assert automerge_setting(tmp_path / "new.db") == 0


def test_idle_writer_merges_what_a_burst_left(tmp_path: Path) -> None:
    path = tmp_path / "burst.db"
    steps: list[bool] = []
    original_step = fts_merge.merge_step

    def counted_step(conn: sqlite3.Connection, pages: int = fts_merge.MERGE_STEP_PAGES) -> bool:
        did_work = original_step(conn, pages)
        steps.append(did_work)
        # A step commits without its own fsync and hands the connection back as it was.
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)
        return did_work

    async def body(storage: SqliteStorage) -> list[int]:
        inbox = await alice_inbox(storage)
        for number in range(BURST):
            await storage.append(inbox.id, [message(number)])
        for _ in range(500):  # bounded: at most 10 s
            await asyncio.sleep(0.02)
            if steps and not steps[-1] and not storage._merging:
                break
        uids = await storage.search_text(inbox.id, "common-needle", headers=False)
        one = await storage.search_text(inbox.id, "word017", headers=False)
        return [len(uids), *one]

    fts_merge.merge_step = counted_step
    try:
        found = run_with_storage(path, body)
    finally:
        fts_merge.merge_step = original_step
    assert found == [BURST, 18]
    assert any(steps), "the idle writer merged nothing"
    levels = segments_per_level(path)
    # Without merging, 30 single-message segments leave 14 on level 0 (16 were
    # crisis-merged); merged while idle, no level keeps USERMERGE or more.
    assert max(levels) < USERMERGE, levels
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO contents_fts (contents_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_closing_with_a_merge_pending_is_clean(tmp_path: Path) -> None:
    async def body(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        for number in range(5):
            await storage.append(inbox.id, [message(number)])
        # An index batch queued on the writer, or the merge armed and not yet due.
        assert storage._merging or storage._merge_timer is not None

    run_with_storage(tmp_path / "closing.db", body)
    run_with_storage(tmp_path / "closing.db", alice_inbox_count_is_five)


async def alice_inbox_count_is_five(storage: SqliteStorage) -> None:
    user = await storage.get_user("alice")
    assert user is not None
    inbox = await storage.get_mailbox(user.id, "INBOX")
    assert inbox is not None
    assert (await storage.mailbox_counts(inbox.id)).messages == 5


def test_migration_turns_automerge_off(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    raw = b"Subject: old\r\n\r\nindexed before the step\r\n"
    database_before_step(path, fts_merge.MIGRATION, [(raw, prepare(raw).metadata)])
    conn = sqlite3.connect(path)
    # What the previous schema left: an index with FTS5's default automerge.
    conn.executescript(sqlite_backend._FTS_SCHEMA)
    conn.execute("INSERT INTO contents_fts (contents_fts, rank) VALUES ('automerge', 4)")
    conn.commit()
    conn.close()
    assert automerge_setting(path) == 4
    run_with_storage(path, lambda storage: asyncio.sleep(0))
    assert automerge_setting(path) == 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_backend.SCHEMA_VERSION,)
    finally:
        conn.close()


def test_migration_without_an_index_yet(tmp_path: Path) -> None:
    """A database from a SQLite without trigram support has no index when the step runs;
    the index built afterwards has automerge off too."""
    path = tmp_path / "noindex.db"
    raw = b"Subject: old\r\n\r\nstored before the index\r\n"
    database_before_step(path, fts_merge.MIGRATION, [(raw, prepare(raw).metadata)])
    run_with_storage(path, lambda storage: asyncio.sleep(0))
    assert automerge_setting(path) == 0


def test_an_unmerged_index_is_merged_once_opened_and_idle(tmp_path: Path) -> None:
    """What an import or a burst cut short left is merged by the next server that opens
    the database, with no write needed to start it."""
    path = tmp_path / "left.db"

    async def burst(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        for number in range(BURST):
            await storage.append(inbox.id, [message(number)])

    run_with_storage(path, burst)  # closed before its merge timer fired
    assert max(segments_per_level(path)) >= USERMERGE

    async def idle(storage: SqliteStorage) -> None:
        for _ in range(500):  # bounded: at most 10 s
            await asyncio.sleep(0.02)
            if max(segments_per_level(path)) < USERMERGE and not storage._merging:
                return

    run_with_storage(path, idle)
    assert max(segments_per_level(path)) < USERMERGE


def test_a_step_gives_way_to_another_process_writing(tmp_path: Path) -> None:
    """Another process holding the write lock: the step is skipped at once (no waiting
    out the busy timeout), and the connection keeps its own settings."""
    path = tmp_path / "shared.db"
    run_with_storage(path, alice_inbox)
    mine = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        mine.execute("PRAGMA busy_timeout = 30000")
        other.execute("BEGIN IMMEDIATE")
        assert fts_merge.merge_step(mine) is False
        assert mine.execute("PRAGMA busy_timeout").fetchone() == (30000,)
        assert mine.execute("PRAGMA synchronous").fetchone() == (2,)
        assert not mine.in_transaction
        other.execute("ROLLBACK")
    finally:
        mine.close()
        other.close()


def test_no_merge_step_while_a_read_runs(tmp_path: Path) -> None:
    """Merging waits for the readers too: a SEARCH right after a burst would otherwise
    share the cores with it."""
    steps: list[bool] = []
    original_step = fts_merge.merge_step

    def counted_step(conn: sqlite3.Connection, pages: int = fts_merge.MERGE_STEP_PAGES) -> bool:
        steps.append(original_step(conn, pages))
        return steps[-1]

    async def body(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        for number in range(BURST):
            await storage.append(inbox.id, [message(number)])
        release = threading.Event()
        reading = asyncio.ensure_future(storage._read(lambda conn: release.wait(10)))
        await asyncio.sleep(6 * fts_merge.IDLE_SECONDS)  # long idle for the writer
        assert steps == []
        release.set()
        await reading
        for _ in range(500):  # bounded: at most 10 s
            await asyncio.sleep(0.02)
            if steps and not steps[-1]:
                break
        assert any(steps)

    fts_merge.merge_step = counted_step
    try:
        run_with_storage(tmp_path / "reads.db", body)
    finally:
        fts_merge.merge_step = original_step
