"""``mailhaven fsck``: check the invariants of an SQLite store.

Every check is a query that lists violations, so a report names exactly what is
wrong.  The checks (see docs/security.md):

* SQLite's own ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``;
* every message UID is below its mailbox's UIDNEXT, and every modseq (of a message
  or an expunge record) is at most the mailbox's HIGHESTMODSEQ (RFC 9051 2.3.1.1,
  RFC 7162 3.1.1); no UID is both present and expunged;
* message contents: every message's content exists and has the message's size; no
  content is left without a message (the shared content is deleted with its last
  message, so there is no separate reference count to drift);
* every content has its top-level header block and its ENVELOPE, BODY and
  BODYSTRUCTURE stored apart (``content_headers``, ``content_wire``), which FETCH
  reads instead of the message;
* every mailbox's superiors exist (RFC 9051 6.3.4) and UIDVALIDITY was handed out
  by the database-wide counter;
* the full-text index matches the contents (FTS5 ``integrity-check``), once the contents
  above its watermark (not yet indexed: ``storage/text_backlog.py``) are indexed inside
  the check's transaction; the watermark is not above the last content id handed out;
* every column snapshot stored for a first SELECT, brought up to date as a SELECT would
  bring it, equals the mailbox's messages (``storage/stored_columns.py``).

The database is opened read-write only so FTS5 can run its check; nothing is
changed (the whole check runs in one transaction that is rolled back).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailhaven.storage import sqlite as backend
from mailhaven.storage import stored_columns, text_backlog
from mailhaven.storage.interface import MessageColumns

# (description, query returning one row per violation)
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "message UID not below the mailbox's UIDNEXT",
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE m.uid >= b.uidnext",
    ),
    (
        "message modseq above the mailbox's HIGHESTMODSEQ",
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE m.modseq > b.highest_modseq",
    ),
    (
        "expunge record modseq above the mailbox's HIGHESTMODSEQ or UID not below UIDNEXT",
        "SELECT e.mailbox_id, e.uid FROM expunged e JOIN mailboxes b ON b.id = e.mailbox_id"
        " WHERE e.modseq > b.highest_modseq OR e.uid >= b.uidnext",
    ),
    (
        "UID both present and expunged",
        "SELECT e.mailbox_id, e.uid FROM expunged e"
        " JOIN messages m ON m.mailbox_id = e.mailbox_id AND m.uid = e.uid",
    ),
    (
        "message without its content",
        "SELECT m.mailbox_id, m.uid FROM messages m"
        " WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = m.content_id)",
    ),
    (
        "message size differs from its content's length",
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN contents c ON c.id = m.content_id"
        " WHERE m.size != length(c.raw)",
    ),
    (
        "content no message refers to",
        "SELECT c.id FROM contents c"
        " WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.content_id = c.id)",
    ),
    (
        "messages in a \\Noselect mailbox",
        "SELECT DISTINCT b.id FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id"
        " WHERE b.selectable = 0",
    ),
    (
        "UIDVALIDITY above the database-wide counter",
        "SELECT b.id FROM mailboxes b WHERE b.uidvalidity >"
        " coalesce((SELECT value FROM meta WHERE key = 'last_uidvalidity'), 0)",
    ),
)


def check_database(path: Path) -> list[str]:
    """Every violated invariant of the store at *path*, as readable lines."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        try:
            return (
                _sqlite_checks(conn)
                + _invariant_checks(conn)
                + _hierarchy_checks(conn)
                + _stored_apart_checks(conn)
                + _fts_checks(conn)
                + _stored_snapshot_checks(conn)
            )
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def _sqlite_checks(conn: sqlite3.Connection) -> list[str]:
    problems = [
        f"integrity_check: {row[0]}"
        for row in conn.execute("PRAGMA integrity_check")
        if row[0] != "ok"
    ]
    problems += [
        f"foreign key: row {rowid} of {table} refers to a missing row of {parent}"
        for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")
    ]
    return problems


def _invariant_checks(conn: sqlite3.Connection) -> list[str]:
    problems = []
    for description, query in _CHECKS:
        for row in conn.execute(query):
            problems.append(f"{description}: {', '.join(map(str, row))}")
    return problems


def _hierarchy_checks(conn: sqlite3.Connection) -> list[str]:
    names = set(conn.execute("SELECT user_id, name FROM mailboxes"))
    problems = []
    for user_id, name in sorted(names):
        superior = name.rpartition("/")[0]
        if superior and (user_id, superior) not in names:
            problems.append(f"mailbox whose superior is missing: user {user_id}, {name!r}")
    return problems


# Tables holding a part of each content apart, and what they hold.  A database that
# predates one (fsck run before the server migrated it) has nothing to check there yet.
_STORED_APART = (
    ("content_headers", "header block"),
    ("content_wire", "ENVELOPE, BODY and BODYSTRUCTURE"),
)


def _stored_apart_checks(conn: sqlite3.Connection) -> list[str]:
    problems = []
    for table, what in _STORED_APART:
        if not _table_exists(conn, table):
            continue
        rows = conn.execute(
            f"SELECT c.id FROM contents c"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.content_id = c.id)"
        )
        problems += [f"content without its stored {what}: {content_id}" for (content_id,) in rows]
    return problems


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(query, (name,)).fetchone() is not None


def _fts_checks(conn: sqlite3.Connection) -> list[str]:
    if not _table_exists(conn, "contents_fts"):
        return []
    watermark = conn.execute(
        "SELECT w.value, c.value FROM meta w, meta c"
        " WHERE w.key = ? AND c.key = 'last_content_id' AND w.value > c.value",
        (text_backlog.WATERMARK,),
    ).fetchone()
    if watermark is not None:
        return [f"text index watermark {watermark[0]} above the last content id {watermark[1]}"]
    try:
        # The contents not yet indexed are indexed first (the transaction is rolled
        # back), so the comparison below covers them too.
        while text_backlog.index_next(conn):
            pass
        # rank = 1: also compare the index with the external content table.
        conn.execute("INSERT INTO contents_fts (contents_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as error:
        return [f"full-text index does not match the contents: {error}"]
    return []


def _stored_snapshot_checks(conn: sqlite3.Connection) -> list[str]:
    if not _table_exists(conn, "column_snapshots"):
        return []
    problems = []
    for (mailbox_id,) in conn.execute("SELECT mailbox_id FROM column_snapshots").fetchall():
        mailbox = backend._mailbox_by_id(conn, mailbox_id)
        modseq = mailbox.highest_modseq
        stored = stored_columns.load(conn, mailbox_id, mailbox.uidvalidity, modseq)
        if stored is None:
            problems.append(
                f"stored column snapshot unreadable, of another UIDVALIDITY or from after"
                f" HIGHESTMODSEQ: mailbox {mailbox_id}"
            )
            continue
        caught_up = backend._caught_up(conn, mailbox_id, stored, modseq)
        if caught_up is None:
            continue  # too far behind to be used: the next SELECT reads the mailbox in full
        if column_lists(caught_up[0].columns) != column_lists(
            backend._all_columns(conn, mailbox_id)
        ):
            problems.append(
                f"stored column snapshot differs from its messages: mailbox {mailbox_id}"
            )
    return problems


def column_lists(columns: MessageColumns) -> tuple[list[object], ...]:
    return tuple(
        list(column)
        for column in (
            columns.uids,
            columns.flags,
            columns.modseqs,
            columns.internal_dates,
            columns.tz_offsets,
            columns.sizes,
        )
    )
