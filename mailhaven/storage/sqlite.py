"""The embedded storage backend: one SQLite database file in WAL mode.

Threading: all writes go through one writer thread with its own connection, so
they are serialised and each is exactly one ``BEGIN IMMEDIATE`` ... ``COMMIT``
transaction; reads run on a small pool of reader threads, each with its own
connection, concurrently with the writer (WAL gives every read transaction a
consistent snapshot).  The event loop only awaits those threads.  With
``synchronous=FULL`` a committed transaction is on disk when the call returns.

Message bytes live in ``contents``, shared by every copy of a message (COPY does
not duplicate them) and deleted when the last message referring to them goes.
Searchable text is stored casefolded, so substring search is case-insensitive for
all of Unicode, and indexed with FTS5's trigram tokenizer when SQLite has it.

Mailbox rules (RFC 9051 sections 6.3.4 to 6.3.6):

* Hierarchy separator "/"; CREATE and RENAME create missing superiors as ordinary
  mailboxes.
* DELETE of a mailbox with inferiors empties it and leaves a ``\\Noselect``
  placeholder; CREATE of a placeholder's name makes it a real mailbox again.
* Every (re)created or renamed mailbox gets a fresh UIDVALIDITY, taken from a
  database-wide counter that never repeats and starts from the current time, so a
  name never comes back with a UIDVALIDITY a client has cached.
* Subscriptions follow a RENAME: subscribed old names are replaced by the new
  names.  RFC 9051 section 6.3.6 leaves this open (its note shows clients that
  re-subscribe themselves, which stays harmless); keeping the user's list attached
  to the mailbox is what users expect.  DELETE leaves subscriptions alone (RFC 9051
  section 6.3.7: a server SHOULD NOT remove them unilaterally).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import functools
import itertools
import json
import logging
import os
import re
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from mailhaven.storage import (
    column_cache,
    fts_merge,
    sqlite_quota,
    sqlite_wire,
    stored_columns,
    text_backlog,
    text_hits,
)
from mailhaven.storage.coalesce import Claim, RecentClaims, SharedReads
from mailhaven.storage.column_cache import ColumnCache, ColumnSnapshot
from mailhaven.storage.flags import (
    normalize_flags,
    parse_flags,
    serialize_flags,
    store_applier,
)
from mailhaven.storage.interface import (
    ChangeHub,
    Changes,
    CopyResult,
    ImportOrigin,
    Mailbox,
    MailboxCounts,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MessageColumns,
    MessageContent,
    MessageObjectData,
    MessageSummary,
    NewMessage,
    QuotaLimits,
    QuotaUsage,
    Storage,
    StorageError,
    StoredWire,
    StoreResult,
    TextHits,
    User,
    UserExists,
    UserNotFound,
    epoch_and_offset,
)
from mailhaven.storage.loop_reads import LoopThreadReads
from mailhaven.storage.sqlite_security import SECURITY_SCHEMA, SecurityStoreMixin
from mailhaven.storage.text_hits import ContentUidsCache
from mailhaven.storage.unsynced_writes import run_unsynced

T = TypeVar("T")

log = logging.getLogger("mailhaven.storage")

SEPARATOR = "/"
INBOX = "INBOX"
DEFAULT_MAILBOXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (INBOX, ()),
    ("Drafts", ("\\Drafts",)),
    ("Sent", ("\\Sent",)),
    ("Trash", ("\\Trash",)),
    ("Junk", ("\\Junk",)),
    ("Archive", ("\\Archive",)),
)

BUSY_TIMEOUT_MS = 30_000
MAX_UIDVALIDITY = 0xFFFFFFFF  # RFC 9051 section 9: nz-number fits in 32 bits
TRIGRAM = 3  # FTS5 trigram queries need at least this many characters

_SCHEMA_V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    imap_enabled INTEGER NOT NULL DEFAULT 1,
    disabled INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT NOT NULL DEFAULT '',
    selectable INTEGER NOT NULL DEFAULT 1,
    UNIQUE (user_id, name)
);

CREATE TABLE subscriptions (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;

-- raw comes last: scanning the text columns then never reads the big blob.
CREATE TABLE contents (
    id INTEGER PRIMARY KEY,
    body_text TEXT NOT NULL,
    header_text TEXT NOT NULL,
    metadata BLOB NOT NULL,
    raw BLOB NOT NULL
);

CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,
    internal_date INTEGER NOT NULL,
    tz_offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    recent INTEGER NOT NULL,
    content_id INTEGER NOT NULL REFERENCES contents (id),
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_by_content ON messages (content_id);

CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_by_modseq ON expunged (mailbox_id, modseq);
"""

# OBJECTID (RFC 8474) and SAVEDATE (RFC 8514).  Ids handed out are remembered in
# meta so that they are never reused, even after the row with the largest id is
# deleted (INTEGER PRIMARY KEY alone would reuse it).  Messages stored before
# SAVEDATE existed take their internal date as save date, the best estimate left.
_SCHEMA_V2_OBJECTS = """
ALTER TABLE mailboxes ADD COLUMN object_id INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET object_id = id;
ALTER TABLE messages ADD COLUMN save_date INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET save_date = internal_date;
INSERT INTO meta (key, value) SELECT 'last_mailbox_object_id', coalesce(max(id), 0) FROM mailboxes;
INSERT INTO meta (key, value) SELECT 'last_content_id', coalesce(max(id), 0) FROM contents;
"""

# What `mailhaven import USER imap://...` already copied, so a rerun skips it.
_SCHEMA_IMPORTED = """
CREATE TABLE imported (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    PRIMARY KEY (user_id, source, folder, uidvalidity, uid)
) WITHOUT ROWID;
"""

# claim_recent runs on every SELECT; without this index it visits every message of the
# mailbox to find the few still marked recent.
_SCHEMA_RECENT_INDEX = """
CREATE INDEX messages_recent ON messages (mailbox_id, uid) WHERE recent = 1;
"""

# The top-level header block of each content, so FETCH BODY[HEADER.FIELDS (...)], the
# message list of every client, reads a kilobyte instead of the whole message with its
# attachments.  In a table of its own: a column after contents.raw would make SQLite walk
# raw's overflow pages to reach it.  The block runs to the end of the first empty line
# (RFC 5322 section 2.1), as in _header_block; existing rows are sliced here the same way.
_SCHEMA_HEADERS = """
CREATE TABLE content_headers (
    content_id INTEGER PRIMARY KEY REFERENCES contents (id) ON DELETE CASCADE,
    header BLOB NOT NULL
);
INSERT INTO content_headers (content_id, header)
SELECT id, substr(raw, 1, CASE
    WHEN substr(raw, 1, 1) = x'0a' THEN 1
    WHEN substr(raw, 1, 2) = x'0d0a' THEN 2
    WHEN crlf > 0 AND (lf = 0 OR crlf < lf) THEN crlf + 2
    WHEN lf > 0 THEN lf + 1
    ELSE length(raw)
END) FROM (SELECT id, raw, instr(raw, x'0a0d0a') AS crlf, instr(raw, x'0a0a') AS lf FROM contents);
"""

# SEARCH date keys (RFC 9051 section 6.4.4) in SQL rather than a Python pass over every
# message.  BEFORE/ON/SINCE compare INTERNALDATE's date in its own zone: the index on
# local seconds finds a range of days directly.  SENTBEFORE/SENTON/SENTSINCE compare
# the Date header's date in its own zone, which the stored metadata holds (element 4
# of its JSON, an ISO 8601 date-time or null): the trigger copies its date part for
# every stored content, so no insert path needs to know, and the migration fills it in
# for the contents already stored.  Metadata that is not JSON (none is written so, but
# nothing enforces it) gives no day.
_SENT_DAY = "CASE WHEN json_valid({0}) THEN substr(json_extract({0}, '$[4]'), 1, 10) END"
_SCHEMA_SEARCH_DATES = f"""
CREATE INDEX messages_by_local_date ON messages (mailbox_id, internal_date + tz_offset);
CREATE TABLE sent_days (
    content_id INTEGER PRIMARY KEY,
    day TEXT
);
CREATE INDEX sent_days_by_day ON sent_days (day);
CREATE TRIGGER contents_sent_day_insert AFTER INSERT ON contents BEGIN
    INSERT INTO sent_days (content_id, day)
    VALUES (new.id, {_SENT_DAY.format("CAST(new.metadata AS TEXT)")});
END;
CREATE TRIGGER contents_sent_day_delete AFTER DELETE ON contents BEGIN
    DELETE FROM sent_days WHERE content_id = old.id;
END;
INSERT INTO sent_days (content_id, day)
SELECT id, {_SENT_DAY.format("CAST(metadata AS TEXT)")} FROM contents;
"""

# Index i upgrades a database from user_version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (
    _SCHEMA_V1,
    _SCHEMA_V2_OBJECTS + sqlite_quota.MIGRATION,
    _SCHEMA_IMPORTED,
    SECURITY_SCHEMA,
    _SCHEMA_RECENT_INDEX,
    _SCHEMA_HEADERS,
    _SCHEMA_SEARCH_DATES,
    sqlite_wire.MIGRATION,
    fts_merge.MIGRATION,
    stored_columns.SCHEMA,
    text_backlog.MIGRATION,
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Steps (by their script) followed by Python that fills the new tables for what is stored.
_MIGRATION_BACKFILLS: dict[str, Callable[[sqlite3.Connection], None]] = {
    sqlite_wire.MIGRATION: sqlite_wire.backfill,
    fts_merge.MIGRATION: fts_merge.backfill,
    text_backlog.MIGRATION: text_backlog.backfill,
}

