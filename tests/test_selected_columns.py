"""The selected view kept in columns (mailhaven/imap/selected.py) and the SEARCH keys
answered from them (mailhaven/imap/search_columns.py).

* The view must equal the store after every refresh, whatever mix of appends, flag
  changes and expunges happened, and EXPUNGE must number messages as a client that
  applies each response in turn expects (RFC 9051 section 7.5.1).
* A key evaluated over the columns must select exactly the messages the
  message-by-message predicates of mailhaven/imap/search.py select.
* Refreshing after a command must not visit every message of the mailbox.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import sqlite3
from array import array
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhaven.codec import commands as c
from mailhaven.codec.parser import parse_command
from mailhaven.imap import search as search_module
from mailhaven.imap.search_columns import matching_uids_from_columns
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.storage import SqliteStorage, column_cache
from mailhaven.storage import sqlite as storage_sqlite
from mailhaven.storage.interface import Mailbox, MessageColumns, NewMessage, epoch_and_offset
from tests.support import alice_inbox, run_with_storage

NOW = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)
ZONES = [datetime.timezone(datetime.timedelta(minutes=m)) for m in (-330, 0, 120, 840)]
FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "Work"]


def _new_message(i: int, flags: frozenset[str]) -> NewMessage:
    raw = b"Subject: message %d\r\n\r\n%s\r\n" % (i, b"x" * (i % 50))
    when = datetime.datetime(2020, 1, 1, tzinfo=ZONES[i % len(ZONES)])
    return NewMessage(raw, flags, when + datetime.timedelta(hours=7 * i), b"meta")


def _random_flags(rng: random.Random) -> frozenset[str]:
    return frozenset(rng.sample(FLAG_POOL, rng.randint(0, 3)))


def _stored_columns(storage: SqliteStorage, mailbox_id: int) -> MessageColumns:
    """The columns read in full over a connection of its own (no cache)."""
    conn = sqlite3.connect(storage._path)
    try:
        return storage_sqlite._all_columns(conn, mailbox_id)
    finally:
        conn.close()


async def _assert_view_matches_store(view: SelectedMailbox, storage: SqliteStorage) -> None:
    stored = _stored_columns(storage, view.mailbox.id)
    assert list(view.uids) == list(stored.uids)
    assert list(view.flags) == list(stored.flags)
    assert list(view.modseqs) == list(stored.modseqs)
    assert list(view.internal_dates) == list(stored.internal_dates)
    assert list(view.tz_offsets) == list(stored.tz_offsets)
    assert list(view.sizes) == list(stored.sizes)
    for index, uid in enumerate(view.uids):
        assert view.sequence_number(uid) == index + 1
        assert view.flags_of(uid) == stored.flags[index]
        assert view.summary_at(index).internal_date == view.internal_date_of(uid)
    assert view.keywords == {f for flags in view.flags for f in flags if not f.startswith("\\")}


async def _mixed_changes(storage: SqliteStorage, rng: random.Random) -> None:
    inbox = await alice_inbox(storage)
    messages = [_new_message(i, _random_flags(rng)) for i in range(150)]
    await storage.append(inbox.id, messages)
    view = await SelectedMailbox.open(storage, inbox, readonly=False)
    client_uids = list(view.uids)  # what the client knows, kept up to date from responses
    await _assert_view_matches_store(view, storage)
    for round_number in range(12):
        live = list(view.uids)
        # Another session's changes, then this session's own STORE.
        await storage.append(inbox.id, [_new_message(1000 + round_number, frozenset())])
        others = rng.sample(live, min(len(live), rng.randint(1, 8)))
        await storage.store_flags(inbox.id, others, "+", frozenset({"\\Flagged", "Urgent"}))
        doomed = rng.sample(live, min(len(live), rng.randint(0, 12)))
        await storage.store_flags(inbox.id, doomed, "+", frozenset({"\\Deleted"}))
        await storage.expunge(inbox.id, doomed)
        own = rng.sample(live, min(len(live), 5))
        result = await storage.store_flags(inbox.id, own, "-", frozenset({"\\Seen"}))
        view.record_own_changes(result.changed)
        await view.refresh(storage)
        for response in view.drain_updates(allow_expunge=True):
            number, _, name = response.payload.partition(b" ")
            if name == b"EXPUNGE":
                del client_uids[int(number) - 1]
        new_uids = [uid for uid in view.uids if uid not in set(client_uids)]
        assert client_uids + new_uids == list(view.uids)
        client_uids = list(view.uids)
        await _assert_view_matches_store(view, storage)


def test_view_follows_appends_flag_changes_and_expunges(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage) -> None:
        await _mixed_changes(storage, random.Random(7))

    run_with_storage(tmp_path / "test.db", main)


def _view(uids: list[int], flags: list[frozenset[str]]) -> SelectedMailbox:
    count = len(uids)
    mailbox = Mailbox(1, 1, "INBOX", uidvalidity=1, uidnext=41, highest_modseq=9)
    return SelectedMailbox(
        mailbox=mailbox,
        readonly=False,
        uids=array("I", uids),
        flags=flags,
        modseqs=array("q", [1] * count),
        internal_dates=array("q", [0] * count),
        tz_offsets=array("i", [0] * count),
        sizes=array("q", [1] * count),
        known_modseq=1,
    )


def test_expunge_numbers_each_response_after_the_previous_removal() -> None:
    view = _view([1, 3, 5, 7, 9], [frozenset()] * 5)
    view._reported_count = 5
    assert view.remove_expunged([9, 3, 7, 4]) == [2, 3, 3]
    assert list(view.uids) == [1, 5]
    assert view.sequence_number(5) == 2 and view.sequence_number(3) is None


def test_lookups_stay_right_once_the_uid_map_is_built_and_after_removals() -> None:
    uids = list(range(2, 2000, 3))
    view = _view(uids, [frozenset({str(uid)}) for uid in uids])
    for uid in uids:  # far more than the lookups after which the map is built
        assert view.flags_of(uid) == {str(uid)}
    assert 3 not in view and view.sequence_number(4) is None
    view.remove_expunged(uids[::2])
    kept = uids[1::2]
    for number, uid in enumerate(kept, 1):
        assert view.sequence_number(uid) == number
        assert view.flags_of(uid) == {str(uid)}
    assert uids[0] not in view


def test_first_unseen() -> None:
    seen = frozenset({"\\Seen"})
    assert _view([1, 2, 3], [seen, frozenset({"$Junk"}), frozenset()]).first_unseen() == 2
    assert _view([1, 2], [seen, seen]).first_unseen() is None
    assert _view([], []).first_unseen() is None


# ------------------------------------------------------------------ SEARCH over columns

_ATOMS = [
    "ALL",
    *(["SEEN", "UNSEEN", "ANSWERED", "UNANSWERED", "FLAGGED", "UNFLAGGED", "DELETED", "UNDELETED"]),
    *(["DRAFT", "UNDRAFT", "RECENT", "NEW", "OLD"]),
    "KEYWORD $Junk",
    "KEYWORD $junk",
    "UNKEYWORD Work",
    "KEYWORD Absent",
    "LARGER 120",
    "SMALLER 200",
    "MODSEQ 5",
    "OLDER 3000",
    "YOUNGER 86400",
    "1:3",
    "2,4:*",
    "*",
    "UID 2:9",
    "UID 7,*",
    "$",
]


@st.composite
def _keys(draw: st.DrawFn, depth: int = 2) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(_ATOMS))
    shape = draw(st.sampled_from(["NOT", "OR", "LIST"]))
    if shape == "NOT":
        return "NOT " + draw(_keys(depth - 1))
    if shape == "OR":
        return f"OR {draw(_keys(depth - 1))} {draw(_keys(depth - 1))}"
    parts = draw(st.lists(_keys(depth - 1), min_size=1, max_size=3))
    return "(" + " ".join(parts) + ")"


@st.composite
def _views(draw: st.DrawFn) -> tuple[SelectedMailbox, set[int]]:
    count = draw(st.integers(0, 12))
    uids = sorted(draw(st.sets(st.integers(1, 40), min_size=count, max_size=count)))
    flag_sets = [frozenset(draw(st.sets(st.sampled_from(FLAG_POOL)))) for _ in uids]
    view = _view(uids, flag_sets)
    start = datetime.datetime(2020, 1, 1, 20, tzinfo=datetime.UTC)
    for index in range(len(uids)):
        moment = start + datetime.timedelta(hours=draw(st.integers(0, 60)))
        local = moment.astimezone(draw(st.sampled_from(ZONES)))
        view.internal_dates[index], view.tz_offsets[index] = epoch_and_offset(local)
        view.sizes[index] = draw(st.integers(100, 220))
        view.modseqs[index] = draw(st.integers(1, 9))
    view.recent = set(draw(st.lists(st.sampled_from(uids), unique=True))) if uids else set()
    saved = set(draw(st.lists(st.integers(1, 40))))
    return view, saved


def _by_predicates(view: SelectedMailbox, key: c.SearchKey, saved: set[int]) -> list[int]:
    context = search_module._Context(view, saved, NOW)
    predicate = search_module._compile(key, context)
    return [
        uid
        for index, uid in enumerate(view.uids)
        if predicate(search_module._Message(index + 1, view.summary_at(index)))
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_views(), _keys())
def test_column_search_agrees_with_the_per_message_predicates(
    view_and_saved: tuple[SelectedMailbox, set[int]], text: str
) -> None:
    view, saved = view_and_saved
    command = parse_command(b"t SEARCH " + text.encode())
    assert isinstance(command, c.Search)
    found = matching_uids_from_columns(view, command.key, saved, NOW)
    assert found == _by_predicates(view, command.key, saved)


_DATE_CHECKS = {
    "BEFORE": lambda day, wanted: day < wanted,
    "ON": lambda day, wanted: day == wanted,
    "SINCE": lambda day, wanted: day >= wanted,
}


@settings(max_examples=200, deadline=None)
@given(
    _views(),
    st.sampled_from(sorted(_DATE_CHECKS)),
    st.dates(datetime.date(2020, 1, 1), datetime.date(2020, 1, 4)),
)
def test_column_date_keys_compare_the_day_in_the_dates_own_zone(
    view_and_saved: tuple[SelectedMailbox, set[int]], op: str, wanted: datetime.date
) -> None:
    """RFC 9051 section 6.4.4: BEFORE/ON/SINCE disregard time and timezone, so the
    day is the internal date's own (zones here reach from -05:30 to +14:00)."""
    view, _ = view_and_saved
    check = _DATE_CHECKS[op]
    expected = [
        uid
        for index, uid in enumerate(view.uids)
        if check(view.summary_at(index).internal_date.date(), wanted)
    ]
    key = c.SearchKey(op, wanted)
    assert matching_uids_from_columns(view, key, set(), NOW) == expected


