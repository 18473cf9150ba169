"""Mail storage: the backend-neutral interface (:mod:`.interface`, where its types are
imported from) and the embedded SQLite backend."""

from __future__ import annotations

from pathlib import Path

from mailhaven.config import Config
from mailhaven.storage.interface import QuotaLimits, Storage
from mailhaven.storage.sqlite import SqliteStorage

DATABASE_FILE = "mailhaven.db"


def open_storage(data_dir: Path) -> Storage:
    """The default backend for a data directory; the caller awaits ``open()``."""
    return SqliteStorage(data_dir / DATABASE_FILE)


def quota_defaults(config: Config) -> QuotaLimits:
    """The limits of accounts without their own, from ``[quota]`` (RFC 9208)."""
    return QuotaLimits(storage=config.quota.default_storage, messages=config.quota.default_messages)


__all__ = ["DATABASE_FILE", "SqliteStorage", "open_storage", "quota_defaults"]