# External-content FTS table: the text is stored once, in contents.  The text is
# casefolded before it is stored, so the tokenizer need not fold it again.  New
# contents are indexed after their transaction, in batches (storage.text_backlog).
_FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE contents_fts USING fts5(
    body_text, header_text,
    content = 'contents', content_rowid = 'id',
    tokenize = 'trigram case_sensitive 1'
);
{text_backlog.DELETE_TRIGGER}
INSERT INTO contents_fts (contents_fts) VALUES ('rebuild');
{text_backlog.ALL_INDEXED}
"""

_MAILBOX_COLUMNS = (
    "id, user_id, name, uidvalidity, uidnext, highest_modseq, special_use, selectable, object_id"
)
_SUMMARY_COLUMNS = "uid, flags, modseq, internal_date, tz_offset, size"
_USER_COLUMNS = "id, name, password_hash, imap_enabled, disabled"


def fts5_trigram_available() -> bool:
    """Whether this SQLite can build a trigram FTS5 index (SQLite 3.34 or later,
    compiled with FTS5)."""
    if sqlite3.sqlite_version_info < (3, 34, 0):
        return False
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize = 'trigram')")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


# --------------------------------------------------------------------------- conversions


def _json_ids(ids: Iterable[int]) -> str:
    """Many ids as one parameter, read back with json_each (no variable limit)."""
    return json.dumps(list(ids))


@functools.lru_cache(maxsize=256)
def _zone(tz_offset: int) -> datetime.timezone:
    # A mailbox's messages share a handful of offsets; summaries of 100,000
    # messages then build 100,000 datetimes but only a few zones.
    return datetime.timezone(datetime.timedelta(seconds=tz_offset))


_FROM_EPOCH = datetime.datetime.fromtimestamp


def _datetime(epoch: int, tz_offset: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, _zone(tz_offset))


def _summary(row: Sequence[Any]) -> MessageSummary:
    uid, flags, modseq, epoch, tz_offset, size = row
    return MessageSummary(
        uid=uid,
        flags=parse_flags(flags),
        modseq=modseq,
        internal_date=_datetime(epoch, tz_offset),
        size=size,
    )


def _mailbox(row: Sequence[Any]) -> Mailbox:
    mailbox_id, user_id, name, uidvalidity, uidnext, modseq, special_use, selectable, oid = row
    return Mailbox(
        id=mailbox_id,
        user_id=user_id,
        name=name,
        uidvalidity=uidvalidity,
        uidnext=uidnext,
        highest_modseq=modseq,
        special_use=tuple(special_use.split()),
        selectable=bool(selectable),
        object_id=oid,
    )


def _user(row: Sequence[Any]) -> User:
    user_id, name, password_hash, imap_enabled, disabled = row
    return User(
        id=user_id,
        name=name,
        password_hash=password_hash,
        imap_enabled=bool(imap_enabled),
        disabled=bool(disabled),
    )


def _fts_phrase(needle: str, *, headers: bool) -> str:
    """An FTS5 query matching *needle* as one phrase, i.e. as a substring under
    the trigram tokenizer; double quotes inside a phrase are doubled.  With
    *headers* it names no column: the table has just the two, and a column filter
    costs about a tenth of a common word's query."""
    quoted = needle.replace('"', '""')
    return f'"{quoted}"' if headers else f'body_text : "{quoted}"'


# --------------------------------------------------------------------------- names


def _check_name(name: str) -> None:
    """Full names only: no empty hierarchy levels (the IMAP layer strips the
    trailing separator CREATE allows, RFC 9051 section 6.3.4)."""
    if not name or "" in name.split(SEPARATOR):
        raise StorageError(f"invalid mailbox name {name!r}")


def _superiors(name: str) -> list[str]:
    """Superior names, outermost first: "a/b/c" gives ["a", "a/b"]."""
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:depth]) for depth in range(1, len(levels))]


def _inferior_range(name: str) -> tuple[str, str]:
    """Bounds such that lower <= n < upper exactly for the inferiors of *name*
    ("/" + 1 is "0"; BINARY collation compares code points like Python)."""
    return name + SEPARATOR, name + chr(ord(SEPARATOR) + 1)


# --------------------------------------------------------------------------- transactions


