"""ENVELOPE, BODY and BODYSTRUCTURE of each stored content as FETCH sends them
(RFC 9051 section 7.5.2), in a table of their own.

A client's first sync of a mailbox (``UID FETCH 1:* (... ENVELOPE BODYSTRUCTURE)``)
needs only these values.  Read from the metadata JSON, every message cost a JSON decode
and a rebuilt part tree, and reaching ``contents.metadata`` made SQLite walk the
overflow pages of the text columns stored before it.  Here they are three short blobs
per content, read in one query per batch and sent as they are.

The values are those of the stored metadata (:class:`MessageMetadata` ``envelope``,
``body`` and ``bodystructure``, computed once by :func:`mailhaven.mime.analyze`), so
the metadata stays the one source: rows are written from it at delivery and by the
migration below.  The encoding of these items does not depend on the session (FETCH
sends the stored bytes whatever the client enabled), so one row serves every client.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from mailhaven.mime import MessageMetadata
from mailhaven.storage.interface import StoredWire

# The rows of contents stored before this table are filled by backfill, run by the
# migration in the same transaction (the metadata is decoded in Python).
MIGRATION = """
CREATE TABLE content_wire (
    content_id INTEGER PRIMARY KEY REFERENCES contents (id) ON DELETE CASCADE,
    envelope BLOB NOT NULL,
    body BLOB NOT NULL,
    bodystructure BLOB NOT NULL
);
"""

_BACKFILL_BATCH = 1000  # contents decoded and inserted at once


def backfill(conn: sqlite3.Connection) -> None:
    """Store the wire items of every content that has none, in batches.  Metadata that
    does not decode gets no row: FETCH then reads the metadata itself, as before."""
    rows = conn.execute(
        "SELECT id, metadata FROM contents"
        " WHERE NOT EXISTS (SELECT 1 FROM content_wire WHERE content_id = contents.id)"
    )
    while batch := rows.fetchmany(_BACKFILL_BATCH):
        insert(conn, batch)


def wire_items(metadata: bytes) -> StoredWire | None:
    """The stored values of *metadata* (``MessageMetadata.to_bytes()``), None when it
    does not decode (FETCH of these items then fails on the metadata as it did)."""
    try:
        decoded = MessageMetadata.from_bytes(metadata)
    except (ValueError, TypeError, KeyError, IndexError, UnicodeError):
        return None
    return StoredWire(decoded.envelope, decoded.body, decoded.bodystructure)


def insert(conn: sqlite3.Connection, contents: Iterable[tuple[int, bytes | StoredWire]]) -> None:
    """Store the wire items of new contents, given as (content id, metadata) or, when
    the caller has them decoded already, (content id, items)."""
    decoded = [
        (content_id, source if isinstance(source, StoredWire) else wire_items(source))
        for content_id, source in contents
    ]
    conn.executemany(
        "INSERT INTO content_wire (content_id, envelope, body, bodystructure) VALUES (?, ?, ?, ?)",
        [(content_id, *items) for content_id, items in decoded if items is not None],
    )


def fetch(conn: sqlite3.Connection, mailbox_id: int, uids_json: str) -> dict[int, StoredWire]:
    """The stored wire items of the messages of *mailbox_id* whose UIDs are in the JSON
    array *uids_json*; a message without a row (see MIGRATION) is left out."""
    rows = conn.execute(
        "SELECT m.uid, w.envelope, w.body, w.bodystructure FROM messages AS m"
        " JOIN content_wire AS w ON w.content_id = m.content_id"
        " WHERE m.mailbox_id = ? AND m.uid IN (SELECT value FROM json_each(?))",
        (mailbox_id, uids_json),
    )
    return {uid: StoredWire(envelope, body, structure) for uid, envelope, body, structure in rows}
