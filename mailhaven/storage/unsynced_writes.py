"""Transactions of derived data that commit without an fsync of their own.

Some writes only index, lay out or cache what the store already holds durably: indexing
the text of new contents (:mod:`mailhaven.storage.text_backlog`), merging the text
index's segments (:mod:`mailhaven.storage.fts_merge`), a mailbox's columns kept for the
next process's first SELECT (:mod:`mailhaven.storage.stored_columns`).  Losing one
in a crash loses no mail, so they commit with ``synchronous = NORMAL``.  In WAL mode the
frames of a later ``FULL`` commit follow them in the same WAL file, and that commit's
fsync makes the earlier frames durable too; a crash before then loses only the unsynced
transactions (WAL recovery keeps the transactions up to the last intact commit frame).
Checkpoints still sync the WAL before copying it (SQLite's ``synchronous``
documentation), so no such frame reaches the database file unsynced.

They are also the least urgent writes: when another process holds the write lock (a
worker process sharing the database), this one gives way at once instead of waiting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_unsynced(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T | None:
    """*work(conn)* in a transaction of its own on the writer's connection (outside any
    transaction), committed without fsync; None, with nothing done, when another
    process holds the write lock."""
    (busy_timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return None
            raise
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
    return result