class _Transaction:
    """One write transaction; hands out each mailbox's new modseq once per command
    (RFC 7162 section 3.1.1 lets all changes of one command share it) and records
    which mailboxes changed, for publishing after COMMIT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.changed_mailboxes: set[int] = set()
        self._modseqs: dict[int, int] = {}

    def new_modseq(self, mailbox_id: int) -> int:
        if mailbox_id not in self._modseqs:
            (modseq,) = self.conn.execute(
                "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?"
                " RETURNING highest_modseq",
                (mailbox_id,),
            ).fetchone()
            self._modseqs[mailbox_id] = modseq
            self.changed_mailboxes.add(mailbox_id)
        return self._modseqs[mailbox_id]


# Readers map the database file (SQLite caps this at its build's SQLITE_MAX_MMAP_SIZE,
# 2 GB in the usual builds): a page is then read from the operating system's page cache
# in place instead of copied by a pread() each.  Message bodies span thousands of
# overflow pages, and a first FETCH BODY[] of 10,000 messages (91 MB) took 1.5x as long
# through pread().  The price, SQLite's documentation ("Memory-Mapped I/O"): an I/O
# error while reading becomes a signal that ends the process instead of an error, and a
# file truncated under the mapping by something other than SQLite does the same (the
# server never shrinks its database; restore runs with the server stopped).  The writer
# keeps pread()/pwrite().
READER_MMAP_BYTES = 1 << 31


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    # Autocommit mode: transactions are begun and ended explicitly.  Connections
    # are closed by close() from another thread once their executor is shut down.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
    return conn


# --------------------------------------------------------------------------- the backend


class SqliteStorage(SecurityStoreMixin, Storage):
    """A :class:`Storage` in one SQLite file; call :meth:`open` first."""

    def __init__(self, path: str | os.PathLike[str], *, readers: int = 4) -> None:
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.changes = ChangeHub()
        self._path = os.fspath(path)
        self._reader_count = readers
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._thread_state = threading.local()
        self._fts = False
        self._shared_reads = SharedReads()
        self._recent_claims = RecentClaims()
        self._column_cache = ColumnCache()
        self._content_uids = ContentUidsCache()
        self._loop_reads = LoopThreadReads(self._path)
        self._writes_in_flight = 0  # handed to the writer thread and not yet done
        self._merging = False  # an index merge step is queued or running on the writer
        self._merge_timer: asyncio.TimerHandle | None = None
        self._reads_in_flight = 0  # handed to the reader threads and not yet done
        self._last_done = 0.0  # when the last read or write completed, on the loop's clock
        self._index_backlog = 0  # contents left unindexed by the last write (text_backlog)

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        if self._writer is not None:
            raise StorageError("storage is already open")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mailhaven-db-writer")
        self._readers = ThreadPoolExecutor(
            self._reader_count,
            thread_name_prefix="mailhaven-db-reader",
            initializer=self._open_reader_connection,
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._open_writer_connection)
        except BaseException:
            await self.close()
            raise
        # An index left unmerged (by an import, or writes cut short) is merged once idle.
        self._last_done = loop.time()
        self._arm_index_merge(fts_merge.IDLE_SECONDS)

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        if writer is None or readers is None:
            return
        self._writer = self._readers = None
        if self._merge_timer is not None:
            self._merge_timer.cancel()
            self._merge_timer = None
        self._loop_reads.close()
        await asyncio.to_thread(self._shut_down, writer, readers)

    def _shut_down(self, writer: ThreadPoolExecutor, readers: ThreadPoolExecutor) -> None:
        writer.shutdown(wait=True)
        readers.shutdown(wait=True)
        with self._reader_conns_lock:
            connections, self._reader_conns = self._reader_conns, []
        for conn in connections:
            conn.close()
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    def _open_writer_connection(self) -> None:
        # Mail and password hashes are private to the server's user; SQLite gives
        # the -wal and -shm files the database file's permissions.
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = _connect(self._path, readonly=False)
        conn.execute("PRAGMA journal_mode = WAL")
        self._migrate(conn)
        self._fts = fts5_trigram_available()
        if self._fts:
            self._ensure_fts(conn)
        self._writer_conn = conn

    def _open_reader_connection(self) -> None:
        conn = _connect(self._path, readonly=True)
        self._thread_state.conn = conn
        with self._reader_conns_lock:
            self._reader_conns.append(conn)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"database schema version {version} is newer than this program's ({SCHEMA_VERSION})"
            )
        for target, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            if script in _MIGRATION_BACKFILLS:
                SqliteStorage._migrate_with_backfill(conn, script, target)
                continue
            # executescript runs statements one by one; the explicit transaction
            # makes each migration step all-or-nothing.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;"
            )

    @staticmethod
    def _migrate_with_backfill(conn: sqlite3.Connection, script: str, target: int) -> None:
        """A step whose new rows are computed in Python, in the step's transaction."""
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}")
        try:
            _MIGRATION_BACKFILLS[script](conn)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _ensure_fts(conn: sqlite3.Connection) -> None:
        """Build the search index if missing (new database, or one created by a
        SQLite without trigram support)."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'contents_fts'"
        ).fetchone()
        if not exists:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{_FTS_SCHEMA}\n{fts_merge.DISABLE_AUTOMERGE}\nCOMMIT;"
            )

    # ----------------------------------------------------------------- plumbing

    async def _write(self, work: Callable[..., T], *args: Any) -> T:
        """Run *work(transaction, *args)* as one transaction on the writer thread,
        then publish the changed mailboxes on the event loop thread.  A cancelled
        caller does not cancel a write already handed over: it still commits and
        is still published."""
        return await self._hand_to_writer(self._run_transaction, work, *args)

    async def _hand_to_writer(self, run: Callable[..., tuple[T, set[int]]], *args: Any) -> T:
        """Run *run(*args)*, a transaction runner, on the writer thread (see _write)."""
        if self._writer is None:
            raise StorageError("storage is not open")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, run, *args)
        self._writes_in_flight += 1
        future.add_done_callback(self._write_done)
        result, _changed = await asyncio.shield(future)
        return result

    def _write_done(self, future: asyncio.Future[tuple[Any, set[int]]]) -> None:
        self._writes_in_flight -= 1
        self._publish_committed(future)
        self._last_done = future.get_loop().time()
        if self._index_backlog >= text_backlog.BACKLOG_BOUND:
            self._index_backlog_now()
        self._arm_index_merge(fts_merge.IDLE_SECONDS)

    def _index_backlog_now(self) -> None:
        """Queue an index batch behind the writes already queued, without waiting for
        the store to be idle: the unindexed tail SEARCH scans stays bounded while
        deliveries never pause (storage.text_backlog)."""
        if self._merging or self._writer is None:
            return  # a step is under way; the next write's completion asks again
        if self._merge_timer is not None:
            self._merge_timer.cancel()
            self._merge_timer = None
        self._index_backlog = 0
        self._start_merge_step(self._writer)

    # The text index is merged in steps on the writer thread once no read or write has
    # been running for fts_merge.IDLE_SECONDS (see storage.fts_merge); a step that found
    # work is followed by the next, after a short pause, as long as the store stays idle.
    # Contents not yet indexed are indexed first, by the same steps (text_backlog).

    def _arm_index_merge(self, delay: float) -> None:
        if self._fts and self._merge_timer is None and not self._merging and self._writer:
            loop = asyncio.get_running_loop()
            self._merge_timer = loop.call_later(delay, self._merge_index_if_idle)

    def _merge_index_if_idle(self) -> None:
        self._merge_timer = None
        if self._writes_in_flight or self._writer is None:
            return  # the last write's completion arms the timer again
        loop = asyncio.get_running_loop()
        wait = self._last_done + fts_merge.IDLE_SECONDS - loop.time()
        if self._reads_in_flight or wait > 0:
            # Merging would take a core from the readers (a SEARCH after a burst of
            # deliveries ran at half speed beside it): wait until they are done too.
            wait = fts_merge.IDLE_SECONDS if self._reads_in_flight else wait
            self._arm_index_merge(wait)
            return
        self._start_merge_step(self._writer)

    def _start_merge_step(self, writer: ThreadPoolExecutor) -> None:
        self._merging = True
        step = asyncio.get_running_loop().run_in_executor(writer, self._merge_step)
        step.add_done_callback(self._merge_step_done)

    def _merge_step(self) -> bool:
        conn = self._writer_conn
        assert conn is not None, "the writer connection is opened before any write"
        unindexed = text_backlog.backlog(conn)
        if unindexed > 0:
            text_backlog.index_batch(conn)
            return text_backlog.backlog(conn) < unindexed  # not when another writer held on
        return fts_merge.merge_step(conn)

    def _merge_step_done(self, step: asyncio.Future[bool]) -> None:
        self._merging = False
        if step.cancelled():
            return
        if step.exception() is not None:
            # The index is as the last committed step left it: complete, only less merged.
            log.warning("text index merge step failed", exc_info=step.exception())
            return
        if step.result():
            self._arm_index_merge(fts_merge.STEP_PAUSE_SECONDS)

    def _run_prepared_transaction(
        self, prepare: Callable[[], Any], work: Callable[..., T], *args: Any
    ) -> tuple[T, set[int]]:
        """*prepare()* first, before the transaction begins (it must not hold the
        database's write lock), then *work(transaction, *args, prepared)*."""
        return self._run_transaction(work, *args, prepare())

    def _run_transaction(self, work: Callable[..., T], *args: Any) -> tuple[T, set[int]]:
        conn = self._writer_conn
        assert conn is not None, "the writer connection is opened before any write"
        conn.execute("BEGIN IMMEDIATE")
        transaction = _Transaction(conn)
        try:
            result = work(transaction, *args)
            if self._fts:
                # Two lookups in meta: whether this write grew the backlog past its bound.
                self._index_backlog = text_backlog.backlog(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result, transaction.changed_mailboxes

    def _publish_committed(self, future: asyncio.Future[tuple[Any, set[int]]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        _result, changed = future.result()
        for mailbox_id in sorted(changed):
            self.changes.publish(mailbox_id)

    async def _read(self, query: Callable[..., T], *args: Any) -> T:
        """Run *query(connection, *args)* in one read transaction (a consistent
        snapshot) on a reader thread."""
        if self._readers is None:
            raise StorageError("storage is not open")
        loop = asyncio.get_running_loop()
        self._reads_in_flight += 1
        try:
            return await loop.run_in_executor(self._readers, self._run_read, query, *args)
        finally:
            self._reads_in_flight -= 1
            self._last_done = loop.time()

    def _run_read(self, query: Callable[..., T], *args: Any) -> T:
        conn: sqlite3.Connection = self._thread_state.conn
        conn.execute("BEGIN")
        try:
            return query(conn, *args)
        finally:
            conn.execute("ROLLBACK")

    # ----------------------------------------------------------------- accounts

    async def create_user(self, name: str, password_hash: str) -> User:
        return await self._write(_create_user, name, password_hash)

    async def get_user(self, name: str) -> User | None:
        # Every LMTP RCPT and every login asks this: one row by its unique name, read on
        # the loop's own thread when it can be (storage/loop_reads.py), not handed off.
        rows = self._loop_reads.rows(_USER_BY_NAME, (name,))
        if rows is not None:
            return _user(rows[0]) if rows else None
        return await self._read(_get_user, name)

    async def list_users(self) -> list[User]:
        return await self._read(_list_users)

    async def set_password(self, name: str, password_hash: str) -> None:
        await self._write(_set_password, name, password_hash)

    async def delete_user(self, name: str) -> None:
        await self._write(_delete_user, name)

    # ----------------------------------------------------------------- mailboxes

    async def list_mailboxes(self, user_id: int) -> list[Mailbox]:
        return await self._read(_list_mailboxes, user_id)

    async def get_mailbox(self, user_id: int, name: str) -> Mailbox | None:
        # One row by its unique key (SELECT, STATUS, APPEND each start here): read on
        # the event loop's thread when it can be (see storage.loop_reads).
        rows = self._loop_reads.rows(_MAILBOX_BY_NAME, (user_id, name))
        if rows:
            return _mailbox(rows[0])
        return await self._read(_mailbox_by_name, user_id, name)

    async def create_mailbox(
        self, user_id: int, name: str, special_use: Sequence[str] = ()
    ) -> Mailbox:
        return await self._write(_create_mailbox, user_id, name, tuple(special_use))

    async def delete_mailbox(self, user_id: int, name: str) -> None:
        await self._write(_delete_mailbox, user_id, name)

    async def rename_mailbox(self, user_id: int, old: str, new: str) -> None:
        await self._write(_rename_mailbox, user_id, old, new)

    async def subscriptions(self, user_id: int) -> set[str]:
        return await self._read(_subscriptions, user_id)

    async def subscribe(self, user_id: int, name: str) -> None:
        await self._write(_subscribe, user_id, name)

    async def unsubscribe(self, user_id: int, name: str) -> None:
        await self._write(_unsubscribe, user_id, name)

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        return await self._read(_mailbox_counts, mailbox_id)

    # ----------------------------------------------------------------- messages

    async def append(self, mailbox_id: int, messages: Sequence[NewMessage]) -> CopyResult:
        return await self._write(_append, mailbox_id, list(messages), self.quota_defaults)

    async def append_to(
        self,
        user_id: int,
        name: str,
        prepare: Callable[[], Sequence[NewMessage]],
        *,
        fallback: str | None = None,
        account_must_be_enabled: bool = False,
    ) -> CopyResult:
        target = (user_id, name, fallback, account_must_be_enabled, self.quota_defaults)
        if self._writes_in_flight or self._merging:
            # The writer is busy: build the messages on another thread meanwhile (SQLite
            # releases the GIL while it writes and syncs), then queue the transaction.
            loop = asyncio.get_running_loop()
            messages = await loop.run_in_executor(None, prepare)
            return await self._write(_append_to, *target, messages)
        # The writer is idle: building the messages there, just before the transaction,
        # spares one hand-off between threads (and a wake-up of each) per delivery.
        return await self._hand_to_writer(
            self._run_prepared_transaction, prepare, _append_to, *target
        )

    async def message_summaries(self, mailbox_id: int) -> list[MessageSummary]:
        return await self._read(_message_summaries, mailbox_id)

    async def message_columns(self, mailbox_id: int) -> MessageColumns:
        return (await self.column_snapshot(mailbox_id)).columns

    async def column_snapshot(self, mailbox_id: int) -> ColumnSnapshot:
        # The cached snapshot is current when the mailbox's modseq has not moved since
        # (every change takes a new one): that is one primary-key read, done on the
        # event loop's thread, with no hand-off to a reader.
        rows = self._loop_reads.rows(_INCARNATION_BY_ID, (mailbox_id,))
        if rows:
            current = self._column_cache.current(mailbox_id, *rows[0])
            if current is not None:
                return current
        read = await self._read(_column_snapshot, mailbox_id, self._column_cache)
        if read.worth_storing and self._writer is not None:
            # For the first SELECT of the next process; this one goes on meanwhile.
            stored = asyncio.get_running_loop().run_in_executor(
                self._writer, self._store_columns, mailbox_id, read
            )
            stored.add_done_callback(_log_failed_column_store)
        return read.snapshot

    async def store_column_snapshot(self, mailbox_id: int) -> None:
        read = await self._read(_column_snapshot, mailbox_id, self._column_cache)
        if self._writer is None:
            raise StorageError("storage is not open")
        if stored_columns.worth_storing(read.snapshot):
            await asyncio.get_running_loop().run_in_executor(
                self._writer, self._store_columns, mailbox_id, read
            )

    def _store_columns(self, mailbox_id: int, read: _ColumnRead) -> None:
        conn = self._writer_conn
        assert conn is not None, "the writer connection is opened before any write"
        data = stored_columns.encode(read.snapshot)
        uidvalidity, modseq = read.uidvalidity, read.snapshot.modseq
        run_unsynced(
            conn, lambda conn: stored_columns.store(conn, mailbox_id, uidvalidity, data, modseq)
        )

    async def claim_recent(self, mailbox_id: int) -> set[int]:
        # After each new message every session that has the mailbox selected claims,
        # and only the first finds anything: the others look on a reader (or the event
        # loop's own read) rather than queue behind the writer's commits (which wait
        # for fsync).
        rows = self._loop_reads.rows(_HAS_RECENT, (mailbox_id, mailbox_id))
        if rows and rows[0][0]:
            has_recent = bool(rows[0][1])
        else:  # not answerable here, or the mailbox is gone (raised by the reader)
            has_recent = await self._read(_has_recent, mailbox_id)
        if not has_recent:
            return set()
        return await self._write(_claim_recent, mailbox_id)

    async def claim_new_recent(self, mailbox_id: int, seen_modseq: int) -> set[int]:
        return await self._recent_claims.claim(
            mailbox_id, seen_modseq, lambda: self._write(_claim_recent_covering, mailbox_id)
        )

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        position = self._loop_reads.mailbox_position(mailbox_id)
        if position is not None and position[0] <= modseq:
            return Changes(position[0], position[1], (), ())  # as _changes_since says
        # Every session a commit wakes asks this with the same modseq: one query
        # answers them all.  The generation in the key keeps a read begun before a
        # change was published from answering a session woken by it.
        key = ("changes", mailbox_id, modseq, self.changes.generation(mailbox_id))
        return await self._shared_reads.read(
            key, lambda: self._read(_changes_since, mailbox_id, modseq)
        )

    async def vanished_since(
        self, mailbox_id: int, modseq: int, uid_ranges: Sequence[tuple[int, int]]
    ) -> list[int]:
        if not uid_ranges:
            return []
        return await self._read(_vanished_since, mailbox_id, modseq, list(uid_ranges))

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: str,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> StoreResult:
        return await self._write(
            _store_flags, mailbox_id, sorted(set(uids)), mode, flags, unchanged_since
        )

    async def copy(
        self, source_mailbox_id: int, uids: Iterable[int], destination_mailbox_id: int
    ) -> CopyResult:
        return await self._write(
            _copy,
            source_mailbox_id,
            sorted(set(uids)),
            destination_mailbox_id,
            False,
            self.quota_defaults,
        )

    async def move(
        self, source_mailbox_id: int, uids: Iterable[int], destination_mailbox_id: int
    ) -> CopyResult:
        return await self._write(
            _copy,
            source_mailbox_id,
            sorted(set(uids)),
            destination_mailbox_id,
            True,
            self.quota_defaults,
        )

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        wanted = None if uids is None else sorted(set(uids))
        return await self._write(_expunge, mailbox_id, wanted)

    async def fetch_content(
        self, mailbox_id: int, uids: Sequence[int], *, raw: bool, metadata: bool
    ) -> list[MessageContent]:
        return await self._read(_fetch_content, mailbox_id, list(uids), raw, metadata)

    async def fetch_headers(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, bytes]:
        return await self._read(_fetch_headers, mailbox_id, list(uids))

    async def fetch_wire(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, StoredWire]:
        return await self._read(_fetch_wire, mailbox_id, list(uids))

    async def object_data(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageObjectData]:
        return await self._read(_object_data, mailbox_id, list(uids))

    # ----------------------------------------------------------------- quota

    async def quota(self, user_id: int) -> QuotaUsage:
        return await self._read(sqlite_quota.usage, user_id, self.quota_defaults)

    async def set_quota(self, user_id: int, limits: QuotaLimits | None) -> QuotaUsage:
        return await self._write(_set_quota, user_id, limits, self.quota_defaults)

    async def search_text(self, mailbox_id: int, needle: str, *, headers: bool) -> set[int]:
        return set((await self.search_text_hits(mailbox_id, needle, headers=headers)).uids)

    async def search_text_hits(self, mailbox_id: int, needle: str, *, headers: bool) -> TextHits:
        return await self._read(
            _search_text, mailbox_id, needle.casefold(), headers, self._fts, self._content_uids
        )

    async def search_dates(
        self,
        mailbox_id: int,
        first: datetime.date | None,
        end: datetime.date | None,
        *,
        sent: bool,
    ) -> set[int]:
        return await self._read(_search_dates, mailbox_id, first, end, sent)

    # ----------------------------------------------------------------- mail flow (import)

    async def append_imported(
        self, mailbox_id: int, messages: Sequence[NewMessage], origin: ImportOrigin
    ) -> CopyResult:
        return await self._write(
            _append_imported, mailbox_id, list(messages), origin, self.quota_defaults
        )

    async def imported_uids(
        self, user_id: int, source: str, folder: str, uidvalidity: int
    ) -> set[int]:
        return await self._read(_imported_uids, user_id, source, folder, uidvalidity)

    async def append_with_uids(
        self,
        mailbox_id: int,
        messages: Sequence[NewMessage],
        uids: Sequence[int],
        *,
        uidnext_at_least: int = 1,
    ) -> CopyResult:
        return await self._write(
            _append_with_uids,
            mailbox_id,
            list(messages),
            list(uids),
            uidnext_at_least,
            self.quota_defaults,
        )

    async def adopt_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> None:
        await self._write(_adopt_uidvalidity, mailbox_id, uidvalidity)


# --------------------------------------------------------------------------- shared queries


_MAILBOX_BY_ID = f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?"
_MAILBOX_BY_NAME = f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = ? AND name = ?"
# What a process's cached column snapshot is checked against (see ColumnCache.current).
_INCARNATION_BY_ID = "SELECT uidvalidity, highest_modseq FROM mailboxes WHERE id = ?"


def _mailbox_by_id(conn: sqlite3.Connection, mailbox_id: int) -> Mailbox:
    row = conn.execute(_MAILBOX_BY_ID, (mailbox_id,)).fetchone()
    if row is None:
        raise MailboxNotFound(f"no mailbox with id {mailbox_id}")
    return _mailbox(row)


def _selectable_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> Mailbox:
    """A mailbox that can hold messages (a \\Noselect placeholder cannot)."""
    mailbox = _mailbox_by_id(conn, mailbox_id)
    if not mailbox.selectable:
        raise MailboxNotFound(f"mailbox {mailbox.name!r} is not selectable")
    return mailbox


def _mailbox_by_name(conn: sqlite3.Connection, user_id: int, name: str) -> Mailbox | None:
    row = conn.execute(_MAILBOX_BY_NAME, (user_id, name)).fetchone()
    return None if row is None else _mailbox(row)


def _inferior_mailboxes(conn: sqlite3.Connection, user_id: int, name: str) -> list[Mailbox]:
    lower, upper = _inferior_range(name)
    rows = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes"
        " WHERE user_id = ? AND name >= ? AND name < ? ORDER BY name",
        (user_id, lower, upper),
    )
    return [_mailbox(row) for row in rows]


def _require_user_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UserNotFound(name)
    return row[0]


def _next_uidvalidity(conn: sqlite3.Connection) -> int:
    """Strictly increasing across the database and at least the current time, so
    it differs from every value this or an earlier database handed out for any
    name (RFC 9051 section 2.3.1.1)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_uidvalidity'").fetchone()
    last = 0 if row is None else row[0]
    value = max(last + 1, int(time.time()))
    if value > MAX_UIDVALIDITY:
        raise StorageError("UIDVALIDITY space exhausted")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def _insert_mailbox(
    conn: sqlite3.Connection, user_id: int, name: str, special_use: tuple[str, ...] = ()
) -> int:
    cursor = conn.execute(
        "INSERT INTO mailboxes (user_id, name, uidvalidity, special_use, object_id)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            user_id,
            name,
            _next_uidvalidity(conn),
            " ".join(special_use),
            _next_id(conn, "last_mailbox_object_id", 1),
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _next_id(conn: sqlite3.Connection, key: str, count: int) -> int:
    """The first of *count* new ids from the never-decreasing counter *key* in meta."""
    (last,) = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (last + count, key))
    return last + 1


def _create_missing_superiors(conn: sqlite3.Connection, user_id: int, name: str) -> None:
    """RFC 9051 sections 6.3.4 and 6.3.6: superiors needed by a new name."""
    for superior in _superiors(name):
        if _mailbox_by_name(conn, user_id, superior) is None:
            _insert_mailbox(conn, user_id, superior)


def _delete_orphan_contents(conn: sqlite3.Connection, content_ids: Iterable[int]) -> None:
    conn.execute(
        "DELETE FROM contents WHERE id IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM messages WHERE content_id = contents.id)",
        (_json_ids(content_ids),),
    )


def _content_ids_of_mailboxes(conn: sqlite3.Connection, mailbox_ids: Iterable[int]) -> list[int]:
    rows = conn.execute(
        "SELECT DISTINCT content_id FROM messages"
        " WHERE mailbox_id IN (SELECT value FROM json_each(?))",
        (_json_ids(mailbox_ids),),
    )
    return [content_id for (content_id,) in rows]


def _record_expunged(tx: _Transaction, mailbox_id: int, uids: Sequence[int]) -> None:
    """Remember expunged UIDs with the expunge's modseq (RFC 7162 section 3.2.7)."""
    modseq = tx.new_modseq(mailbox_id)
    tx.conn.executemany(
        "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(mailbox_id, uid, modseq) for uid in uids],
    )


# --------------------------------------------------------------------------- accounts


def _create_user(tx: _Transaction, name: str, password_hash: str) -> User:
    conn = tx.conn
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise UserExists(name)
    cursor = conn.execute(
        "INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)",
        (name, password_hash, int(time.time())),
    )
    user_id = cursor.lastrowid
    assert user_id is not None
    for mailbox_name, special_use in DEFAULT_MAILBOXES:
        _insert_mailbox(conn, user_id, mailbox_name, special_use)
    conn.executemany(
        "INSERT INTO subscriptions (user_id, name) VALUES (?, ?)",
        [(user_id, mailbox_name) for mailbox_name, _ in DEFAULT_MAILBOXES],
    )
    return User(id=user_id, name=name, password_hash=password_hash)


_USER_BY_NAME = f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?"


def _get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(_USER_BY_NAME, (name,)).fetchone()
    return None if row is None else _user(row)


def _list_users(conn: sqlite3.Connection) -> list[User]:
    return [_user(row) for row in conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")]


def _set_password(tx: _Transaction, name: str, password_hash: str) -> None:
    cursor = tx.conn.execute(
        "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
    )
    if cursor.rowcount == 0:
        raise UserNotFound(name)


def _delete_user(tx: _Transaction, name: str) -> None:
    conn = tx.conn
    user_id = _require_user_id(conn, name)
    mailbox_ids = [
        mailbox_id
        for (mailbox_id,) in conn.execute("SELECT id FROM mailboxes WHERE user_id = ?", (user_id,))
    ]
    content_ids = _content_ids_of_mailboxes(conn, mailbox_ids)
    # Cascades to mailboxes, their messages and expunge records, and subscriptions.
    conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    _delete_orphan_contents(conn, content_ids)
    tx.changed_mailboxes.update(mailbox_ids)


# --------------------------------------------------------------------------- mailboxes


def _list_mailboxes(conn: sqlite3.Connection, user_id: int) -> list[Mailbox]:
    rows = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = ? ORDER BY name", (user_id,)
    )
    return [_mailbox(row) for row in rows]


def _create_mailbox(
    tx: _Transaction, user_id: int, name: str, special_use: tuple[str, ...]
) -> Mailbox:
    conn = tx.conn
    _check_name(name)
    existing = _mailbox_by_name(conn, user_id, name)
    if existing is not None and existing.selectable:
        raise MailboxExists(name)
    if existing is None:
        _create_missing_superiors(conn, user_id, name)
        mailbox_id = _insert_mailbox(conn, user_id, name, special_use)
    else:
        # A \Noselect placeholder comes back as a new incarnation: fresh
        # UIDVALIDITY, so expunge records of the old one mean nothing any more.
        mailbox_id = existing.id
        conn.execute(
            "UPDATE mailboxes SET selectable = 1, uidvalidity = ?, special_use = ?,"
            " object_id = ? WHERE id = ?",
            (
                _next_uidvalidity(conn),
                " ".join(special_use),
                _next_id(conn, "last_mailbox_object_id", 1),
                mailbox_id,
            ),
        )
        conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
        tx.changed_mailboxes.add(mailbox_id)
    return _mailbox_by_id(conn, mailbox_id)


def _delete_mailbox(tx: _Transaction, user_id: int, name: str) -> None:
    conn = tx.conn
    if name == INBOX:
        raise StorageError("INBOX cannot be deleted")  # RFC 9051 section 6.3.5
    mailbox = _mailbox_by_name(conn, user_id, name)
    if mailbox is None:
        raise MailboxNotFound(name)
    has_inferiors = bool(_inferior_mailboxes(conn, user_id, name))
    if has_inferiors and not mailbox.selectable:
        raise MailboxHasChildren(name)
    content_ids = _content_ids_of_mailboxes(conn, [mailbox.id])
    if has_inferiors:
        uids = [
            uid
            for (uid,) in conn.execute(
                "DELETE FROM messages WHERE mailbox_id = ? RETURNING uid", (mailbox.id,)
            )
        ]
        _record_expunged(tx, mailbox.id, uids)
        conn.execute(
            "UPDATE mailboxes SET selectable = 0, special_use = '' WHERE id = ?", (mailbox.id,)
        )
    else:
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox.id,))
        tx.changed_mailboxes.add(mailbox.id)
    _delete_orphan_contents(conn, content_ids)


def _rename_mailbox(tx: _Transaction, user_id: int, old: str, new: str) -> None:
    conn = tx.conn
    _check_name(new)
    mailbox = _mailbox_by_name(conn, user_id, old)
    if mailbox is None:
        raise MailboxNotFound(old)
    if _mailbox_by_name(conn, user_id, new) is not None:
        raise MailboxExists(new)
    if old == INBOX:
        _rename_inbox(tx, mailbox, new)
        return
    if new.startswith(old + SEPARATOR):
        raise StorageError(f"cannot rename {old!r} into its own inferior {new!r}")
    renamed = [mailbox, *_inferior_mailboxes(conn, user_id, old)]
    new_names = {box.id: new + box.name[len(old) :] for box in renamed}
    taken = conn.execute(
        "SELECT name FROM mailboxes WHERE user_id = ? AND name IN (SELECT value FROM json_each(?))",
        (user_id, json.dumps(list(new_names.values()))),
    ).fetchone()
    if taken is not None:
        raise MailboxExists(taken[0])
    conn.executemany(
        "UPDATE mailboxes SET name = ?, uidvalidity = ? WHERE id = ?",
        [(new_names[box.id], _next_uidvalidity(conn), box.id) for box in renamed],
    )
    _create_missing_superiors(conn, user_id, new)
    subscribed = _subscriptions(conn, user_id)
    moved = [(box.name, new_names[box.id]) for box in renamed if box.name in subscribed]
    conn.executemany(
        "UPDATE subscriptions SET name = ? WHERE user_id = ? AND name = ?",
        [(new_name, user_id, old_name) for old_name, new_name in moved],
    )
    tx.changed_mailboxes.update(box.id for box in renamed)


def _rename_inbox(tx: _Transaction, inbox: Mailbox, new: str) -> None:
    """RFC 9051 section 6.3.6: the messages move to a new mailbox *new*; INBOX
    stays, empty, with its inferiors.  The messages keep their UIDs: the new
    mailbox continues INBOX's UID sequence under its own UIDVALIDITY."""
    conn = tx.conn
    _create_missing_superiors(conn, inbox.user_id, new)
    target_id = _insert_mailbox(conn, inbox.user_id, new)
    conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (inbox.uidnext, target_id))
    modseq = tx.new_modseq(target_id)
    uids = [
        uid
        for (uid,) in conn.execute(
            "UPDATE messages SET mailbox_id = ?, modseq = ? WHERE mailbox_id = ? RETURNING uid",
            (target_id, modseq, inbox.id),
        )
    ]
    _record_expunged(tx, inbox.id, uids)


