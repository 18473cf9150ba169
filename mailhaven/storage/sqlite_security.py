"""The SQLite side of account security: per-account switches, app passwords, SCRAM
credentials, and the brute-force protection state (failed attempts, blocks, the
addresses each account logged in from).

Kept out of :mod:`mailhaven.storage.sqlite` so it can be read on its own;
:class:`SecurityStoreMixin` is mixed into :class:`~mailhaven.storage.sqlite.SqliteStorage`
and runs its work through that class's writer thread and reader pool.  The state lives
in the database so it survives restarts and is shared by every connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mailhaven.storage.interface import (
    AppPassword,
    AppPasswordExists,
    AppPasswordNotFound,
    AuthBlock,
    UserNotFound,
)

if TYPE_CHECKING:
    from mailhaven.storage.sqlite import _Transaction

T = TypeVar("T")

# Schema step 2 (user_version 1 -> 2).
SECURITY_SCHEMA = """
CREATE TABLE auth_failures (
    id INTEGER PRIMARY KEY,
    ip TEXT NOT NULL,
    account TEXT NOT NULL,  -- the name as typed, casefolded: existing or not
    at REAL NOT NULL
);
CREATE INDEX auth_failures_by_ip ON auth_failures (ip, at);
CREATE INDEX auth_failures_by_account ON auth_failures (account, at);
CREATE INDEX auth_failures_by_time ON auth_failures (at);

