"""The text index built after the acknowledgement, in batches: a deferred FTS5 index.

A delivery commits its message with the decoded, casefolded text in ``contents``
(``body_text``, ``header_text``) durably, as before, but no longer inserts that text
into ``contents_fts`` in the same transaction: the trigram insert was about 0.5 ms of
the writer's CPU and 10 of 36 WAL pages of every delivery, all before ``250``/``OK``.
The writer indexes the contents not yet indexed later, many per transaction (FTS5
writes one segment per transaction, so a batch shares its pages), when the store is
idle (with the idle merge steps of :mod:`mailhaven.storage.fts_merge`) or at once when
the backlog reaches BACKLOG_BOUND.

**The watermark.** ``meta.fts_indexed_through`` is the highest content id the index
covers: every stored content with an id at or below it is in the index, none above it
is.  Content ids come from a counter (``meta.last_content_id``) inside the write
transaction that stores the content, so they are committed in increasing order and a
new content is always above the watermark; a batch indexes the lowest ids above it and
moves it up in the same transaction.  A crash or a restart leaves the watermark as the
last committed batch left it, and the next idle writer resumes from there.

**Deletes.**  ``contents_fts`` is an external-content table: removing a row from the
index needs its text, given by the delete trigger from the row being deleted.  The
trigger fires only for contents at or below the watermark; a content deleted before it
was indexed was never in the index, and deleting it there would corrupt the index.

**SEARCH** (:mod:`mailhaven.storage.text_hits`) reads the watermark in its own read
transaction, asks the index for the contents up to it and scans the text of those
above it with ``instr`` (the substring definition the short-needle path already uses),
so a message is found from the moment it is acknowledged, indexed or not.  The tail
is bounded by BACKLOG_BOUND plus the deliveries of one batch's duration.

**Durability.**  A batch commits with ``synchronous = NORMAL`` like a merge step: in
WAL mode its frames are made durable by the next ``FULL`` commit's fsync of the same WAL
file (or by the sync before a checkpoint copies them); a crash before that loses at
most the batch, WAL recovery keeping every transaction up to the last intact commit
frame, so an acknowledged message is never lost with it, and a lost batch leaves the
watermark where it was: those contents are indexed again.
"""

from __future__ import annotations

import sqlite3

from mailhaven.storage.unsynced_writes import run_unsynced

WATERMARK = "fts_indexed_through"

# Unindexed contents past which the writer indexes at once instead of waiting for an
# idle moment: a SEARCH scans at most about this many texts besides the index, and the
# delivery queued behind the batch waits for it (about 10 ms of CPU for 64 corpus
# messages, 0.15-0.2 ms a content at any batch size from 32 to 512; WAL pages per
# message 19.3 at 64, 18.9 at 256, 21.8 at 32, against 36.9 indexing each delivery).
BACKLOG_BOUND = 64

# Contents per indexing transaction when catching up (an import, a restart after a
# crash): a bigger batch shares more pages but holds the write lock longer.
BATCH_LIMIT = 1024

# The index's delete trigger: only contents the index holds are removed from it.
DELETE_TRIGGER = f"""
CREATE TRIGGER contents_fts_delete AFTER DELETE ON contents
WHEN old.id <= (SELECT value FROM meta WHERE key = '{WATERMARK}') BEGIN
    INSERT INTO contents_fts (contents_fts, rowid, body_text, header_text)
    VALUES ('delete', old.id, old.body_text, old.header_text);
END;
"""

# After the index is (re)built from every content: it covers every id handed out.
ALL_INDEXED = (
    "UPDATE meta SET value = (SELECT value FROM meta WHERE key = 'last_content_id')"
    f" WHERE key = '{WATERMARK}';"
)

# Migration step: an existing database is fully indexed (its insert trigger indexed
# every content), so the watermark starts at the last content id; the backfill swaps
# the triggers when the database has the index.
MIGRATION = f"""-- deferred text index: the watermark, and no insert trigger (text_backlog)
INSERT OR IGNORE INTO meta (key, value)
SELECT '{WATERMARK}', value FROM meta WHERE key = 'last_content_id';
"""

_BACKLOG = (
    "SELECT (SELECT value FROM meta WHERE key = 'last_content_id')"
    f" - (SELECT value FROM meta WHERE key = '{WATERMARK}')"
)
_BATCH = "SELECT max(id), count(*) FROM (SELECT id FROM contents WHERE id > ? ORDER BY id LIMIT ?)"
_LAST_CONTENT_ID = "SELECT value FROM meta WHERE key = 'last_content_id'"
_INDEX_RANGE = (
    "INSERT INTO contents_fts (rowid, body_text, header_text)"
    " SELECT id, body_text, header_text FROM contents WHERE id > ? AND id <= ?"
)


def backfill(conn: sqlite3.Connection) -> None:
    """The migration's work: without the index there is nothing to swap (a database
    made by a SQLite without trigram support gets the new trigger with its index)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'contents_fts'"
    ).fetchone()
    if exists:
        conn.execute("DROP TRIGGER IF EXISTS contents_fts_insert")
        conn.execute("DROP TRIGGER IF EXISTS contents_fts_delete")
        conn.execute(DELETE_TRIGGER)


def watermark(conn: sqlite3.Connection) -> int:
    """The highest content id the index covers, as *conn*'s transaction sees it."""
    (value,) = conn.execute("SELECT value FROM meta WHERE key = ?", (WATERMARK,)).fetchone()
    return int(value)


def backlog(conn: sqlite3.Connection) -> int:
    """How many content ids were handed out above the watermark: the unindexed contents,
    plus those deleted before they were indexed (an upper bound, read in two lookups)."""
    (count,) = conn.execute(_BACKLOG).fetchone()
    return int(count)


def index_next(conn: sqlite3.Connection, limit: int = BATCH_LIMIT) -> int:
    """Index the (up to *limit*) lowest contents above the watermark and move it past
    them, inside *conn*'s open write transaction; how many were indexed.  A batch that
    reaches the last content moves the watermark to the last id handed out, past the
    ids of contents deleted before they were indexed, so they count as no backlog."""
    start = watermark(conn)
    end, count = conn.execute(_BATCH, (start, limit)).fetchone()
    if count < limit:
        (last,) = conn.execute(_LAST_CONTENT_ID).fetchone()
        end = max(end or start, last)
    if end <= start:
        return 0
    if count:
        conn.execute(_INDEX_RANGE, (start, end))
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (end, WATERMARK))
    return int(count)


def index_batch(conn: sqlite3.Connection, limit: int = BATCH_LIMIT) -> int:
    """One batch (see index_next) in a transaction of its own on the writer's
    connection, outside any transaction, committed without an fsync of its own (see
    the module's docstring); how many contents it indexed.  When another process
    holds the write lock the batch is skipped at once (0): a later write or idle
    moment comes back to it."""
    return run_unsynced(conn, lambda conn: index_next(conn, limit)) or 0
