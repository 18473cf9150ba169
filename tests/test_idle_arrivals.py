"""``Arrivals`` (mailhaven/imap/selected.py): the new messages of one change, built once
for every idler's view, must leave each view exactly as folding the change in message by
message does (``SelectedMailbox.apply_changes`` without them)."""

from __future__ import annotations

import datetime
from array import array

import pytest

from mailhaven.imap.selected import Arrivals, SelectedMailbox
from mailhaven.storage.interface import Changes, Mailbox, MessageSummary

_ZONE = datetime.timezone(datetime.timedelta(hours=2))


def _mailbox() -> Mailbox:
    return Mailbox(id=7, user_id=1, name="INBOX", uidvalidity=1, uidnext=3, highest_modseq=5)


def _summary(uid: int, flags: frozenset[str], modseq: int) -> MessageSummary:
    moment = datetime.datetime(2024, 3, uid, 12, 0, tzinfo=_ZONE)
    return MessageSummary(uid=uid, flags=flags, modseq=modseq, internal_date=moment, size=uid * 100)


def _view(mailbox: Mailbox, *, index_map: bool = False) -> SelectedMailbox:
    view = SelectedMailbox(
        mailbox=mailbox,
        readonly=False,
        uids=array("I", [1, 2]),
        flags=[frozenset(), frozenset({"\\Seen"})],
        modseqs=array("q", [4, 5]),
        internal_dates=array("q", [1_700_000_000, 1_700_000_100]),
        tz_offsets=array("i", [0, 3600]),
        sizes=array("q", [100, 200]),
        known_modseq=5,
        _reported_count=2,
    )
    if index_map:
        view._index_by_uid = {1: 0, 2: 1}  # noqa: SLF001 (as after many lookups)
    return view


def _state(view: SelectedMailbox) -> tuple:
    return (
        list(view.uids),
        view.flags,
        list(view.modseqs),
        list(view.internal_dates),
        list(view.tz_offsets),
        list(view.sizes),
        view.keywords,
        view.known_modseq,
        view.mailbox,
        view._modseq_before_pending_expunges,  # noqa: SLF001
        view._index_by_uid,  # noqa: SLF001
        view._pending_flag_updates,  # noqa: SLF001
    )


@pytest.mark.parametrize("index_map", [False, True])
def test_arrivals_leave_a_view_as_the_change_folded_in_one_by_one(index_map: bool) -> None:
    changes = Changes(
        highest_modseq=8,
        uidnext=5,
        changed=(_summary(4, frozenset({"$Label1"}), 8), _summary(3, frozenset(), 7)),
        expunged=(),
    )
    shared = _mailbox()
    by_arrivals, one_by_one = _view(shared, index_map=index_map), _view(shared, index_map=index_map)
    arrivals = Arrivals.of(changes)
    assert arrivals is not None and arrivals.all_new_to(by_arrivals)

    assert by_arrivals.apply_changes(changes, arrivals) is True
    assert one_by_one.apply_changes(changes) is True

    assert _state(by_arrivals) == _state(one_by_one)
    assert list(by_arrivals.uids) == [1, 2, 3, 4]
    assert by_arrivals.keywords == {"$Label1"}
    assert by_arrivals.mailbox.uidnext == 5 and by_arrivals.mailbox.highest_modseq == 8
    drained = b"".join(r.encode() for r in by_arrivals.drain_updates(allow_expunge=True))
    assert drained == b"".join(r.encode() for r in one_by_one.drain_updates(allow_expunge=True))
    assert drained.endswith(b"* 4 EXISTS\r\n")


def test_views_sharing_a_mailbox_share_the_advanced_one() -> None:
    changes = Changes(8, 4, (_summary(3, frozenset(), 8),), ())
    shared = _mailbox()
    arrivals = Arrivals.of(changes)
    assert arrivals is not None
    first, second = _view(shared), _view(shared)
    first.apply_changes(changes, arrivals)
    second.apply_changes(changes, arrivals)
    assert first.mailbox is second.mailbox
    assert first.mailbox.highest_modseq == 8
    other = _view(_mailbox())  # an equal Mailbox of its own still advances correctly
    other.apply_changes(changes, arrivals)
    assert other.mailbox == first.mailbox


def test_a_flag_change_of_a_held_message_takes_the_general_path() -> None:
    changes = Changes(
        highest_modseq=8,
        uidnext=4,
        changed=(_summary(2, frozenset({"\\Flagged"}), 7), _summary(3, frozenset(), 8)),
        expunged=(),
    )
    view = _view(_mailbox())
    arrivals = Arrivals.of(changes)
    assert arrivals is not None and not arrivals.all_new_to(view)
    assert view.apply_changes(changes, arrivals) is True
    assert list(view.uids) == [1, 2, 3]
    assert view.flags[1] == frozenset({"\\Flagged"})
    drained = [r.encode() for r in view.drain_updates(allow_expunge=True)]
    assert drained == [b"* 3 EXISTS\r\n", b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]


def test_a_change_that_expunges_has_no_arrivals() -> None:
    assert Arrivals.of(Changes(8, 4, (_summary(3, frozenset(), 8),), (1,))) is None


def test_a_view_that_has_seen_the_change_is_left_alone() -> None:
    changes = Changes(5, 3, (_summary(2, frozenset({"\\Seen"}), 5),), ())
    view = _view(_mailbox())
    before = _state(view)
    assert view.apply_changes(changes, Arrivals.of(changes)) is False
    assert _state(view) == before
