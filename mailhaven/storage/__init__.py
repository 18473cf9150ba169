"""Mail storage: the backend-neutral interface and the embedded SQLite backend."""

from __future__ import annotations

from pathlib import Path

from mailhaven.storage.interface import (
    ChangeHub,
    Changes,
    CopyResult,
    ImportOrigin,
    Listener,
    Mailbox,
    MailboxCounts,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MessageContent,
    MessageSummary,
    NewMessage,
    Storage,
    StorageError,
    StoreResult,
    User,
    UserExists,
    UserNotFound,
)
from mailhaven.storage.sqlite import SqliteStorage

DATABASE_FILE = "mailhaven.db"


def open_storage(data_dir: Path) -> Storage:
    """The default backend for a data directory; the caller awaits ``open()``."""
    return SqliteStorage(data_dir / DATABASE_FILE)


__all__ = [
    "DATABASE_FILE",
    "ChangeHub",
    "Changes",
    "CopyResult",
    "ImportOrigin",
    "Listener",
    "Mailbox",
    "MailboxCounts",
    "MailboxExists",
    "MailboxHasChildren",
    "MailboxNotFound",
    "MessageContent",
    "MessageSummary",
    "NewMessage",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "StoreResult",
    "User",
    "UserExists",
    "UserNotFound",
    "open_storage",
]