def _subscriptions(conn: sqlite3.Connection, user_id: int) -> set[str]:
    rows = conn.execute("SELECT name FROM subscriptions WHERE user_id = ?", (user_id,))
    return {name for (name,) in rows}


def _subscribe(tx: _Transaction, user_id: int, name: str) -> None:
    tx.conn.execute(
        "INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?, ?)", (user_id, name)
    )


def _unsubscribe(tx: _Transaction, user_id: int, name: str) -> None:
    tx.conn.execute("DELETE FROM subscriptions WHERE user_id = ? AND name = ?", (user_id, name))


def _mailbox_counts(conn: sqlite3.Connection, mailbox_id: int) -> MailboxCounts:
    mailbox = _mailbox_by_id(conn, mailbox_id)
    messages, recent, unseen, deleted, size, deleted_size = conn.execute(
        "SELECT count(*), coalesce(sum(recent), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Deleted ') > 0), 0),"
        " coalesce(sum(size), 0),"
        " coalesce(sum(iif(instr(' ' || flags || ' ', ' \\Deleted ') > 0, size, 0)), 0)"
        " FROM messages WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    return MailboxCounts(
        messages=messages,
        recent=recent,
        unseen=unseen,
        deleted=deleted,
        size=size,
        uidnext=mailbox.uidnext,
        uidvalidity=mailbox.uidvalidity,
        highest_modseq=mailbox.highest_modseq,
        deleted_size=deleted_size,
        object_id=mailbox.object_id,
    )


