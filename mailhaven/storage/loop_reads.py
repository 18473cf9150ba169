"""One tiny read on the event loop's own thread: "has mailbox N moved past modseq M?"

Every session with a mailbox selected asks the store what changed after each command
(RFC 9051 section 7: untagged updates), and almost always nothing has.  Asked through
the reader threads, the answer costs a thread hand-off both ways and two wake-ups of
the event loop; under load, and while another thread holds the GIL (APPEND's MIME
analysis), each hand-off can wait milliseconds.  Reading one row of ``mailboxes`` by
its primary key in WAL mode takes a few microseconds and never waits for a writer, so
it is done here directly, on a connection that belongs to the loop's thread.  SELECT's
lookups are reads of that size too (the mailbox by its name, whether the process's
snapshot of its messages is current, whether a message still holds ``\\Recent``), so a
SELECT of a mailbox that has not changed needs no reader thread at all.  Each is one
statement, run to its end: its own read transaction, with no BEGIN and ROLLBACK around
it (with them, a SELECT's three lookups took 30-33 µs of CPU; without, 19 µs).

It reads the database, not this process's notifications, so changes committed by other
processes (other workers, ``mailhaven import``) are seen exactly as before.  Anything
unusual (another thread, a busy or locked database, a missing mailbox) answers "don't
know", and the caller takes the reader threads as before.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any


class LoopThreadReads:
    """Reads small enough to run on the thread that calls them (the event loop's)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._owner: int | None = None  # the thread the connection belongs to

    def mailbox_position(self, mailbox_id: int) -> tuple[int, int] | None:
        """The mailbox's (highest modseq, uidnext) as last committed, or None when this
        cannot be answered here without waiting."""
        rows = self.rows(
            "SELECT highest_modseq, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
        )
        if not rows:
            return None
        highest_modseq, uidnext = rows[0]
        return highest_modseq, uidnext

    def rows(self, sql: str, parameters: tuple[Any, ...]) -> list[Any] | None:
        """Every row of *sql*, a query by a unique index (a primary-key read's cost),
        or None when this cannot be answered here without waiting."""
        conn = self._connection()
        if conn is None:
            return None
        try:
            # fetchall runs the statement to its end, so its read transaction ends too
            # (a statement left open would pin an old snapshot of the database).
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.Error:
            return None

    def _connection(self) -> sqlite3.Connection | None:
        thread = threading.get_ident()
        if self._owner is None:
            self._owner = thread
            # busy_timeout 0: a read that would wait fails at once and goes to the
            # reader threads instead of blocking the event loop.
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA query_only = ON")
            self._conn = conn
        return self._conn if self._owner == thread else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
