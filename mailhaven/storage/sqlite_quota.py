"""Quota accounting of the SQLite backend (RFC 9208).

Usage is not kept in counters that every mutating path would have to update: it
is summed from the ``messages`` table inside the write transaction that adds
messages.  Writes are serialised on the writer thread, so the check and the insert
are atomic together, and usage is exact after every command by construction.
"""

from __future__ import annotations

import sqlite3

from mailhaven.storage.interface import OverQuota, QuotaLimits, QuotaUsage

MIGRATION = """
CREATE TABLE quotas (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    storage_limit INTEGER,
    message_limit INTEGER
);
"""


def usage(conn: sqlite3.Connection, user_id: int, defaults: QuotaLimits) -> QuotaUsage:
    storage, messages = conn.execute(
        "SELECT coalesce(sum(m.size), 0), count(*) FROM messages AS m"
        " JOIN mailboxes AS b ON b.id = m.mailbox_id WHERE b.user_id = ?",
        (user_id,),
    ).fetchone()
    return QuotaUsage(storage=storage, messages=messages, limits=limits(conn, user_id, defaults))


def limits(conn: sqlite3.Connection, user_id: int, defaults: QuotaLimits) -> QuotaLimits:
    """The account's own limits when it has a row (NULL: unlimited), else the defaults."""
    row = conn.execute(
        "SELECT storage_limit, message_limit FROM quotas WHERE user_id = ?", (user_id,)
    ).fetchone()
    return defaults if row is None else QuotaLimits(storage=row[0], messages=row[1])


def set_limits(conn: sqlite3.Connection, user_id: int, new: QuotaLimits | None) -> None:
    if new is None:
        conn.execute("DELETE FROM quotas WHERE user_id = ?", (user_id,))
        return
    conn.execute(
        "INSERT INTO quotas (user_id, storage_limit, message_limit) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET"
        " storage_limit = excluded.storage_limit, message_limit = excluded.message_limit",
        (user_id, new.storage, new.messages),
    )


def check(
    conn: sqlite3.Connection,
    user_id: int,
    defaults: QuotaLimits,
    *,
    added_octets: int,
    added_messages: int,
) -> None:
    """Raise OverQuota if adding the messages would exceed a limit in force; run
    inside the write transaction that adds them."""
    in_force = limits(conn, user_id, defaults)
    if in_force.storage is None and in_force.messages is None:
        return
    current = usage(conn, user_id, in_force)
    if in_force.storage is not None and current.storage + added_octets > in_force.storage:
        raise OverQuota(
            f"storage quota exceeded: {current.storage} + {added_octets} octets"
            f" > {in_force.storage}"
        )
    if in_force.messages is not None and current.messages + added_messages > in_force.messages:
        raise OverQuota(
            f"message quota exceeded: {current.messages} + {added_messages} messages"
            f" > {in_force.messages}"
        )
