"""The text index built after the acknowledgement (mailhaven/storage/text_backlog.py):
SEARCH BODY/TEXT gives the substring definition's answer whatever part of the store the
index has reached, the watermark only moves up and survives a crash and a restart, the
backlog is indexed once the writer is idle or past its bound, and a content deleted
before it was indexed leaves the index consistent."""

from __future__ import annotations

import asyncio
import datetime
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.storage import fts_merge, text_backlog
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage.fsck import check_database
from mailhaven.storage.interface import NewMessage
from mailhaven.storage.sqlite import SqliteStorage
from tests.support import alice_inbox, run_with_storage

pytestmark = pytest.mark.skipif(
    not sqlite_backend.fts5_trigram_available(), reason="no FTS5 trigram"
)

WORDS = ("harbor", "view", "Straße", "ΣΊΣΥΦΟΣ", "hay", "stack", "ärger")
# Needles of three characters or more take the index path (shorter ones scan anyway);
# "ubj" is found in every header only.
NEEDLES = ("harborview", "rbo", "viewhar", "strasse", "σίσυφος", "hay", "ΑΡΓ", "ubj", "zzz")


def _new(text: str) -> NewMessage:
    raw = f"Subject: s\r\n\r\n{text}\r\n".encode()
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return NewMessage(raw, frozenset(), when, b"meta", text, "subject: s")


def _state(path: Path) -> tuple[int, int]:
    """(watermark, last content id) as stored."""
    conn = sqlite3.connect(path)
    try:
        watermark = text_backlog.watermark(conn)
        (last,) = conn.execute("SELECT value FROM meta WHERE key = 'last_content_id'").fetchone()
    finally:
        conn.close()
    return watermark, last


def _index_is_consistent(path: Path) -> None:
    """FTS5's own check of the index against the contents, for what it covers: the
    contents above the watermark are indexed first, in a transaction rolled back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        while text_backlog.index_next(conn):
            pass
        conn.execute("INSERT INTO contents_fts (contents_fts, rank) VALUES ('integrity-check', 1)")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _index_batch(storage: SqliteStorage, limit: int) -> None:
    """One batch of at most *limit* contents on the writer thread, as the writer runs it."""
    conn = storage._writer_conn
    assert conn is not None
    await storage._hand_to_writer(lambda: (text_backlog.index_batch(conn, limit), set()))


@pytest.fixture
def no_indexing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the bound nor an idle moment indexes: only the test's own batches."""
    monkeypatch.setattr(text_backlog, "BACKLOG_BOUND", 10**9)
    monkeypatch.setattr(fts_merge, "IDLE_SECONDS", 3600)


# One step on two mailboxes: append texts, copy (by position) from one to either,
# expunge (by position), index a batch of some size, restart the store, or search.
Operation = tuple[str, int, list[int]]


@st.composite
def operations(draw: st.DrawFn) -> list[Operation]:
    kinds = st.sampled_from(
        ["append", "append", "copy", "expunge", "index", "restart", "search", "search"]
    )
    return [
        (draw(kinds), draw(st.integers(0, 1)), draw(st.lists(st.integers(0, 40), max_size=6)))
        for _ in range(draw(st.integers(1, 14)))
    ]