def test_keys_the_columns_cannot_answer_are_left_to_the_message_pass() -> None:
    view = _view([1, 2], [frozenset(), frozenset({"\\Seen"})])
    for text in (b"UNSEEN BODY x", b"OR SEEN SUBJECT y", b"NOT SENTSINCE 1-Jan-2020"):
        command = parse_command(b"t SEARCH " + text)
        assert isinstance(command, c.Search)
        assert matching_uids_from_columns(view, command.key, set(), NOW) is None


# ------------------------------------------------------------------ storage


def test_refresh_query_uses_the_modseq_index() -> None:
    conn = sqlite3.connect(":memory:")
    for script in storage_sqlite._MIGRATIONS:
        conn.executescript(script)
    plan = conn.execute("EXPLAIN QUERY PLAN " + storage_sqlite._CHANGED_SINCE, (1, 5)).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX messages_by_modseq" in details, details


def test_message_columns_match_the_summaries(tmp_path: Path) -> None:
    async def main(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "hash")
        inbox = await storage.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        empty = await storage.message_columns(inbox.id)
        assert [list(column) for column in astuple(empty)] == [[]] * 6
        rng = random.Random(3)
        await storage.append(inbox.id, [_new_message(i, _random_flags(rng)) for i in range(9)])
        await storage.store_flags(inbox.id, [2, 5], "+", frozenset({"\\Deleted"}))
        await storage.expunge(inbox.id, [2, 5])
        columns = await storage.message_columns(inbox.id)
        summaries = await storage.message_summaries(inbox.id)
        assert list(columns.uids) == [s.uid for s in summaries] == [1, 3, 4, 6, 7, 8, 9]
        assert list(columns.flags) == [s.flags for s in summaries]
        assert list(columns.modseqs) == [s.modseq for s in summaries]
        assert list(columns.sizes) == [s.size for s in summaries]
        dates = [epoch_and_offset(s.internal_date) for s in summaries]
        assert list(zip(columns.internal_dates, columns.tz_offsets, strict=True)) == dates
        # Equal flags are one shared object, whatever the number of messages.
        assert len({id(flags) for flags in columns.flags}) == len(set(columns.flags))
        # Nothing changed since the mailbox's modseq: nothing to report.
        current = await storage.get_mailbox(user.id, "INBOX")
        assert current is not None
        unchanged = await storage.changes_since(inbox.id, current.highest_modseq)
        assert unchanged.changed == () and unchanged.expunged == ()

    run_with_storage(tmp_path / "test.db", main)


