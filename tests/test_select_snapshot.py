"""SELECT from a snapshot shared by every view of a mailbox (mailhaven/storage/column_cache.py,
mailhaven/imap/selected.py).

* Views selected at one modseq share the snapshot's columns, and the snapshot never
  changes: a session's STORE or EXPUNGE makes its own view diverge (copy-on-write), and
  another session keeps its sequence numbers until it is told of an expunge (RFC 3501
  section 7.4.1, RFC 9051 section 7.5.1).
* Views sharing a snapshot that apply the same change share the result; a view alone
  with its snapshot changes its own copy in place.
* The counts SELECT reports (keywords, the first unseen message) are carried from one
  snapshot to the next through the changes: they must equal a computation from scratch,
  also when the changes come from another storage object (another process).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import re
from array import array
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.imap.selected import Arrivals, SelectedMailbox
from mailhaven.storage import SqliteStorage, column_cache
from mailhaven.storage.column_cache import ColumnSnapshot
from mailhaven.storage.flags import serialize_flags
from mailhaven.storage.interface import Mailbox, MessageColumns, NewMessage
from tests.support import ServerThread, alice_inbox, mail, run_with_storage
from tests.test_selected_columns import _assert_view_matches_store, _stored_columns

SEEN = frozenset({"\\Seen"})
FLAG_SETS = [frozenset(), SEEN, frozenset({"\\Seen", "$Junk"}), frozenset({"Work"})]


def _message(i: int, flags: frozenset[str]) -> NewMessage:
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(hours=i)
    return NewMessage(b"Subject: %d\r\n\r\nbody\r\n" % i, flags, when, b"meta")


def _from_scratch(snapshot: ColumnSnapshot) -> ColumnSnapshot:
    return ColumnSnapshot(snapshot.columns, snapshot.modseq)


def _assert_counts_right(snapshot: ColumnSnapshot) -> None:
    fresh = _from_scratch(snapshot)
    assert snapshot.flag_counts() == fresh.flag_counts()
    assert snapshot.keywords() == fresh.keywords()
    assert snapshot.first_unseen() == fresh.first_unseen()


async def _inbox(storage: SqliteStorage, count: int) -> Mailbox:
    inbox = await alice_inbox(storage)
    await storage.append(inbox.id, [_message(i, FLAG_SETS[i % 4]) for i in range(count)])
    return inbox


def test_views_share_the_snapshot_until_one_diverges(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        inbox = await _inbox(storage, 40)
        phone = await SelectedMailbox.open(storage, inbox, readonly=False)
        laptop = await SelectedMailbox.open(storage, inbox, readonly=False)
        assert phone.uids is laptop.uids and phone.flags is laptop.flags
        shared = list(phone.uids), list(phone.flags), list(phone.modseqs)

        # The laptop's own STORE and EXPUNGE change its view only.
        result = await storage.store_flags(inbox.id, [5, 6], "+", frozenset({"\\Deleted"}))
        laptop.record_own_changes(result.changed)
        assert laptop.flags is not phone.flags
        await storage.expunge(inbox.id, [5, 6])
        assert laptop.remove_expunged([5, 6]) == [5, 5]
        result = await storage.store_flags(inbox.id, [9], "+", frozenset({"\\Flagged"}))
        laptop.record_own_changes(result.changed)
        assert (list(phone.uids), list(phone.flags), list(phone.modseqs)) == shared

        # The phone hears of them after a FETCH (no EXPUNGE allowed): the flag change
        # comes (the phone, selected first, holds \\Recent), the expunged messages
        # keep their sequence numbers until it may be told.
        await phone.refresh(storage)
        updates = phone.drain_updates(allow_expunge=False)
        assert [u.payload for u in updates] == [b"9 FETCH (UID 9 FLAGS (\\Flagged \\Recent))"]
        assert phone.exists == 40 and phone.sequence_number(7) == 7
        assert (list(phone.uids), list(phone.modseqs)[:8]) == (shared[0], shared[2][:8])
        updates = phone.drain_updates(allow_expunge=True)
        assert [u.payload for u in updates] == [b"5 EXPUNGE", b"5 EXPUNGE", b"38 RECENT"]
        assert phone.sequence_number(7) == 5
        await laptop.refresh(storage)
        assert laptop.drain_updates(allow_expunge=True) == []
        await _assert_view_matches_store(phone, storage)
        await _assert_view_matches_store(laptop, storage)

    run_with_storage(tmp_path / "test.db", scenario)


def test_views_of_one_snapshot_share_the_result_of_a_change(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        inbox = await _inbox(storage, 30)
        idlers = [await SelectedMailbox.open(storage, inbox, readonly=True) for _ in range(3)]
        await storage.append(inbox.id, [_message(100, frozenset())])
        await storage.store_flags(inbox.id, [2], "+", frozenset({"$Label"}))
        changes = await storage.changes_since(inbox.id, idlers[0].known_modseq)
        for view in idlers:
            assert view.apply_changes(changes)
        assert idlers[0].uids is idlers[1].uids is idlers[2].uids
        for view in idlers:
            await _assert_view_matches_store(view, storage)
            assert "$Label" in view.keywords

        # A view alone with its snapshot takes the columns for its own.
        alone = await SelectedMailbox.open(storage, inbox, readonly=True)
        assert alone.uids is not idlers[0].uids
        await storage.store_flags(inbox.id, [3], "+", frozenset({"\\Answered"}))
        del idlers
        await alone.refresh(storage)
        assert alone._snapshot is None
        own = alone.uids
        await storage.store_flags(inbox.id, [4], "+", frozenset({"\\Answered"}))
        await alone.refresh(storage)
        assert alone.uids is own  # changed in place from then on
        await _assert_view_matches_store(alone, storage)

    run_with_storage(tmp_path / "test.db", scenario)


def test_views_sharing_a_change_learn_the_keywords_of_new_messages(tmp_path: Path) -> None:
    """The views after the first take the successor snapshot the first one built: each
    must still learn a keyword that only a new message carries (FLAGS, RFC 3501 section
    7.2.6), whether the change comes as Changes or as Arrivals (the IDLE fan-out)."""

    async def scenario(storage: SqliteStorage) -> None:
        inbox = await _inbox(storage, 30)
        for arrivals_of in (lambda changes: None, Arrivals.of):
            views = [await SelectedMailbox.open(storage, inbox, readonly=True) for _ in range(3)]
            keyword = f"$New{len(views[0].uids)}"
            await storage.append(inbox.id, [_message(200, frozenset({keyword}))])
            changes = await storage.changes_since(inbox.id, views[0].known_modseq)
            arrivals = arrivals_of(changes)
            for view in views:
                assert view.apply_changes(changes, arrivals)
            assert views[0].uids is views[1].uids is views[2].uids
            for view in views:
                assert keyword in view.keywords
                assert any(
                    keyword.encode() in update.payload
                    for update in view.drain_updates(allow_expunge=True)
                )
                await _assert_view_matches_store(view, storage)

    run_with_storage(tmp_path / "test.db", scenario)


async def _follow_another_process(path: Path) -> None:
    first, second = SqliteStorage(path), SqliteStorage(path)
    await first.open()
    await second.open()
    try:
        inbox = await _inbox(first, 200)
        rng = random.Random(5)
        for round_number in range(10):
            writer = (first, second)[round_number % 2]
            for storage in (first, second):
                view = await SelectedMailbox.open(storage, inbox, readonly=True)
                await _assert_view_matches_store(view, storage)
                snapshot = await storage.column_snapshot(inbox.id)
                assert view.uids is snapshot.uids
                _assert_counts_right(snapshot)
                assert view.first_unseen() == _first_unseen_by_hand(view)
            live = list(_stored_columns(writer, inbox.id).uids)
            seen_before = [uid for uid in live[:20] if rng.random() < 0.5]
            await writer.store_flags(inbox.id, seen_before, rng.choice("+-"), SEEN)
            doomed = rng.sample(live[:10], rng.randint(0, 2))
            await writer.expunge(inbox.id, doomed)
            flags = frozenset({"\\Seen"} if round_number % 3 else {"Fresh"})
            await writer.append(inbox.id, [_message(500 + round_number, flags)])
    finally:
        await first.close()
        await second.close()


def _first_unseen_by_hand(view: SelectedMailbox) -> int | None:
    return next((n for n, flags in enumerate(view.flags, 1) if "\\Seen" not in flags), None)


def test_select_counts_follow_changes_made_by_another_process(tmp_path: Path) -> None:
    asyncio.run(_follow_another_process(tmp_path / "test.db"))


# ------------------------------------------------------------------ the counts carried over


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[frozenset[str]], list[tuple[str, int, int]]]:
    start = draw(st.lists(st.sampled_from(FLAG_SETS), max_size=40))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flags", "expunge", "append"]),
                st.integers(0, 60),
                st.integers(0, len(FLAG_SETS) - 1),
            ),
            max_size=12,
        )
    )
    return start, steps


@settings(max_examples=300, deadline=None)
@given(_histories(), st.booleans())
def test_counts_carried_through_changes_equal_a_fresh_count(
    history: tuple[list[frozenset[str]], list[tuple[str, int, int]]], counted_before: bool
) -> None:
    """updated() corrects the flag counts and the first unseen message for the changes
    alone: it must agree with counting the resulting columns from scratch."""
    start, steps = history
    uids = list(range(1, len(start) + 1))
    columns = MessageColumns(
        uids, start, [1] * len(uids), [0] * len(uids), [0] * len(uids), [1] * len(uids)
    )
    old = ColumnSnapshot(columns, 1)
    if counted_before:
        old.flag_counts()
        old.first_unseen()
    state = dict(zip(uids, start, strict=True))
    changed: dict[int, frozenset[str]] = {}
    expunged: list[int] = []
    next_uid = len(uids) + 1
    for kind, target, flag_index in steps:
        flags = FLAG_SETS[flag_index]
        live = sorted(state)
        if kind == "append" or not live:
            state[next_uid] = changed[next_uid] = flags
            next_uid += 1
        elif kind == "flags":
            uid = live[target % len(live)]
            state[uid] = changed[uid] = flags
        else:
            uid = live[target % len(live)]
            del state[uid]
            changed.pop(uid, None)
            if uid <= len(uids):
                expunged.append(uid)
    rows = [(uid, serialize_flags(flags), 2, 0, 0, 1) for uid, flags in sorted(changed.items())]
    new = column_cache.updated(old, rows, sorted(expunged), _parse, 2)
    if new is None:  # too many changes for the mailbox: read again in full
        return
    assert list(new.uids) == sorted(state)
    assert list(new.flags) == [state[uid] for uid in sorted(state)]
    _assert_counts_right(new)
    assert new.modseq == 2


def _parse(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


# ------------------------------------------------------------------ over IMAP


def _select(client, tag: bytes = b"s") -> tuple[int, int | None]:  # noqa: ANN001
    lines = client.command(tag, b"SELECT INBOX")
    assert lines[-1].startswith(tag + b" OK"), lines
    text = b"\n".join(lines)
    exists = int(re.search(rb"\* (\d+) EXISTS", text).group(1))
    unseen = re.search(rb"\[UNSEEN (\d+)\]", text)
    return exists, int(unseen.group(1)) if unseen else None


def test_select_reports_counts_after_other_sessions_changes(server: ServerThread) -> None:
    """RFC 3501 section 6.3.1: EXISTS, and [UNSEEN n] the first message without \\Seen,
    right for each SELECT however the changes came; another session selected
    throughout keeps its numbering until told (section 7.4.1)."""
    phone, laptop, tablet = server.raw(), server.raw(), server.raw()
    for client in (phone, laptop, tablet):
        client.login("alice")
    for n in range(6):
        flags = b"(\\Seen)" if n in (0, 1, 4) else b"()"
        laptop.command(b"a", b"APPEND INBOX %s {%d+}\r\n%s" % (flags, len(mail(n)), mail(n)))
    assert _select(phone) == (6, 3)
    assert _select(laptop) == (6, 3)
    laptop.command(b"d", b"UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert laptop.command(b"e", b"EXPUNGE")[0] == b"* 2 EXPUNGE"
    assert _select(tablet) == (5, 2)  # UID 3 is now the second message
    laptop.command(b"f", b"UID STORE 3,4 +FLAGS.SILENT (\\Seen)")
    assert _select(tablet, b"t") == (5, 5)  # UID 6; UID 5 was seen from the start
    laptop.command(b"g", b"UID STORE 1 -FLAGS.SILENT (\\Seen)")
    assert _select(tablet, b"u") == (5, 1)

    # The phone was told nothing yet: its sequence numbers are as at its SELECT.
    # (The flag changes may come, as unsolicited FETCH; no EXPUNGE may.)
    fetched = b"\n".join(phone.command(b"f", b"FETCH 1:* (UID)"))
    assert b"EXPUNGE" not in fetched
    pairs = re.findall(rb"\* (\d+) FETCH \(UID (\d+)\)", fetched)
    assert pairs == [(b"%d" % n, b"%d" % n) for n in range(1, 7)]
    told = phone.command(b"n", b"NOOP")
    assert told[0] == b"* 2 EXPUNGE"
    assert phone.command(b"g", b"FETCH 2 (UID)")[0] == b"* 2 FETCH (UID 3)"
    for client in (phone, laptop, tablet):
        client.close()


def test_shared_columns_are_never_changed_in_place() -> None:
    flags = [SEEN, SEEN, frozenset()]
    columns = MessageColumns(array("I", [1, 2, 3]), flags, [1] * 3, [0] * 3, [0] * 3, [1] * 3)
    snapshot = ColumnSnapshot(columns, 4)
    mailbox = Mailbox(1, 1, "INBOX", uidvalidity=1, uidnext=4, highest_modseq=4)
    view = SelectedMailbox.sharing(mailbox, snapshot, readonly=False)
    assert view.known_modseq == 4
    assert view.first_unseen() == 3
    assert view.remove_expunged([1]) == [1]
    assert list(snapshot.uids) == [1, 2, 3] and view.first_unseen() == 2


def test_lookups_through_the_shared_uid_map_follow_each_change(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        inbox = await _inbox(storage, 2000)
        first = await SelectedMailbox.open(storage, inbox, readonly=True)
        second = await SelectedMailbox.open(storage, inbox, readonly=True)
        for uid in range(1, 2001, 5):  # enough lookups for the snapshot's map
            assert first.sequence_number(uid) == uid
        assert first._snapshot is not None and first._snapshot.has_index_map()
        assert second.sequence_number(1999) == 1999  # takes the map already built
        assert second._index_by_uid is first._index_by_uid

        # A flag change keeps every UID in place: the next snapshot keeps the map.
        await storage.store_flags(inbox.id, [7], "+", frozenset({"\\Flagged"}))
        changes = await storage.changes_since(inbox.id, first.known_modseq)
        for view in (first, second):
            view.apply_changes(changes)
        assert first._snapshot is second._snapshot and first._snapshot.has_index_map()
        # New messages: a map made for the next snapshot knows them.
        await storage.append(inbox.id, [_message(9000, frozenset())])
        changes = await storage.changes_since(inbox.id, first.known_modseq)
        for view in (first, second):
            view.apply_changes(changes)
        for uid in [*range(1, 2002, 3), 2001]:
            assert first.sequence_number(uid) == second.sequence_number(uid) == uid
        assert first.flags_of(7) == {"\\Flagged"} | FLAG_SETS[6 % 4]
        for view in (first, second):
            await _assert_view_matches_store(view, storage)

    run_with_storage(tmp_path / "test.db", scenario)


def test_lookups_on_the_loop_thread_see_other_processes_commits(tmp_path: Path) -> None:
    """get_mailbox, the snapshot check and the \\Recent check read on the event loop's
    thread: each must see what another storage object (process) committed before it."""

    async def main() -> None:
        first, second = SqliteStorage(tmp_path / "test.db"), SqliteStorage(tmp_path / "test.db")
        await first.open()
        await second.open()
        try:
            inbox = await _inbox(first, 3)
            user_id = inbox.user_id
            assert await first.claim_recent(inbox.id) == {1, 2, 3}
            before = await first.column_snapshot(inbox.id)
            await second.append(inbox.id, [_message(7, frozenset())])
            mailbox = await first.get_mailbox(user_id, "INBOX")
            assert mailbox is not None and mailbox.uidnext == 5
            after = await first.column_snapshot(inbox.id)
            assert after is not before and list(after.uids) == [1, 2, 3, 4]
            assert await first.claim_recent(inbox.id) == {4}
            await second.rename_mailbox(user_id, "INBOX", "Old")
            assert await first.get_mailbox(user_id, "Old") is not None
            renamed = await first.get_mailbox(user_id, "Old")
            assert renamed is not None and renamed.uidvalidity != inbox.uidvalidity
            assert list((await first.column_snapshot(renamed.id)).uids) == [1, 2, 3, 4]
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


# ------------------------------------------------------------------ views in random histories


async def _views_through_a_random_history(storage: SqliteStorage, seed: int) -> None:
    """Three views of one mailbox follow another session's appends, flag changes and
    expunges, each its own way: through refresh, through the IDLE fan-out's Arrivals,
    with or without its own STOREs, reporting expunges now or later.  Each must end
    equal to the store, tell its client sequence numbers that stay right, and never
    change the snapshot the others may still share."""
    rng = random.Random(seed)
    inbox = await _inbox(storage, 20)
    views = [await SelectedMailbox.open(storage, inbox, readonly=False) for _ in range(3)]
    clients = [list(view.uids) for view in views]  # the UIDs each client knows, in order
    first = views[0]._snapshot
    assert first is not None
    frozen = (list(first.uids), list(first.flags))
    next_message = 100
    for _ in range(8):
        for _ in range(rng.randint(1, 3)):
            live = list((await storage.column_snapshot(inbox.id)).uids)
            step = rng.choice(["append", "append", "flags", "expunge"])
            if step == "append" or not live:
                flags = rng.choice([*FLAG_SETS, frozenset({f"$K{next_message % 3}"})])
                await storage.append(inbox.id, [_message(next_message, flags)])
                next_message += 1
            elif step == "flags":
                chosen = rng.sample(live, min(len(live), rng.randint(1, 4)))
                await storage.store_flags(inbox.id, chosen, "+", rng.choice(FLAG_SETS[1:]))
            else:
                doomed = rng.sample(live, min(len(live), rng.randint(1, 3)))
                await storage.store_flags(inbox.id, doomed, "+", frozenset({"\\Deleted"}))
                await storage.expunge(inbox.id, doomed)
        for view, client in zip(views, clients, strict=True):
            await _follow_one_step(storage, view, rng)
            _tell_client(client, view, allow_expunge=rng.random() < 0.7)
    for view, client in zip(views, clients, strict=True):
        await view.refresh(storage)
        _tell_client(client, view, allow_expunge=True)
        assert client == list(view.uids)
        stored = _stored_columns(storage, inbox.id)
        assert (list(view.uids), list(view.flags)) == (list(stored.uids), list(stored.flags))
        assert list(view.modseqs) == list(stored.modseqs)
        assert [view.sequence_number(uid) for uid in view.uids] == list(range(1, len(client) + 1))
        # A keyword once announced stays in FLAGS (it stays defined in the mailbox).
        assert view.keywords >= {f for flags in view.flags for f in flags if f[0] != "\\"}
    assert (list(first.uids), list(first.flags)) == frozen


async def _follow_one_step(
    storage: SqliteStorage, view: SelectedMailbox, rng: random.Random
) -> None:
    if rng.random() < 0.3 and view.uids:  # the session's own STORE first
        chosen = rng.sample(list(view.uids), min(len(view.uids), 2))
        live = [uid for uid in chosen if uid not in view._pending_expunges]
        result = await storage.store_flags(view.mailbox.id, live, "+", frozenset({"\\Answered"}))
        view.record_own_changes(result.changed)
    if rng.random() < 0.5:
        await view.refresh(storage)
        return
    changes = await storage.changes_since(view.mailbox.id, view.known_modseq)
    if view.apply_changes(changes, Arrivals.of(changes)):
        view.owe_recent_claim(changes.highest_modseq)


def _tell_client(client: list[int], view: SelectedMailbox, *, allow_expunge: bool) -> None:
    """Apply the untagged responses to what the client knows, as a client does."""
    for response in view.drain_updates(allow_expunge=allow_expunge):
        number, _, name = response.payload.partition(b" ")
        if name == b"EXPUNGE":
            del client[int(number) - 1]
    client.extend(uid for uid in view.uids[len(client) :])
    assert client == list(view.uids)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32))
def test_views_stay_right_through_random_histories(tmp_path_factory, seed: int) -> None:  # noqa: ANN001
    path = tmp_path_factory.mktemp("history") / "test.db"
    run_with_storage(path, lambda storage: _views_through_a_random_history(storage, seed))