@settings(max_examples=25, deadline=None)
@given(ops=operations(), rng=st.randoms(use_true_random=False))
def test_search_over_indexed_and_unindexed_contents_is_the_substring_definition(
    ops: list[Operation], rng: random.Random, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Against the definition, message by message: after any mix of appends, copies,
    expunges, index batches of any size (the watermark anywhere in the store) and
    restarts, BODY and TEXT searches find exactly the messages whose text contains the
    needle; at the end the index, caught up, matches the contents."""
    path = tmp_path_factory.mktemp("backlog") / "test.db"
    original = (text_backlog.BACKLOG_BOUND, fts_merge.IDLE_SECONDS)
    text_backlog.BACKLOG_BOUND, fts_merge.IDLE_SECONDS = 10**9, 3600

    async def scenario() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        try:
            inbox = await alice_inbox(storage)
            other = await storage.create_mailbox(inbox.user_id, "Other")
            boxes = [inbox.id, other.id]
            texts: list[dict[int, str]] = [{}, {}]  # the definition: UID -> body text
            for kind, box, picks in ops:
                held = sorted(texts[box])
                if kind == "append":
                    new = [" ".join(rng.choices(WORDS, k=rng.randint(1, 4))) for _ in picks or [0]]
                    result = await storage.append(boxes[box], [_new(text) for text in new])
                    texts[box].update(zip(result.destination_uids, new, strict=True))
                elif kind == "copy" and held:
                    target = rng.randint(0, 1)
                    uids = sorted({held[pick % len(held)] for pick in picks})
                    result = await storage.copy(boxes[box], uids, boxes[target])
                    for source, copied in zip(
                        result.source_uids, result.destination_uids, strict=True
                    ):
                        texts[target][copied] = texts[box][source]
                elif kind == "expunge" and held:
                    uids = sorted({held[pick % len(held)] for pick in picks})
                    await storage.store_flags(boxes[box], uids, "+", frozenset({"\\Deleted"}))
                    for uid in await storage.expunge(boxes[box], uids):
                        del texts[box][uid]
                elif kind == "index":
                    await _index_batch(storage, 1 + sum(picks))
                elif kind == "restart":
                    await storage.close()
                    storage = SqliteStorage(path)
                    await storage.open()
                elif kind == "search":
                    for needle in NEEDLES:
                        folded = needle.casefold()
                        for headers in (False, True):
                            expected = {
                                uid
                                for uid, text in texts[box].items()
                                if folded in text.casefold() or (headers and folded in "subject: s")
                            }
                            found = await storage.search_text(boxes[box], needle, headers=headers)
                            assert found == expected, (needle, headers, texts[box])
        finally:
            await storage.close()

    try:
        asyncio.run(scenario())
    finally:
        text_backlog.BACKLOG_BOUND, fts_merge.IDLE_SECONDS = original
    watermark, last = _state(path)
    assert watermark <= last
    _index_is_consistent(path)


def test_the_watermark_moves_up_with_each_batch_and_past_deleted_contents(
    tmp_path: Path, no_indexing_unless_asked: None
) -> None:
    """Nothing is indexed inside a delivery; a batch indexes the lowest contents above
    the watermark; contents expunged before they were indexed are stepped over (not
    deleted from the index, which never held them) and leave no backlog."""
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> list[tuple[int, int]]:
        inbox = await alice_inbox(storage)
        conn = storage._writer_conn
        assert conn is not None
        start = text_backlog.watermark(conn)
        await storage.append(inbox.id, [_new(f"harbor {i}") for i in range(5)])
        seen = [(text_backlog.watermark(conn) - start, text_backlog.backlog(conn))]
        await _index_batch(storage, 2)
        seen.append((text_backlog.watermark(conn) - start, text_backlog.backlog(conn)))
        await storage.store_flags(inbox.id, [4, 5], "+", frozenset({"\\Deleted"}))
        await storage.expunge(inbox.id, [4, 5])
        await _index_batch(storage, 100)
        seen.append((text_backlog.watermark(conn) - start, text_backlog.backlog(conn)))
        assert await storage.search_text(inbox.id, "harbor", headers=False) == {1, 2, 3}
        return seen

    assert run_with_storage(path, scenario) == [(0, 5), (2, 3), (5, 0)]
    _index_is_consistent(path)


def test_a_backlog_past_its_bound_is_indexed_while_deliveries_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries that never leave the writer idle: the backlog past the bound is indexed
    between them, so SEARCH's unindexed tail stays bounded."""
    monkeypatch.setattr(text_backlog, "BACKLOG_BOUND", 4)
    monkeypatch.setattr(fts_merge, "IDLE_SECONDS", 3600)

    async def scenario(storage: SqliteStorage) -> list[int]:
        inbox = await alice_inbox(storage)
        conn = storage._writer_conn
        assert conn is not None
        backlogs = []
        for number in range(20):
            await storage.append(inbox.id, [_new(f"harbor {number}")])
            await storage._hand_to_writer(lambda: (None, set()))  # behind a queued batch
            backlogs.append(text_backlog.backlog(conn))
        return backlogs

    backlogs = run_with_storage(tmp_path / "test.db", scenario)
    assert max(backlogs) < 4, backlogs
    assert backlogs.count(0) >= 4, backlogs


def test_the_idle_writer_indexes_the_backlog(tmp_path: Path) -> None:
    """Left alone for the idle delay, the writer indexes everything."""
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> int:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_new(f"harbor {i}") for i in range(10)])
        return await _backlog_once_idle(storage)

    assert run_with_storage(path, scenario) == 0
    watermark, last = _state(path)
    assert watermark == last


