"""Column snapshots of large mailboxes kept in the database, for the first SELECT of a
process.

A process keeps the columns SELECT needs in memory (:mod:`mailhaven.storage.column_cache`),
but the first SELECT of a mailbox in a process had to read every message: 130-200 ms at
100,000 messages, after each restart and in each worker process, where Dovecot maps the
index file it keeps on disk.  Here a :class:`~mailhaven.storage.column_cache.ColumnSnapshot`
of a large mailbox is also stored in the database, as one blob: each column's array as
its bytes, and the flag sets once each with a small index per message.  Decoding it
copies memory rather than building a Python object per value.  The stored snapshot is
then brought up to date the way the in-memory cache is (the rows changed since its
modseq and the expunge records, which CONDSTORE keeps anyway: RFC 7162 sections 3.1.1
and 3.2.7), so it need not be written again at every change.

It is written (by the writer thread, in a transaction of its own, see
:mod:`mailhaven.storage.unsynced_writes`) after a full read of a mailbox of at least
:data:`STORE_AT_MESSAGES` messages, and again when the changes applied to it reach
:data:`STORE_AGAIN_AFTER_CHANGES`.  A row is only ever replaced by a later state, and is
removed with its mailbox or when the mailbox's UIDVALIDITY changes (foreign key and
trigger), so a stored snapshot always is its mailbox as it was at its modseq.
"""

from __future__ import annotations

import sqlite3
import struct
import sys
from array import array
from collections.abc import Iterator

from mailhaven.storage.column_cache import ColumnSnapshot
from mailhaven.storage.flags import parse_flags, serialize_flags
from mailhaven.storage.interface import MessageColumns

# Below this a full read costs a few milliseconds: not worth a blob per mailbox.
STORE_AT_MESSAGES = 4096
# Catching up costs a few microseconds per change; past this many, store the result.
STORE_AGAIN_AFTER_CHANGES = 1024

SCHEMA = """
CREATE TABLE column_snapshots (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    uidvalidity INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TRIGGER column_snapshots_new_uidvalidity AFTER UPDATE OF uidvalidity ON mailboxes
BEGIN
    DELETE FROM column_snapshots WHERE mailbox_id = new.id;
END;
"""

# Version 1; message count, distinct flag sets, first unseen index (-1: none),
# length of the flag sets' text.
_HEADER = struct.Struct("<4sIIqI")
_MAGIC = b"MHC1"
# The columns in the order they are stored: typecode and item size as written.
_LAYOUT = (("I", 4), ("q", 8), ("q", 8), ("i", 4), ("q", 8))
_NATIVE_SIZES = all(array(code).itemsize == size for code, size in _LAYOUT)
_SWAP = sys.byteorder != "little"


def encode(snapshot: ColumnSnapshot) -> bytes:
    """The snapshot as stored: header, flag sets, then little-endian arrays."""
    counts = snapshot.flag_counts()
    distinct = list(counts)
    position = {flags: index for index, flags in enumerate(distinct)}
    flag_text = "\n".join(map(serialize_flags, distinct)).encode()
    first_unseen = snapshot.first_unseen()
    header = _HEADER.pack(
        _MAGIC,
        len(snapshot.uids),
        len(distinct),
        -1 if first_unseen is None else first_unseen,
        len(flag_text),
    )
    arrays = (
        array("I", (counts[flags] for flags in distinct)),
        array("I", map(position.__getitem__, snapshot.flags)),
        *_columns_in_layout(snapshot.columns),
    )
    return b"".join([header, flag_text, *map(_little_endian_bytes, arrays)])


def decode(data: bytes, modseq: int) -> ColumnSnapshot | None:
    """The snapshot *data* encodes, at *modseq*; None when it is not in this format
    (another version, or a platform whose array sizes differ)."""
    if not _NATIVE_SIZES or len(data) < _HEADER.size:
        return None
    magic, count, distinct_count, first_unseen, text_length = _HEADER.unpack_from(data)
    offset = _HEADER.size + text_length
    sizes = (distinct_count * 4, count * 4, *(count * size for _, size in _LAYOUT))
    if magic != _MAGIC or len(data) != offset + sum(sizes):
        return None
    text = data[_HEADER.size : offset].decode()
    distinct = [parse_flags(flags) for flags in text.split("\n")] if distinct_count else []
    view = memoryview(data)
    counts, flag_positions, *columns = (
        _array_from(code, view[start : start + size])
        for code, start, size in zip(
            ("I", "I", *(code for code, _ in _LAYOUT)), _offsets(offset, sizes), sizes, strict=True
        )
    )
    flags = tuple(map(distinct.__getitem__, flag_positions))
    uids, modseqs, dates, zones, message_sizes = columns
    return ColumnSnapshot(
        MessageColumns(uids, flags, modseqs, dates, zones, message_sizes),
        modseq,
        dict(zip(distinct, counts, strict=True)),
        None if first_unseen < 0 else first_unseen,
    )


def load(
    conn: sqlite3.Connection, mailbox_id: int, uidvalidity: int, modseq: int
) -> ColumnSnapshot | None:
    """The stored snapshot of the mailbox, if there is one of this incarnation that is
    not from after *modseq* (the caller's read transaction)."""
    row = conn.execute(
        "SELECT modseq, data FROM column_snapshots WHERE mailbox_id = ? AND uidvalidity = ?",
        (mailbox_id, uidvalidity),
    ).fetchone()
    if row is None or row[0] > modseq:
        return None
    return decode(row[1], row[0])


def store(
    conn: sqlite3.Connection, mailbox_id: int, uidvalidity: int, data: bytes, modseq: int
) -> None:
    """Keep *data* (the :func:`encode`d snapshot at *modseq*), inside the caller's
    transaction, unless the mailbox has another UIDVALIDITY by now or a later
    snapshot is stored already."""
    conn.execute(
        "INSERT INTO column_snapshots (mailbox_id, uidvalidity, modseq, data)"
        " SELECT id, uidvalidity, ?, ? FROM mailboxes WHERE id = ? AND uidvalidity = ?"
        " ON CONFLICT (mailbox_id) DO UPDATE SET"
        " uidvalidity = excluded.uidvalidity, modseq = excluded.modseq, data = excluded.data"
        " WHERE excluded.modseq > column_snapshots.modseq",
        (modseq, data, mailbox_id, uidvalidity),
    )


def worth_storing(snapshot: ColumnSnapshot) -> bool:
    """Whether a snapshot read in full should be stored."""
    return len(snapshot.uids) >= STORE_AT_MESSAGES


def _columns_in_layout(columns: MessageColumns) -> tuple[array[int], ...]:
    stored = (columns.uids, columns.modseqs, columns.internal_dates, columns.tz_offsets)
    return tuple(
        value if isinstance(value, array) and value.typecode == code else array(code, value)
        for value, (code, _) in zip((*stored, columns.sizes), _LAYOUT, strict=True)
    )


def _little_endian_bytes(values: array[int]) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _array_from(typecode: str, data: memoryview) -> array[int]:
    values = array(typecode)
    values.frombytes(data)
    if _SWAP:
        values.byteswap()
    return values


def _offsets(start: int, sizes: tuple[int, ...]) -> Iterator[int]:
    for size in sizes:
        yield start
        start += size
