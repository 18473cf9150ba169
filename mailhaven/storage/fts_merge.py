"""Merging the full-text index's segments when the writer is idle, not inside deliveries.

FTS5 writes each inserted message's index entries as a new segment (b-tree) and keeps
the number of segments down by merging them.  With its default ``automerge`` of 4, that
merging runs inside the inserting transaction: every 64 leaf pages written (every few
messages) the insert also merges 64 pages per level of the index, a few milliseconds
and up to 30 ms at 10,000 messages, all before the delivery can be acknowledged.

Here ``automerge`` is 0 and the writer thread merges in small steps
(``INSERT INTO contents_fts (contents_fts, rank) VALUES ('merge', N)``, N pages of
output; see the FTS5 documentation, "The 'merge' Command") once no read or write has
been running for IDLE_SECONDS, each step its own transaction.  Levels are merged once
they hold ``usermerge`` (4) segments, as automerge did, so queries probe as few segments
as before.  If merging cannot keep up (writes without pause), FTS5's ``crisismerge``
(16 segments on one level) still merges inside the insert, so the segment count stays
bounded.

The text itself is indexed after the message's transaction, in batches, by the same idle
steps (:mod:`mailhaven.storage.text_backlog`, which keeps it searchable meanwhile); the
reorganisation of the index follows once nothing is left to index.

A merge step commits without an fsync of its own and gives way to another process's
writer (:mod:`mailhaven.storage.unsynced_writes` says why that is safe): a lost merge
changes no content, only how the index is laid out.
"""

from __future__ import annotations

import sqlite3

from mailhaven.storage.unsynced_writes import run_unsynced

# Merging starts once no read or write has run for this long, so a stream of deliveries
# (one after another over one LMTP or IMAP connection, a few ms apart) or of searches is
# not slowed by it; a pause of this length is taken as idle.
IDLE_SECONDS = 0.05

# Between two steps the write lock is left free this long, so the writer of another
# worker process sharing the database gets it without waiting out a run of steps.
STEP_PAUSE_SECONDS = 0.005

# Output pages per step: one to a few milliseconds of work (resuming a merge of large
# segments costs more than the pages), so a delivery that arrives meanwhile waits at
# most that long for the writer.
MERGE_STEP_PAGES = 32

# Stored in the FTS table's configuration (contents_fts_config), so it holds for every
# connection and process that opens the database.
DISABLE_AUTOMERGE = "INSERT INTO contents_fts (contents_fts, rank) VALUES ('automerge', 0);"

# Migration step: existing databases stop merging inside inserts as well (see backfill).
MIGRATION = "-- FTS5 automerge off; segments are merged by idle merge steps (fts_merge)\n"


def backfill(conn: sqlite3.Connection) -> None:
    """The migration's work: turn automerge off when the database has the index (a
    database made by a SQLite without trigram support gets it later, already off)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'contents_fts'"
    ).fetchone()
    if exists:
        conn.execute(DISABLE_AUTOMERGE)


def merge_step(conn: sqlite3.Connection, pages: int = MERGE_STEP_PAGES) -> bool:
    """One merge step in a transaction of its own, on the writer's connection (outside
    any transaction).  True when it merged something, so another step may have work.
    When another process holds the write lock this process is not the only writer
    and its step would make that one wait: the step is skipped (False) at once."""
    before = conn.total_changes

    def merge(conn: sqlite3.Connection) -> bool:
        conn.execute("INSERT INTO contents_fts (contents_fts, rank) VALUES ('merge', ?)", (pages,))
        # The FTS5 documentation: a difference of 2 or more means work was done.
        return conn.total_changes - before >= 2

    return run_unsynced(conn, merge) or False
