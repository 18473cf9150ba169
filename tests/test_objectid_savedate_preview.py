"""OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970) over real
sockets, and the schema migration that added them."""

from __future__ import annotations

import datetime
import json
import re
import sqlite3

from mailhaven.mime import analyze
from mailhaven.storage import SqliteStorage
from mailhaven.storage.interface import NewMessage
from mailhaven.storage.sqlite import _SCHEMA_V1
from tests.support import RawClient, run_with_storage

PLAIN = b"From: a@example.org\r\nSubject: hi\r\n\r\nHello   there,\r\n\r\n  how\tare you?\r\n"
HTML_ONLY = (
    b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p {}</style></head><body><p>Caf\xc3\xa9 &amp; <b>cake</b></p></html>\r\n"
)
ATTACHMENT_ONLY = (
    b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nsecret\r\n--b--\r\n"
)


def append(client: RawClient, message: bytes, mailbox: bytes = b"INBOX") -> None:
    lines = client.command(b"A", b"APPEND %s {%d+}\r\n%s" % (mailbox, len(message), message))
    assert lines[-1].startswith(b"A OK"), lines


def code_value(lines: list[bytes], code: bytes) -> bytes:
    for line in lines:
        match = re.search(rb"\[" + code + rb" \(([A-Za-z0-9_-]+)\)\]", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no {code!r} in {lines!r}")


# --------------------------------------------------------------------------- OBJECTID


def test_mailboxid_on_create_select_status_and_list(client):
    created = client.command(b"C", b"CREATE foo")
    foo = code_value(created, b"MAILBOXID")  # RFC 8474 section 4.1
    other = code_value(client.command(b"C", b"CREATE bar"), b"MAILBOXID")
    assert foo != other
    assert code_value(client.command(b"S", b"SELECT foo"), b"MAILBOXID") == foo  # 4.2
    assert code_value(client.command(b"E", b"EXAMINE foo"), b"MAILBOXID") == foo
    status = client.command(b"T", b"STATUS foo (MAILBOXID MESSAGES)")[0]
    assert status == b"* STATUS foo (MAILBOXID (%s) MESSAGES 0)" % foo  # 4.3
    listed = client.command(b"L", b'LIST "" foo RETURN (STATUS (MAILBOXID))')
    assert b"* STATUS foo (MAILBOXID (%s))" % foo in listed
    # RENAME keeps the id; a new mailbox under the old name gets a new one.
    client.command(b"U", b"UNSELECT")
    assert client.command(b"R", b"RENAME foo baz")[-1].startswith(b"R OK")
    assert (
        client.command(b"T", b"STATUS baz (MAILBOXID)")[0] == b"* STATUS baz (MAILBOXID (%s))" % foo
    )
    again = code_value(client.command(b"C", b"CREATE foo"), b"MAILBOXID")
    assert again not in (foo, other)
    # DELETE then CREATE of the newest mailbox must not reuse its id either.
    client.command(b"D", b"DELETE foo")
    assert code_value(client.command(b"C", b"CREATE foo"), b"MAILBOXID") != again


def test_emailid_survives_copy_and_move_and_threadid_is_nil(client):
    append(client, PLAIN)
    client.command(b"S", b"SELECT INBOX")
    fetched = client.command(b"F", b"FETCH 1 (EMAILID THREADID)")[0]
    match = re.fullmatch(rb"\* 1 FETCH \(EMAILID \((M[0-9]+)\) THREADID NIL\)", fetched)
    assert match, fetched
    email_id = match.group(1)
    client.command(b"C", b"COPY 1 Archive")
    client.command(b"M", b"MOVE 1 Trash")
    for mailbox in (b"Archive", b"Trash"):
        client.command(b"S", b"SELECT " + mailbox)
        assert (
            client.command(b"F", b"FETCH 1 (EMAILID)")[0] == b"* 1 FETCH (EMAILID (%s))" % email_id
        )
        found = client.command(b"F", b"SEARCH EMAILID " + email_id)
        assert found[0] == b"* SEARCH 1"
        assert client.command(b"F", b"SEARCH THREADID T1")[0] == b"* SEARCH"  # 5.2: none
    # A new message never gets an EMAILID seen before, even after deletions.
    client.command(b"D", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    client.command(b"E", b"EXPUNGE")
    client.command(b"S", b"SELECT Archive")
    client.command(b"D", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    client.command(b"E", b"EXPUNGE")
    append(client, PLAIN, b"Archive")
    fresh = client.command(b"F", b"FETCH 1 (EMAILID)")[0]
    assert email_id not in fresh


# --------------------------------------------------------------------------- SAVEDATE


def test_savedate_is_the_time_of_saving_not_the_internal_date(client):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    lines = client.command(
        b"A", b'APPEND INBOX "01-Jan-2015 18:50:53 +0100" {%d+}\r\n%s' % (len(PLAIN), PLAIN)
    )
    assert lines[-1].startswith(b"A OK")
    client.command(b"S", b"SELECT INBOX")
    line = client.command(b"F", b"FETCH 1 (SAVEDATE INTERNALDATE)")[0]
    match = re.fullmatch(
        rb'\* 1 FETCH \(SAVEDATE "([^"]+)" INTERNALDATE "01-Jan-2015 [^"]+"\)', line
    )
    assert match, line
    saved = datetime.datetime.strptime(match.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    assert before <= saved <= datetime.datetime.now(datetime.UTC)
    today = saved.strftime("%d-%b-%Y").encode()
    assert client.command(b"F", b"SEARCH SAVEDON " + today)[0] == b"* SEARCH 1"
    assert client.command(b"F", b"SEARCH SAVEDSINCE " + today)[0] == b"* SEARCH 1"
    assert client.command(b"F", b"SEARCH SAVEDBEFORE " + today)[0] == b"* SEARCH"
    assert client.command(b"F", b"SEARCH ON 1-Jan-2015")[0] == b"* SEARCH 1"
    assert client.command(b"F", b"SEARCH SAVEDATESUPPORTED")[0] == b"* SEARCH 1"
    assert client.command(b"F", b"SEARCH SAVEDON 1-Jan-2015")[0] == b"* SEARCH"


# --------------------------------------------------------------------------- PREVIEW


def test_preview_of_plain_html_and_attachment_only_messages(client):
    for message in (PLAIN, HTML_ONLY, ATTACHMENT_ONLY, b"Subject: x\r\n\r\n" + b"word " * 100):
        append(client, message)
    client.command(b"S", b"SELECT INBOX")
    lines = client.command(b"F", b"FETCH 1:4 (PREVIEW)")
    assert lines[0] == b'* 1 FETCH (PREVIEW "Hello there, how are you?")'
    assert lines[1] == b"* 2 FETCH (PREVIEW {12}"  # non-ASCII in a literal for IMAP4rev1
    assert lines[2] == "Café & cake)".encode()
    assert lines[3] == b'* 3 FETCH (PREVIEW "")'  # RFC 8970 3.2: no preview is ""
    long_preview = lines[4]
    assert long_preview.startswith(b'* 4 FETCH (PREVIEW "word word')
    assert len(long_preview) == len(b'* 4 FETCH (PREVIEW "")') + 200  # SHOULD limit: 200
    lazy = client.command(b"F", b"FETCH 1 (PREVIEW (LAZY) UID)")[0]
    assert lazy == b'* 1 FETCH (PREVIEW "Hello there, how are you?" UID 1)'
    assert client.command(b"F", b"FETCH 1 (PREVIEW (SOON))")[-1].startswith(b"F BAD")


def test_capabilities(client):
    capabilities = set(client.command(b"C", b"CAPABILITY")[0].split())
    assert {b"OBJECTID", b"SAVEDATE", b"PREVIEW"} <= capabilities


def test_messages_stored_before_metadata_v2_get_previews_and_sort_values(server, client):
    """Metadata written by the first format has no preview or sort values: FETCH
    computes them from the message, and LAZY may answer NIL instead."""
    analyzed = analyze(PLAIN)
    record = json.loads(analyzed.metadata.to_bytes())
    old_metadata = json.dumps([1, *record[1:6]]).encode()
    user = server.call(server.storage.get_user("alice"))
    inbox = server.call(server.storage.get_mailbox(user.id, "INBOX"))
    old = NewMessage(
        raw=PLAIN,
        flags=frozenset(),
        internal_date=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        metadata=old_metadata,
    )
    server.call(server.storage.append(inbox.id, [old]))
    client.command(b"S", b"SELECT INBOX")
    assert client.command(b"F", b"FETCH 1 (PREVIEW)")[0] == (
        b'* 1 FETCH (PREVIEW "Hello there, how are you?")'
    )
    assert client.command(b"F", b"FETCH 1 (PREVIEW (LAZY))")[0] == b"* 1 FETCH (PREVIEW NIL)"
    assert client.command(b"T", b"THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (1)"
    assert client.command(b"T", b"SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 1"


# --------------------------------------------------------------------------- migration


def test_version_1_database_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V1 + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO users VALUES (1, 'alice', 'x', 1, 0, 0)")
    conn.execute(
        "INSERT INTO mailboxes (id, user_id, name, uidvalidity, uidnext)"
        " VALUES (7, 1, 'INBOX', 5, 2)"
    )
    conn.execute(
        "INSERT INTO contents VALUES (3, '', '', ?, ?)", (analyze(PLAIN).metadata.to_bytes(), PLAIN)
    )
    conn.execute("INSERT INTO messages VALUES (7, 1, 1, '', 1600000000, 0, 10, 0, 3)")
    conn.commit()
    conn.close()

    async def check(storage: SqliteStorage) -> None:
        (inbox,) = await storage.list_mailboxes(1)
        assert inbox.object_id == 7
        (objects,) = await storage.object_data(inbox.id, [1])
        assert objects.email_id == 3
        assert objects.save_date.timestamp() == 1600000000  # the internal date
        created = await storage.create_mailbox(1, "new")
        assert created.object_id == 8
        result = await storage.append(created.id, [_new(PLAIN)])
        (fresh,) = await storage.object_data(created.id, list(result.destination_uids))
        assert fresh.email_id == 4

    run_with_storage(path, check)


def _new(raw: bytes) -> NewMessage:
    return NewMessage(
        raw=raw,
        flags=frozenset(),
        internal_date=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
        metadata=analyze(raw).metadata.to_bytes(),
    )