_DELIVER_AND_DIE = """
import asyncio, os, sys
from mailhaven.mailflow.messages import prepare
from mailhaven.storage import fts_merge, text_backlog
from mailhaven.storage.sqlite import SqliteStorage

text_backlog.BACKLOG_BOUND, fts_merge.IDLE_SECONDS = 10**9, 3600

async def main():
    storage = SqliteStorage(sys.argv[1])
    await storage.open()
    user = await storage.create_user("alice", "x")
    inbox = await storage.get_mailbox(user.id, "INBOX")
    for number in range(12):
        raw = f"Subject: s\\r\\n\\r\\nharbor delivery{number:02d}\\r\\n".encode()
        await storage.append(inbox.id, [prepare(raw)])
    os._exit(0)  # acknowledged, not indexed, never closed: as a crash leaves it

asyncio.run(main())
"""


def test_after_a_crash_the_backlog_is_found_and_indexed(tmp_path: Path) -> None:
    """A process dies with acknowledged deliveries not yet indexed: the store is
    consistent (fsck), a search finds them at once, and the reopened writer indexes
    them when idle."""
    path = tmp_path / "crashed.db"
    subprocess.run([sys.executable, "-c", _DELIVER_AND_DIE, str(path)], check=True, timeout=60)
    watermark, last = _state(path)
    assert last - watermark == 12
    assert check_database(path) == []

    async def scenario(storage: SqliteStorage) -> tuple[set[int], set[int], int]:
        user = await storage.get_user("alice")
        assert user is not None
        inbox = await storage.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        found = await storage.search_text(inbox.id, "delivery07", headers=False)
        backlog = await _backlog_once_idle(storage)
        everything = await storage.search_text(inbox.id, "harbor", headers=False)
        return found, everything, backlog

    assert run_with_storage(path, scenario) == ({8}, set(range(1, 13)), 0)
    _index_is_consistent(path)
    assert check_database(path) == []


def test_fsck_reports_a_watermark_above_the_last_content_id(tmp_path: Path) -> None:
    path = tmp_path / "test.db"
    run_with_storage(path, alice_inbox)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = value + 5 WHERE key = ?", (text_backlog.WATERMARK,))
    conn.commit()
    conn.close()
    assert [problem for problem in check_database(path) if "watermark" in problem]


def test_a_fully_indexed_database_is_migrated_with_its_watermark_at_the_end(
    tmp_path: Path, no_indexing_unless_asked: None
) -> None:
    """What the step before left: an insert trigger that indexed every content in its
    transaction, and no watermark.  The step makes the watermark the last content id and
    replaces the triggers; deliveries after it are not indexed in their transaction,
    and expunging a migrated message deletes it from the index."""
    path = tmp_path / "older.db"

    async def before(storage: SqliteStorage) -> int:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_new(f"harbor {i}") for i in range(3)])
        await _index_batch(storage, 100)
        return inbox.id

    inbox_id = run_with_storage(path, before)
    conn = sqlite3.connect(path)
    conn.executescript(
        f"""
        DROP TRIGGER contents_fts_delete;
        CREATE TRIGGER contents_fts_insert AFTER INSERT ON contents BEGIN
            INSERT INTO contents_fts (rowid, body_text, header_text)
            VALUES (new.id, new.body_text, new.header_text);
        END;
        CREATE TRIGGER contents_fts_delete AFTER DELETE ON contents BEGIN
            INSERT INTO contents_fts (contents_fts, rowid, body_text, header_text)
            VALUES ('delete', old.id, old.body_text, old.header_text);
        END;
        DELETE FROM meta WHERE key = '{text_backlog.WATERMARK}';
        PRAGMA user_version = {sqlite_backend._MIGRATIONS.index(text_backlog.MIGRATION)};
        """
    )
    conn.close()

    async def after(storage: SqliteStorage) -> tuple[set[int], set[int]]:
        await storage.append(inbox_id, [_new("harbor 3")])
        await storage.store_flags(inbox_id, [1], "+", frozenset({"\\Deleted"}))
        await storage.expunge(inbox_id, [1])
        conn = storage._writer_conn
        assert conn is not None
        assert text_backlog.backlog(conn) == 1  # the new delivery only
        return (
            await storage.search_text(inbox_id, "harbor", headers=False),
            await storage.search_text(inbox_id, "harbor 3", headers=False),
        )

    assert run_with_storage(path, after) == ({2, 3, 4}, {4})
    conn = sqlite3.connect(path)
    triggers = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "contents_fts_insert" not in triggers and "contents_fts_delete" in triggers
    _index_is_consistent(path)


async def _backlog_once_idle(storage: SqliteStorage) -> int:
    """The unindexed contents left once the idle writer had time to index them all
    (polled: at most 10 s)."""
    conn = storage._writer_conn
    assert conn is not None
    for _ in range(500):
        await asyncio.sleep(0.02)
        if text_backlog.backlog(conn) == 0:
            break
    return text_backlog.backlog(conn)