# --------------------------------------------------------------------------- messages


def _append(
    tx: _Transaction, mailbox_id: int, messages: list[NewMessage], quota_defaults: QuotaLimits
) -> CopyResult:
    conn = tx.conn
    mailbox = _selectable_mailbox(conn, mailbox_id)
    if not messages:
        return CopyResult(mailbox.uidvalidity, (), ())
    sqlite_quota.check(
        conn,
        mailbox.user_id,
        quota_defaults,
        added_octets=sum(len(message.raw) for message in messages),
        added_messages=len(messages),
    )
    stamps = [epoch_and_offset(message.internal_date) for message in messages]
    # Content ids are EMAILIDs (RFC 8474 section 5.1), so they come from a counter
    # that never hands out an id twice.
    first_content_id = _next_id(conn, "last_content_id", len(messages))
    content_ids = range(first_content_id, first_content_id + len(messages))
    saved = int(time.time())
    uids = range(mailbox.uidnext, mailbox.uidnext + len(messages))
    conn.executemany(
        "INSERT INTO contents (id, body_text, header_text, metadata, raw) VALUES (?, ?, ?, ?, ?)",
        [
            (content_id, m.body_text.casefold(), m.header_text.casefold(), m.metadata, m.raw)
            for content_id, m in zip(content_ids, messages, strict=True)
        ],
    )
    conn.executemany(
        "INSERT INTO content_headers (content_id, header) VALUES (?, ?)",
        [
            (content_id, _header_block(m.raw))
            for content_id, m in zip(content_ids, messages, strict=True)
        ],
    )
    sqlite_wire.insert(
        conn, zip(content_ids, (m.wire or m.metadata for m in messages), strict=True)
    )
    modseq = tx.new_modseq(mailbox_id)
    conn.executemany(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, tz_offset,"
        " size, recent, content_id, save_date) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
        [
            (
                mailbox_id,
                uid,
                modseq,
                serialize_flags(normalize_flags(message.flags)),
                epoch,
                tz_offset,
                len(message.raw),
                content_id,
                saved,
            )
            for uid, message, (epoch, tz_offset), content_id in zip(
                uids, messages, stamps, content_ids, strict=True
            )
        ],
    )
    conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uids.stop, mailbox_id))
    return CopyResult(mailbox.uidvalidity, (), tuple(uids))