async def _cached_columns_follow_changes(path: Path) -> None:
    """Two storages on one file are two processes: each keeps its own cache, and each
    must catch up with the other's changes."""
    first, second = SqliteStorage(path), SqliteStorage(path)
    await first.open()
    await second.open()
    try:
        user = await first.create_user("alice", "hash")
        inbox = await first.get_mailbox(user.id, "INBOX")
        assert inbox is not None
        rng = random.Random(11)
        await first.append(inbox.id, [_new_message(i, _random_flags(rng)) for i in range(300)])
        for round_number in range(8):
            for storage in (first, second):
                cached = await storage.message_columns(inbox.id)
                assert astuple(cached) == astuple(_stored_columns(storage, inbox.id))
            writer = (first, second)[round_number % 2]
            live = list(_stored_columns(writer, inbox.id).uids)
            # A few changes in most rounds (applied to the cached columns), many in
            # one (read again in full).
            count = 250 if round_number == 5 else rng.randint(1, 6)
            await writer.store_flags(inbox.id, rng.sample(live, count), "+", frozenset({"X"}))
            doomed = rng.sample(live, rng.randint(0, 4))
            await writer.store_flags(inbox.id, doomed, "+", frozenset({"\\Deleted"}))
            await writer.expunge(inbox.id, doomed)
            await writer.append(inbox.id, [_new_message(500 + round_number, frozenset())])
        # A new UIDVALIDITY (RENAME) must not reuse the old incarnation's columns.
        await first.rename_mailbox(user.id, "INBOX", "Old")
        renamed = await first.get_mailbox(user.id, "Old")
        assert renamed is not None
        for storage in (first, second):
            columns = await storage.message_columns(renamed.id)
            assert astuple(columns) == astuple(_stored_columns(storage, renamed.id))
    finally:
        await first.close()
        await second.close()


def test_cached_columns_follow_changes_made_anywhere(tmp_path: Path) -> None:
    asyncio.run(_cached_columns_follow_changes(tmp_path / "test.db"))


def test_column_cache_stays_within_its_budget() -> None:
    cache = column_cache.ColumnCache(budget=10)
    six = MessageColumns(range(6), [frozenset()] * 6, [1] * 6, [0] * 6, [0] * 6, [1] * 6)
    at_5 = column_cache.ColumnSnapshot(six, 5)
    cache.put(1, 7, at_5)
    cache.put(2, 7, at_5)  # over budget: the least recently used goes
    assert cache.get(2, 7, 5) is at_5
    assert cache.current(2, 7, 5) is at_5 and cache.current(2, 7, 6) is None
    with pytest.raises(KeyError):
        cache.get(1, 7, 5)
    with pytest.raises(KeyError):
        cache.get(2, 8, 5)  # another UIDVALIDITY
    with pytest.raises(KeyError):
        cache.get(2, 7, 4)  # cached from a later state than the store's
    cache.put(2, 7, column_cache.ColumnSnapshot(six, 3))  # an older read does not replace it
    assert cache.get(2, 7, 9).modseq == 5