CREATE TABLE auth_blocks (
    kind TEXT NOT NULL,  -- 'ip' or 'account'
    key TEXT NOT NULL,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

CREATE TABLE known_ips (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip TEXT NOT NULL,
    last_login REAL NOT NULL,
    PRIMARY KEY (user_id, ip)
) WITHOUT ROWID;

CREATE TABLE app_passwords (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    digest TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (user_id, label)
) WITHOUT ROWID;

CREATE TABLE scram_credentials (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    credentials TEXT NOT NULL
);
-- SCRAM keys derived from an old password must never outlive it.
CREATE TRIGGER scram_forgotten_on_password_change AFTER UPDATE OF password_hash ON users
BEGIN
    DELETE FROM scram_credentials WHERE user_id = new.id;
END;
"""


class SecurityStoreMixin:
    """Security methods of :class:`~mailhaven.storage.interface.Storage` for SQLite."""

    if TYPE_CHECKING:

        async def _write(self, work: Callable[..., T], *args: Any) -> T: ...

        async def _read(self, query: Callable[..., T], *args: Any) -> T: ...

    # ------------------------------------------------------------- account switches

    async def set_imap_enabled(self, name: str, enabled: bool) -> None:
        await self._write(_set_user_flag, name, "imap_enabled", enabled)

    async def set_disabled(self, name: str, disabled: bool) -> None:
        await self._write(_set_user_flag, name, "disabled", disabled)

    # ------------------------------------------------------------- SCRAM

    async def set_scram_credentials(self, name: str, credentials: str) -> None:
        await self._write(_set_scram, name, credentials)

    async def scram_credentials(self, user_id: int) -> str | None:
        return await self._read(_scram, user_id)

    # ------------------------------------------------------------- app passwords

    async def add_app_password(self, name: str, label: str, digest: str) -> None:
        await self._write(_add_app_password, name, label, digest)

    async def app_passwords(self, name: str) -> list[AppPassword]:
        return await self._read(_app_passwords, name)

    async def revoke_app_password(self, name: str, label: str) -> None:
        await self._write(_revoke_app_password, name, label)

    async def app_password_digests(self, user_id: int) -> list[tuple[str, str]]:
        return await self._read(_app_password_digests, user_id)

    # ------------------------------------------------------------- brute force

    async def record_auth_failure(
        self, ip: str, account: str, at: float, ip_since: float, account_since: float
    ) -> tuple[int, int]:
        return await self._write(_record_failure, ip, account, at, ip_since, account_since)

    async def add_auth_block(self, block: AuthBlock) -> None:
        await self._write(_add_block, block)

    async def active_auth_block(self, kind: str, key: str, now: float) -> AuthBlock | None:
        return await self._read(_active_block, kind, key, now)

    async def list_auth_blocks(self, now: float) -> list[AuthBlock]:
        return await self._read(_list_blocks, now)

    async def clear_auth_blocks(self, key: str | None) -> int:
        return await self._write(_clear_blocks, key)

    async def record_login(self, user_id: int, ip: str, at: float) -> None:
        await self._write(_record_login, user_id, ip, at)

    async def is_known_ip(self, user_id: int, ip: str) -> bool:
        return await self._read(_is_known_ip, user_id, ip)


# --------------------------------------------------------------------------- work


def _user_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UserNotFound(name)
    return row[0]


def _set_user_flag(tx: _Transaction, name: str, column: str, value: bool) -> None:
    assert column in ("imap_enabled", "disabled")  # never built from input
    cursor = tx.conn.execute(f"UPDATE users SET {column} = ? WHERE name = ?", (int(value), name))
    if cursor.rowcount == 0:
        raise UserNotFound(name)


def _set_scram(tx: _Transaction, name: str, credentials: str) -> None:
    tx.conn.execute(
        "INSERT INTO scram_credentials (user_id, credentials) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET credentials = excluded.credentials",
        (_user_id(tx.conn, name), credentials),
    )


def _scram(conn: sqlite3.Connection, user_id: int) -> str | None:
    row = conn.execute(
        "SELECT credentials FROM scram_credentials WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else row[0]


def _add_app_password(tx: _Transaction, name: str, label: str, digest: str) -> None:
    user_id = _user_id(tx.conn, name)
    try:
        tx.conn.execute(
            "INSERT INTO app_passwords (user_id, label, digest, created) VALUES (?, ?, ?, ?)",
            (user_id, label, digest, int(time.time())),
        )
    except sqlite3.IntegrityError:
        raise AppPasswordExists(label) from None


def _app_passwords(conn: sqlite3.Connection, name: str) -> list[AppPassword]:
    rows = conn.execute(
        "SELECT label, created FROM app_passwords WHERE user_id = ? ORDER BY label",
        (_user_id(conn, name),),
    )
    return [AppPassword(label=label, created=created) for label, created in rows]


def _revoke_app_password(tx: _Transaction, name: str, label: str) -> None:
    cursor = tx.conn.execute(
        "DELETE FROM app_passwords WHERE user_id = ? AND label = ?",
        (_user_id(tx.conn, name), label),
    )
    if cursor.rowcount == 0:
        raise AppPasswordNotFound(label)


def _app_password_digests(conn: sqlite3.Connection, user_id: int) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT label, digest FROM app_passwords WHERE user_id = ?", (user_id,))
    return [(label, digest) for label, digest in rows]


def _record_failure(
    tx: _Transaction, ip: str, account: str, at: float, ip_since: float, account_since: float
) -> tuple[int, int]:
    conn = tx.conn
    # Rows older than both windows can never count again.
    conn.execute("DELETE FROM auth_failures WHERE at < ?", (min(ip_since, account_since),))
    conn.execute("INSERT INTO auth_failures (ip, account, at) VALUES (?, ?, ?)", (ip, account, at))
    (ip_count,) = conn.execute(
        "SELECT count(*) FROM auth_failures WHERE ip = ? AND at >= ?", (ip, ip_since)
    ).fetchone()
    (account_count,) = conn.execute(
        "SELECT count(*) FROM auth_failures WHERE account = ? AND at >= ?", (account, account_since)
    ).fetchone()
    return ip_count, account_count


def _add_block(tx: _Transaction, block: AuthBlock) -> None:
    tx.conn.execute(
        "INSERT INTO auth_blocks (kind, key, until, reason, created) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (kind, key) DO UPDATE SET until = max(until, excluded.until),"
        " reason = excluded.reason",
        (block.kind, block.key, block.until, block.reason, block.created),
    )


def _block(row: tuple[str, str, float, str, float]) -> AuthBlock:
    kind, key, until, reason, created = row
    return AuthBlock(kind=kind, key=key, until=until, reason=reason, created=created)


def _active_block(conn: sqlite3.Connection, kind: str, key: str, now: float) -> AuthBlock | None:
    row = conn.execute(
        "SELECT kind, key, until, reason, created FROM auth_blocks"
        " WHERE kind = ? AND key = ? AND until > ?",
        (kind, key, now),
    ).fetchone()
    return None if row is None else _block(row)


def _list_blocks(conn: sqlite3.Connection, now: float) -> list[AuthBlock]:
    rows = conn.execute(
        "SELECT kind, key, until, reason, created FROM auth_blocks WHERE until > ?"
        " ORDER BY kind, key",
        (now,),
    )
    return [_block(row) for row in rows]


def _clear_blocks(tx: _Transaction, key: str | None) -> int:
    """Lift blocks (all, or those of one IP or account) and forget the failures that
    led to them, so the next failure does not block again at once."""
    conn = tx.conn
    if key is None:
        cursor = conn.execute("DELETE FROM auth_blocks")
        conn.execute("DELETE FROM auth_failures")
        return cursor.rowcount
    account = key.casefold()
    cursor = conn.execute(
        "DELETE FROM auth_blocks WHERE (kind = 'ip' AND key = ?) OR (kind = 'account' AND key = ?)",
        (key, account),
    )
    conn.execute("DELETE FROM auth_failures WHERE ip = ? OR account = ?", (key, account))
    return cursor.rowcount


def _record_login(tx: _Transaction, user_id: int, ip: str, at: float) -> None:
    tx.conn.execute(
        "INSERT INTO known_ips (user_id, ip, last_login) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, ip) DO UPDATE SET last_login = excluded.last_login",
        (user_id, ip, at),
    )


def _is_known_ip(conn: sqlite3.Connection, user_id: int, ip: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM known_ips WHERE user_id = ? AND ip = ?", (user_id, ip)
    ).fetchone()
    return row is not None