def _append_to(
    tx: _Transaction,
    user_id: int,
    name: str,
    fallback: str | None,
    account_must_be_enabled: bool,
    quota_defaults: QuotaLimits,
    messages: Sequence[NewMessage],
) -> CopyResult:
    """Storage.append_to inside the write transaction: the name is resolved in the
    snapshot the append commits in, so a mailbox deleted meanwhile cannot be missed."""
    conn = tx.conn
    if account_must_be_enabled:
        row = conn.execute("SELECT disabled FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None or row[0]:
            raise UserNotFound(f"no enabled account with id {user_id}")
    mailbox = _mailbox_by_name(conn, user_id, name)
    if (mailbox is None or not mailbox.selectable) and fallback is not None:
        mailbox = _mailbox_by_name(conn, user_id, fallback)
    if mailbox is None or not mailbox.selectable:
        raise MailboxNotFound(f"mailbox {name!r} does not exist")
    return _append(tx, mailbox.id, list(messages), quota_defaults)


def _header_block(raw: bytes) -> bytes:
    """The top-level header with the empty line that ends it (RFC 5322 section 2.1), as
    the MIME parser delimits it (mailhaven.mime.structure: the root's body_start)."""
    if raw.startswith((b"\n", b"\r\n")):
        return raw[: raw.index(b"\n") + 1]
    blank = _EMPTY_LINE.search(raw)
    return raw if blank is None else raw[: blank.end()]


_EMPTY_LINE = re.compile(rb"\n\r?\n")


def _message_summaries(conn: sqlite3.Connection, mailbox_id: int) -> list[MessageSummary]:
    _mailbox_by_id(conn, mailbox_id)
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
        (mailbox_id,),
    )
    # The loop of _summary, inlined: SELECT of a large mailbox spends most of its time
    # here, and per-row calls and keyword arguments cost a third of it.
    summary, flags_of, zone, from_epoch = MessageSummary, parse_flags, _zone, _FROM_EPOCH
    return [
        summary(uid, flags_of(flags), modseq, from_epoch(epoch, zone(tz_offset)), size)
        for uid, flags, modseq, epoch, tz_offset, size in rows
    ]


def _log_failed_column_store(stored: asyncio.Future[None]) -> None:
    # Nothing is lost: the next process reads the mailbox in full, as without it.
    if not stored.cancelled() and stored.exception() is not None:
        log.warning("storing a mailbox's columns failed", exc_info=stored.exception())


class _ColumnRead(NamedTuple):
    snapshot: ColumnSnapshot
    uidvalidity: int
    worth_storing: bool  # in the database, for the first SELECT of the next process


def _column_snapshot(conn: sqlite3.Connection, mailbox_id: int, cache: ColumnCache) -> _ColumnRead:
    """The mailbox's columns, from the process's cache or else the snapshot stored in
    the database (see :mod:`mailhaven.storage.stored_columns`) brought up to date, else
    read in full."""
    mailbox = _mailbox_by_id(conn, mailbox_id)
    uidvalidity, modseq = mailbox.uidvalidity, mailbox.highest_modseq
    try:
        cached = cache.get(mailbox_id, uidvalidity, modseq)
    except KeyError:
        cached = None
    if cached is not None and (caught_up := _caught_up(conn, mailbox_id, cached, modseq)):
        cache.put(mailbox_id, uidvalidity, caught_up[0])
        return _ColumnRead(caught_up[0], uidvalidity, False)
    stored = stored_columns.load(conn, mailbox_id, uidvalidity, modseq)
    if stored is not None and (caught_up := _caught_up(conn, mailbox_id, stored, modseq)):
        snapshot, changes = caught_up
        cache.put(mailbox_id, uidvalidity, snapshot)
        store_again = changes >= stored_columns.STORE_AGAIN_AFTER_CHANGES
        return _ColumnRead(snapshot, uidvalidity, store_again)
    snapshot = ColumnSnapshot(_all_columns(conn, mailbox_id), modseq)
    cache.put(mailbox_id, uidvalidity, snapshot)
    return _ColumnRead(snapshot, uidvalidity, stored_columns.worth_storing(snapshot))


def _caught_up(
    conn: sqlite3.Connection, mailbox_id: int, snapshot: ColumnSnapshot, modseq: int
) -> tuple[ColumnSnapshot, int] | None:
    """*snapshot* brought to *modseq*, with the number of changes applied; None when
    they are too many to apply one by one."""
    if snapshot.modseq == modseq:
        return snapshot, 0
    changed = conn.execute(_CHANGED_SINCE, (mailbox_id, snapshot.modseq)).fetchall()
    expunged = [uid for (uid,) in conn.execute(_EXPUNGED_SINCE, (mailbox_id, snapshot.modseq))]
    result = column_cache.updated(snapshot, changed, expunged, parse_flags, modseq)
    return None if result is None else (result, len(changed) + len(expunged))


def _all_columns(conn: sqlite3.Connection, mailbox_id: int) -> MessageColumns:
    uids, modseqs, dates, zones, sizes = array("I"), array("q"), array("q"), array("i"), array("q")
    flag_texts: list[str] = []
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
        (mailbox_id,),
    )
    # Each row goes into the arrays as it arrives and is freed at once: holding every
    # row (fetchall) would leave 100,000 tuples alive at a time, enough for two full
    # runs of the garbage collector over the whole process (100-300 ms at 100,000
    # messages), and would cost a third more CPU.
    add_uid, add_flags, add_modseq = uids.append, flag_texts.append, modseqs.append
    add_date, add_zone, add_size = dates.append, zones.append, sizes.append
    for uid, flag_text, modseq, date, zone, size in rows:
        add_uid(uid)
        add_flags(flag_text)
        add_modseq(modseq)
        add_date(date)
        add_zone(zone)
        add_size(size)
    # Each distinct flag text is parsed once, and messages share the result.
    flag_sets = {text: parse_flags(text) for text in set(flag_texts)}
    flags = tuple(map(flag_sets.__getitem__, flag_texts))
    return MessageColumns(uids, flags, modseqs, dates, zones, sizes)


