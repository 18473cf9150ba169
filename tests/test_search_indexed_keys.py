"""SEARCH keys answered by the store's indexes (mailhaven/imap/search.py,
mailhaven/storage/sqlite.py): BODY/TEXT by the trigram index alone, the date keys
(BEFORE/ON/SINCE, SENT*) by the date indexes, over a real IMAP connection."""

from __future__ import annotations

import datetime
import imaplib
from pathlib import Path

import pytest

from mailhaven.codec.commands import SearchKey
from mailhaven.imap.search import matching_uids
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.mailflow.messages import prepare
from mailhaven.mime import analyze
from mailhaven.storage import SqliteStorage
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage.interface import NewMessage
from tests.support import alice_inbox, database_before_step, run_with_storage, selected_inbox_with
from tests.support import search_numbers as search


def _message(date: str | None, subject: str, body: str) -> bytes:
    date_line = f"Date: {date}\r\n" if date is not None else ""
    return (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n{date_line}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


# (internal date as APPEND gives it, raw message)
MESSAGES = [
    # 1: 23:30 on 1 March in its zone is 2 March in UTC
    (
        "01-Mar-2022 23:30:00 -0800",
        _message("Tue, 1 Mar 2022 23:30:00 -0800", "harbor notes", "harbor and borview"),
    ),
    # 2: 00:30 on 2 March in its zone is still 1 March in UTC
    (
        "02-Mar-2022 00:30:00 +0100",
        _message("Wed, 2 Mar 2022 00:30:00 +0100", "Harborview", "nothing here"),
    ),
    # 3: no Date header; an encoded word splits the subject's word in two
    (
        "03-Mar-2022 12:00:00 +0000",
        _message(None, "=?UTF-8?Q?Harbor?= =?UTF-8?Q?view_=C3=9Cber?=", "ÜBERSICHT harborVIEW"),
    ),
    # 4: a Date header that is not a date
    ("10-Mar-2022 12:00:00 +0000", _message("yesterday", "x", "ab")),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with selected_inbox_with(tmp_path_factory.mktemp("indexed"), MESSAGES) as imap:
        yield imap


def search_utf8(imap: imaplib.IMAP4, key: str, needle: str) -> list[int]:
    imap.literal = needle.encode()
    typ, data = imap.search("UTF-8", key)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def test_internal_date_keys_use_each_message_s_own_zone(client):
    assert search(client, "ON", "1-Mar-2022") == [1]
    assert search(client, "ON", "2-Mar-2022") == [2]
    assert search(client, "SINCE", "2-Mar-2022") == [2, 3, 4]
    assert search(client, "BEFORE", "2-Mar-2022") == [1]
    assert search(client, "SINCE", "2-Mar-2022", "BEFORE", "10-Mar-2022") == [2, 3]
    assert search(client, "SINCE", "10-Mar-2022", "BEFORE", "2-Mar-2022") == []
    assert search(client, "ON", "3-Mar-2022", "SINCE", "1-Mar-2022") == [3]


def test_sent_date_keys_use_the_date_header_s_own_zone(client):
    assert search(client, "SENTON", "1-Mar-2022") == [1]
    assert search(client, "SENTON", "2-Mar-2022") == [2]
    assert search(client, "SENTSINCE", "1-Jan-2000") == [1, 2]  # 3, 4: no valid Date
    assert search(client, "SENTBEFORE", "2-Mar-2022") == [1]
    assert search(client, "NOT", "SENTBEFORE", "2-Mar-2022") == [2, 3, 4]


def test_date_keys_combine_with_each_other_and_other_keys(client):
    assert search(client, "OR", "ON", "1-Mar-2022", "SENTON", "2-Mar-2022") == [1, 2]
    assert search(client, "SENTSINCE", "1-Mar-2022", "ON", "2-Mar-2022") == [2]
    assert search(client, "SINCE", "2-Mar-2022", "LARGER", "1") == [2, 3, 4]
    assert search(client, "SINCE", "2-Mar-2022", "NOT", "SUBJECT", "harborview") == [4]
    assert search(client, "SINCE", "1-Mar-2022", "BODY", "harborview") == [3]


def test_text_index_matches_exact_substrings_only(client):
    # Message 1 has every trigram of "harborview" but not the word: no match.
    assert search(client, "BODY", "harborview") == [3]
    assert search(client, "TEXT", "harborview") == [2, 3]
    assert search_utf8(client, "TEXT", "harborview über") == [3]  # across encoded words
    assert search_utf8(client, "BODY", "übersicht") == [3]
    assert search(client, "NOT", "TEXT", "harbor") == [4]
    assert search(client, "OR", "BODY", "borview", "TEXT", "nothing") == [1, 2, 3]


def test_one_and_two_character_needles_scan(client):
    assert search(client, "BODY", "ab") == [4]
    assert search_utf8(client, "BODY", "Ü") == [3]
    assert search(client, "TEXT", "x") == [1, 2, 3, 4]  # the To header of every message


def test_migration_fills_sent_days_of_stored_messages(tmp_path: Path) -> None:
    """Contents stored before the date indexes existed get their sent day too."""
    path = tmp_path / "old.db"
    contents = [(raw, analyze(raw).metadata.to_bytes()) for _, raw in MESSAGES]
    # 1646092800 is midnight UTC on 1 March 2022, stored with offset 0.
    database_before_step(
        path, sqlite_backend._SCHEMA_SEARCH_DATES, contents, mailbox_id=7, internal_date=1646092800
    )

    async def check(storage: SqliteStorage) -> None:
        march_2 = datetime.date(2022, 3, 2)
        assert await storage.search_dates(7, None, march_2, sent=True) == {1}
        assert await storage.search_dates(7, march_2, None, sent=True) == {2}
        assert await storage.search_dates(7, None, march_2, sent=False) == {1, 2, 3, 4}

    run_with_storage(path, check)


def _new_message(body: str) -> NewMessage:
    raw = _message("Tue, 1 Mar 2022 10:00:00 +0000", "s", body)
    return prepare(raw, internal_date=datetime.datetime(2022, 3, 1, tzinfo=datetime.UTC))


@pytest.mark.parametrize("filler", [0, 120])  # many hits (one pass) or few (one by one)
def test_index_answers_leave_out_messages_the_view_does_not_hold(
    tmp_path: Path, filler: int
) -> None:
    async def check(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        found = [_new_message("a needle here")] * 2 + [_new_message("hay")] * filler
        await storage.append(inbox.id, found)
        view = await SelectedMailbox.open(storage, inbox, readonly=True)
        await storage.append(inbox.id, [_new_message("another needle")])  # not in view
        assert await matching_uids(storage, view, SearchKey("BODY", "needle")) == [1, 2]
        on_day = SearchKey("ON", datetime.date(2022, 3, 1))
        assert await matching_uids(storage, view, on_day) == list(view.uids)

    run_with_storage(tmp_path / "test.db", check)
