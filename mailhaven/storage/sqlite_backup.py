"""Consistent copies of the SQLite database: ``mailhaven backup`` and ``restore``.

Both use SQLite's online backup API (``sqlite3.Connection.backup``), not a file
copy: it reads the source in one read transaction, so the copy is a consistent
snapshot even while the server keeps writing (WAL readers do not block the
writer), and it writes the destination through SQLite's own locking.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailhaven.storage.sqlite import SCHEMA_VERSION


class BackupError(Exception):
    pass


def backup_database(source: Path, destination: Path) -> None:
    """Write a snapshot of *source* to the new file *destination*."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if destination.exists():
        raise BackupError(f"{destination} exists; choose a new file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _copy(source, destination)


def restore_database(backup: Path, destination: Path, *, replace: bool) -> None:
    """Check *backup* and copy it over *destination* (the server must be stopped)."""
    check_backup(backup)
    if destination.exists() and not replace:
        raise BackupError(f"{destination} exists; pass --force to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy(backup, destination)


def check_backup(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        has_users = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'"
        ).fetchone()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a Mailhaven database: {error}") from None
    finally:
        conn.close()
    if result != "ok" or not has_users:
        raise BackupError(f"{path} is damaged or not a Mailhaven database ({result})")
    if version > SCHEMA_VERSION:
        raise BackupError(f"{path} has schema {version}, newer than this program's")


def _copy(source: Path, destination: Path) -> None:
    source_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    # Mail and password hashes stay private to the server's user.
    destination.touch(mode=0o600, exist_ok=True)
    destination_conn = sqlite3.connect(destination)
    try:
        source_conn.backup(destination_conn)  # all pages in one step: one snapshot
    finally:
        destination_conn.close()
        source_conn.close()