# Without statistics the planner prefers the primary key, which visits every message.
_CLAIM_RECENT = (
    "UPDATE messages INDEXED BY messages_recent SET recent = 0"
    " WHERE mailbox_id = ? AND recent = 1 RETURNING uid"
)


def _claim_recent(tx: _Transaction, mailbox_id: int) -> set[int]:
    # \Recent is not a flag change (RFC 7162 does not track it): no new modseq.
    _mailbox_by_id(tx.conn, mailbox_id)
    rows = tx.conn.execute(_CLAIM_RECENT, (mailbox_id,))
    return {uid for (uid,) in rows}


def _claim_recent_covering(tx: _Transaction, mailbox_id: int) -> Claim:
    """The claimed UIDs and the modseq up to which every message was claimed."""
    mailbox = _mailbox_by_id(tx.conn, mailbox_id)
    rows = tx.conn.execute(_CLAIM_RECENT, (mailbox_id,))
    return {uid for (uid,) in rows}, mailbox.highest_modseq


# Every command of every session with a mailbox selected asks what changed.  Without
# statistics SQLite would rather walk the primary key, in UID order, through the whole
# mailbox (1.4 ms at 10,000 messages) than sort the few changes the modseq index finds.
_CHANGED_SINCE = (
    f"SELECT {_SUMMARY_COLUMNS} FROM messages INDEXED BY messages_by_modseq"
    " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid"
)
_EXPUNGED_SINCE = (
    "SELECT uid FROM expunged INDEXED BY expunged_by_modseq"
    " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid"
)


def _changes_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> Changes:
    mailbox = _mailbox_by_id(conn, mailbox_id)
    if mailbox.highest_modseq <= modseq:
        # Every change (flags, new messages, expunges) takes a new modseq of the
        # mailbox: nothing happened.  Sessions ask this after every command.
        return Changes(mailbox.highest_modseq, mailbox.uidnext, (), ())
    changed = conn.execute(_CHANGED_SINCE, (mailbox_id, modseq))
    expunged = conn.execute(_EXPUNGED_SINCE, (mailbox_id, modseq))
    return Changes(
        highest_modseq=mailbox.highest_modseq,
        uidnext=mailbox.uidnext,
        changed=tuple(_summary(row) for row in changed),
        expunged=tuple(uid for (uid,) in expunged),
    )


def _vanished_since(
    conn: sqlite3.Connection, mailbox_id: int, modseq: int, uid_ranges: list[tuple[int, int]]
) -> list[int]:
    """The index on (mailbox_id, modseq) finds the expunges; the ranges, which a
    client may send by the thousand, are then matched by bisection."""
    _mailbox_by_id(conn, mailbox_id)
    rows = conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? AND uid BETWEEN ? AND ?"
        " ORDER BY uid",
        (mailbox_id, modseq, uid_ranges[0][0], uid_ranges[-1][1]),
    )
    starts = [low for low, _ in uid_ranges]
    found = []
    for (uid,) in rows:
        index = bisect.bisect_right(starts, uid) - 1
        if index >= 0 and uid <= uid_ranges[index][1]:
            found.append(uid)
    return found


def _store_flags(
    tx: _Transaction,
    mailbox_id: int,
    uids: list[int],
    mode: str,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> StoreResult:
    conn = tx.conn
    _selectable_mailbox(conn, mailbox_id)
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM messages"
        " WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
        (mailbox_id, _json_ids(uids)),
    ).fetchall()
    refused: list[int] = []
    updates: list[tuple[MessageSummary, frozenset[str]]] = []
    applied = store_applier(mode, flags)
    for summary in map(_summary, rows):
        if unchanged_since is not None and summary.modseq > unchanged_since:
            refused.append(summary.uid)
            continue
        new_flags = applied(summary.flags)
        if new_flags != summary.flags:
            updates.append((summary, new_flags))
    if not updates:
        return StoreResult((), tuple(refused))
    modseq = tx.new_modseq(mailbox_id)
    # Each distinct flag set is serialised once, like the change itself.
    texts = {new: serialize_flags(new) for new in {new for _, new in updates}}
    conn.executemany(
        "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
        [(texts[new], modseq, mailbox_id, old.uid) for old, new in updates],
    )
    changed = tuple(
        MessageSummary(
            uid=old.uid,
            flags=new,
            modseq=modseq,
            internal_date=old.internal_date,
            size=old.size,
        )
        for old, new in updates
    )
    return StoreResult(changed, tuple(refused))


def _copy(
    tx: _Transaction,
    source_id: int,
    uids: list[int],
    destination_id: int,
    remove_source: bool,
    quota_defaults: QuotaLimits,
) -> CopyResult:
    """COPY (RFC 9051 section 6.4.7) or, with *remove_source*, MOVE (RFC 6851):
    copies keep flags and internal date, share the stored bytes and are \\Recent.
    Copies count against the quota like new messages (RFC 9208 section 4.3.1); a
    MOVE within one account does not change its usage, so it is never refused."""
    conn = tx.conn
    source = _selectable_mailbox(conn, source_id)
    destination = _selectable_mailbox(conn, destination_id)
    sources = conn.execute(
        "SELECT uid, flags, internal_date, tz_offset, size, content_id FROM messages"
        " WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
        (source_id, _json_ids(uids)),
    ).fetchall()
    if not sources:
        return CopyResult(destination.uidvalidity, (), ())
    if not (remove_source and source.user_id == destination.user_id):
        sqlite_quota.check(
            conn,
            destination.user_id,
            quota_defaults,
            added_octets=sum(row[4] for row in sources),
            added_messages=len(sources),
        )
    source_uids = tuple(row[0] for row in sources)
    new_uids = range(destination.uidnext, destination.uidnext + len(sources))
    modseq = tx.new_modseq(destination_id)
    saved = int(time.time())  # RFC 8514 section 3: copies get a new save date
    conn.executemany(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, tz_offset,"
        " size, recent, content_id, save_date) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
        [
            (destination_id, new_uid, modseq, *row[1:], saved)
            for new_uid, row in zip(new_uids, sources, strict=True)
        ],
    )
    conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (new_uids.stop, destination_id))
    if remove_source:
        conn.execute(
            "DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
            (source_id, _json_ids(source_uids)),
        )
        _record_expunged(tx, source_id, source_uids)
    return CopyResult(destination.uidvalidity, source_uids, tuple(new_uids))


def _expunge(tx: _Transaction, mailbox_id: int, uids: list[int] | None) -> list[int]:
    conn = tx.conn
    _selectable_mailbox(conn, mailbox_id)
    deleted = " AND instr(' ' || flags || ' ', ' \\Deleted ') > 0"
    if uids is None:
        rows = conn.execute(
            f"SELECT uid, content_id FROM messages WHERE mailbox_id = ?{deleted} ORDER BY uid",
            (mailbox_id,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT uid, content_id FROM messages WHERE mailbox_id = ?"
            f" AND uid IN (SELECT value FROM json_each(?)){deleted} ORDER BY uid",
            (mailbox_id, _json_ids(uids)),
        ).fetchall()
    if not rows:
        return []
    expunged = [uid for uid, _ in rows]
    conn.execute(
        "DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
        (mailbox_id, _json_ids(expunged)),
    )
    _record_expunged(tx, mailbox_id, expunged)
    _delete_orphan_contents(conn, {content_id for _, content_id in rows})
    return expunged


def _fetch_content(
    conn: sqlite3.Connection, mailbox_id: int, uids: list[int], raw: bool, metadata: bool
) -> list[MessageContent]:
    _mailbox_by_id(conn, mailbox_id)
    columns = f"m.uid, {'c.raw' if raw else 'NULL'}, {'c.metadata' if metadata else 'NULL'}"
    rows = conn.execute(
        f"SELECT {columns} FROM messages AS m JOIN contents AS c ON c.id = m.content_id"
        " WHERE m.mailbox_id = ? AND m.uid IN (SELECT value FROM json_each(?))",
        (mailbox_id, _json_ids(uids)),
    )
    found = {uid: MessageContent(uid, raw_bytes, meta) for uid, raw_bytes, meta in rows}
    return [found[uid] for uid in uids if uid in found]


def _fetch_headers(conn: sqlite3.Connection, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
    _mailbox_by_id(conn, mailbox_id)
    rows = conn.execute(
        "SELECT m.uid, h.header FROM messages AS m"
        " JOIN content_headers AS h ON h.content_id = m.content_id"
        " WHERE m.mailbox_id = ? AND m.uid IN (SELECT value FROM json_each(?))",
        (mailbox_id, _json_ids(uids)),
    )
    return dict(rows.fetchall())


def _fetch_wire(
    conn: sqlite3.Connection, mailbox_id: int, uids: list[int]
) -> dict[int, StoredWire]:
    _mailbox_by_id(conn, mailbox_id)
    return sqlite_wire.fetch(conn, mailbox_id, _json_ids(uids))


# (whether the mailbox exists, whether a message of it holds \Recent) in one statement,
# so that the event loop's thread can answer it (see storage.loop_reads).
_HAS_RECENT = (
    "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE id = ?),"
    " EXISTS (SELECT 1 FROM messages INDEXED BY messages_recent"
    " WHERE mailbox_id = ? AND recent = 1)"
)


def _has_recent(conn: sqlite3.Connection, mailbox_id: int) -> bool:
    exists, has_recent = conn.execute(_HAS_RECENT, (mailbox_id, mailbox_id)).fetchone()
    if not exists:
        raise MailboxNotFound(f"no mailbox with id {mailbox_id}")
    return bool(has_recent)


def _object_data(
    conn: sqlite3.Connection, mailbox_id: int, uids: list[int]
) -> list[MessageObjectData]:
    _mailbox_by_id(conn, mailbox_id)
    rows = conn.execute(
        "SELECT uid, content_id, save_date FROM messages"
        " WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
        (mailbox_id, _json_ids(uids)),
    )
    found = {
        uid: MessageObjectData(uid, content_id, _datetime(saved, 0))
        for uid, content_id, saved in rows
    }
    return [found[uid] for uid in uids if uid in found]


def _set_quota(
    tx: _Transaction, user_id: int, limits: QuotaLimits | None, defaults: QuotaLimits
) -> QuotaUsage:
    if tx.conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
        raise UserNotFound(f"no user with id {user_id}")
    sqlite_quota.set_limits(tx.conn, user_id, limits)
    return sqlite_quota.usage(tx.conn, user_id, defaults)


def _search_text(
    conn: sqlite3.Connection,
    mailbox_id: int,
    needle: str,
    headers: bool,
    fts: bool,
    content_uids: ContentUidsCache,
) -> TextHits:
    """Exact casefolded substring match.  With the trigram index and a needle of at
    least three characters the index answers alone: a phrase query checks that the
    needle's trigrams stand at consecutive positions (the index keeps positions,
    ``detail = full``), and the tokenizer emits one trigram per character position
    of the stored text without folding it (``case_sensitive 1``; the text and the
    needle are both casefolded already), so a match is exactly a substring.  That
    spares reading every hit's text again, which was most of the cost of a common
    word.  Shorter needles have no trigram to look up: they scan the text."""
    mailbox = _mailbox_by_id(conn, mailbox_id)
    if fts and len(needle) >= TRIGRAM:
        # The index's rowids are content ids; the mailbox's map, read in the same
        # transaction, turns them into UIDs (see mailhaven.storage.text_hits).
        phrase = _fts_phrase(needle, headers=headers)
        return text_hits.search(conn, mailbox, phrase, content_uids, needle, headers)
    uids = _uid_set(
        conn,
        "SELECT group_concat(m.uid) FROM messages AS m JOIN contents AS c"
        f" ON c.id = m.content_id WHERE m.mailbox_id = :mailbox AND {text_hits.SUBSTRING_MATCH}",
        {"mailbox": mailbox_id, "needle": needle, "headers": headers},
    )
    return TextHits(mailbox.highest_modseq, sorted(uids))


def _uid_set(conn: sqlite3.Connection, sql: str, parameters: Any) -> set[int]:
    """The UIDs *sql* selects as one ``group_concat(uid)``: a word in a third of a
    100,000-message mailbox hands Python one string rather than 33,334 rows (a fifth
    of the search's CPU), and the whole query runs in one step without the GIL."""
    (text,) = conn.execute(sql, parameters).fetchone()
    return set(map(int, text.split(","))) if text else set()


_DAY_SECONDS = 86_400
_EPOCH_DAY = datetime.date(1970, 1, 1)


def _search_dates(
    conn: sqlite3.Connection,
    mailbox_id: int,
    first: datetime.date | None,
    end: datetime.date | None,
    sent: bool,
) -> set[int]:
    """UIDs whose internal date (or with *sent*, Date header) falls on a day in
    [*first*, *end*), each date taken in its own zone (RFC 9051 section 6.4.4)."""
    _mailbox_by_id(conn, mailbox_id)
    if first is not None and end is not None and first >= end:
        return set()
    if sent:
        # ISO dates (four-digit years) order as text; a message without a valid
        # Date header has a NULL day, inside no range.
        bounds, values = _day_bounds("day", first, end, datetime.date.isoformat)
        query = (
            "SELECT uid FROM messages WHERE mailbox_id = ? AND content_id IN"
            f" (SELECT content_id FROM sent_days WHERE day IS NOT NULL{bounds})"
        )
    else:
        # The expression must read exactly as in messages_by_local_date to use it.
        bounds, values = _day_bounds("internal_date + tz_offset", first, end, _local_seconds)
        query = f"SELECT uid FROM messages WHERE mailbox_id = ?{bounds}"
    return {uid for (uid,) in conn.execute(query, (mailbox_id, *values))}


# The root part's header_start and body_start: the metadata JSON is MessageMetadata's
# list with the root part at index 5, a Part.to_tuple() list starting with those two.
# Cutting the header in SQL spares decoding every candidate's metadata in Python.
def _local_seconds(day: datetime.date) -> int:
    """Seconds from the epoch to the start of *day*, in a message's own local time."""
    return (day - _EPOCH_DAY).days * _DAY_SECONDS


def _day_bounds(
    column: str,
    first: datetime.date | None,
    end: datetime.date | None,
    convert: Callable[[datetime.date], object],
) -> tuple[str, list[object]]:
    """SQL conditions (each starting with AND) bounding *column* to [first, end),
    and their parameters."""
    conditions, values = "", []
    if first is not None:
        conditions += f" AND {column} >= ?"
        values.append(convert(first))
    if end is not None:
        conditions += f" AND {column} < ?"
        values.append(convert(end))
    return conditions, values


# --------------------------------------------------------------------------- mail flow (import)


def _append_imported(
    tx: _Transaction,
    mailbox_id: int,
    messages: list[NewMessage],
    origin: ImportOrigin,
    quota_defaults: QuotaLimits,
) -> CopyResult:
    if len(origin.uids) != len(messages):
        raise ValueError("one source UID per imported message")
    result = _append(tx, mailbox_id, messages, quota_defaults)
    (user_id,) = tx.conn.execute(
        "SELECT user_id FROM mailboxes WHERE id = ?", (mailbox_id,)
    ).fetchone()
    tx.conn.executemany(
        "INSERT OR IGNORE INTO imported (user_id, source, folder, uidvalidity, uid)"
        " VALUES (?, ?, ?, ?, ?)",
        [(user_id, origin.source, origin.folder, origin.uidvalidity, uid) for uid in origin.uids],
    )
    return result


def _imported_uids(
    conn: sqlite3.Connection, user_id: int, source: str, folder: str, uidvalidity: int
) -> set[int]:
    rows = conn.execute(
        "SELECT uid FROM imported WHERE user_id = ? AND source = ? AND folder = ?"
        " AND uidvalidity = ?",
        (user_id, source, folder, uidvalidity),
    )
    return {uid for (uid,) in rows}


def _append_with_uids(
    tx: _Transaction,
    mailbox_id: int,
    messages: list[NewMessage],
    uids: list[int],
    uidnext_at_least: int,
    quota_defaults: QuotaLimits,
) -> CopyResult:
    mailbox = _selectable_mailbox(tx.conn, mailbox_id)
    if len(uids) != len(messages):
        raise ValueError("one UID per message")
    if uids and (uids[0] < mailbox.uidnext or any(a >= b for a, b in itertools.pairwise(uids))):
        raise StorageError(f"UIDs must ascend from UIDNEXT {mailbox.uidnext} of {mailbox.name!r}")
    # _append numbers from UIDNEXT; appending one message at a time with UIDNEXT
    # set to its UID first keeps every UID, gaps included, in one transaction.
    for message, uid in zip(messages, uids, strict=True):
        tx.conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uid, mailbox_id))
        _append(tx, mailbox_id, [message], quota_defaults)
    tx.conn.execute(
        "UPDATE mailboxes SET uidnext = max(uidnext, ?) WHERE id = ?",
        (uidnext_at_least, mailbox_id),
    )
    tx.changed_mailboxes.add(mailbox_id)
    return CopyResult(mailbox.uidvalidity, (), tuple(uids))


def _adopt_uidvalidity(tx: _Transaction, mailbox_id: int, uidvalidity: int) -> None:
    conn = tx.conn
    mailbox = _selectable_mailbox(conn, mailbox_id)
    if mailbox.uidnext != 1:
        raise StorageError(f"mailbox {mailbox.name!r} has held messages; its UIDs stay")
    if not 1 <= uidvalidity <= MAX_UIDVALIDITY:
        raise StorageError(f"invalid UIDVALIDITY {uidvalidity}")
    conn.execute("UPDATE mailboxes SET uidvalidity = ? WHERE id = ?", (uidvalidity, mailbox_id))
    # Keep the database-wide counter ahead, so a later mailbox never repeats it.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        (uidvalidity,),
    )
    tx.changed_mailboxes.add(mailbox_id)
