"""CONDSTORE and QRESYNC (RFC 7162): the session-level rules the command handlers share.

* CONDSTORE enabling (section 3.1): SELECT/EXAMINE (CONDSTORE), STATUS
  (HIGHESTMODSEQ), FETCH or SEARCH with MODSEQ, FETCH (CHANGEDSINCE), STORE
  (UNCHANGEDSINCE) and ENABLE CONDSTORE/QRESYNC turn on MODSEQ (and, since QRESYNC
  is supported, UID: section 3.2.4) in every later unsolicited FETCH.  The first one
  with a mailbox selected reports its HIGHESTMODSEQ.
* HIGHESTMODSEQ never runs ahead of what the client was told (sections 3.2 and 6):
  while EXPUNGEs wait because a FETCH, STORE or SEARCH is running, the session
  sends a HIGHESTMODSEQ below them before the tagged response.
* QRESYNC resynchronisation (sections 3.2.5 and 3.2.6): VANISHED (EARLIER) for the
  expunges the client missed, then FETCH (UID FLAGS MODSEQ) for changed messages.
  The store remembers every expunged UID with its modseq, so the answer is exact
  however long the client was away; NOMODSEQ (section 3.1.2.2) never applies.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Sequence

from mailhaven.codec import responses
from mailhaven.codec.commands import SequenceSet
from mailhaven.codec.responses import Tagged
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.session import Session, untagged_ok

FETCH_BATCH = 512  # resync FETCH responses written at once

UidRanges = list[tuple[int, int]]


def highest_modseq_response(view: SelectedMailbox) -> responses.Untagged:
    return untagged_ok("Highest mailbox mod-sequence", b"HIGHESTMODSEQ %d" % view.safe_modseq())


async def enable_condstore(session: Session) -> None:
    """Run a CONDSTORE enabling command's side effects (RFC 7162 section 3.1)."""
    if "CONDSTORE" in session.enabled:
        return
    session.enabled.add("CONDSTORE")
    view = session.selected
    if view is not None:
        view.condstore = True
        await session.send(highest_modseq_response(view))


async def enable_qresync(session: Session) -> None:
    """ENABLE QRESYNC (RFC 7162 section 3.2.3): CONDSTORE too, VANISHED from now on."""
    await enable_condstore(session)
    session.enabled.add("QRESYNC")
    if session.selected is not None:
        session.selected.qresync = True


async def after_updates(session: Session, tagged: Tagged) -> Tagged:
    """Called by the dispatcher once a command's untagged updates are out, just
    before its tagged response (RFC 7162 sections 3.2, 3.2.7, 3.2.9)."""
    view = session.selected
    if view is None or not view.condstore:
        return tagged
    if view.has_pending_expunges:
        await session.send(highest_modseq_response(view))
    if view.report_modseq_in_tagged:
        view.report_modseq_in_tagged = False
        if tagged.status == "OK" and tagged.code is None:
            return dataclasses.replace(tagged, code=b"HIGHESTMODSEQ %d" % view.safe_modseq())
    return tagged


# ----------------------------------------------------------------- QRESYNC


def uid_ranges(sequence: SequenceSet, view: SelectedMailbox, saved: Sequence[int]) -> UidRanges:
    """A client's UID set as ascending ranges.  ``*`` stands for the highest UID the
    mailbox ever assigned, so a client asking about ``1:*`` hears of the last
    message too when it is gone."""
    if sequence.saved:
        return [(uid, uid) for uid in sorted(saved)]
    return sequence.resolve(max(view.uidnext - 1, 1))


async def report_vanished_earlier(
    session: Session, view: SelectedMailbox, modseq: int, ranges: UidRanges
) -> None:
    """VANISHED (EARLIER) for UIDs in *ranges* expunged after *modseq* (RFC 7162
    section 3.2.6).  UIDs still in this session's view are left to the ordinary
    VANISHED that reports them when the protocol allows (section 3.2.10)."""
    vanished = await session.storage.vanished_since(view.mailbox.id, modseq, ranges)
    vanished = [uid for uid in vanished if uid not in view]
    if vanished:
        await session.send(responses.vanished(vanished, earlier=True))


async def resynchronise(
    session: Session,
    view: SelectedMailbox,
    parameter: tuple[int, int, SequenceSet | None, tuple[SequenceSet, SequenceSet] | None],
) -> None:
    """SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))
    (RFC 7162 section 3.2.5): nothing when UIDVALIDITY changed, else what changed."""
    uidvalidity, modseq, known_uids, match_data = parameter
    if uidvalidity != view.mailbox.uidvalidity:
        return
    if known_uids is not None:
        ranges = known_uids.resolve(max(view.uidnext - 1, 1))
    else:
        # Section 3.2.5.1: as if the client had sent 1:<UIDNEXT - 1>.
        ranges = [(1, view.uidnext - 1)] if view.uidnext > 1 else []
    if match_data is not None:
        ranges = _above(ranges, _confirmed_uid(view, *match_data))
    await report_vanished_earlier(session, view, modseq, ranges)
    changed = await changed_since(session, view, modseq)
    changed = [uid for uid in changed if _in_ranges(uid, ranges)]
    for start in range(0, len(changed), FETCH_BATCH):
        batch = changed[start : start + FETCH_BATCH]
        await session.send_all(
            responses.fetch(view.sequence_number(uid) or 0, view.flag_items(uid)) for uid in batch
        )


async def changed_since(session: Session, view: SelectedMailbox, modseq: int) -> list[int]:
    """UIDs of the view whose mod-sequence, as this session knows it, is above *modseq*,
    ascending (RFC 7162 sections 3.1.4.1 and 3.2.5.2).

    The store's (mailbox, modseq) index proposes the candidates, so the cost is that of
    the changes, not of the mailbox: a message's modseq in the store is never below the
    one in the view, and a message expunged since (still in the view while its EXPUNGE
    waits) is among the store's expunges after *modseq*."""
    changes = await session.storage.changes_since(view.mailbox.id, modseq)
    candidates = sorted({summary.uid for summary in changes.changed}.union(changes.expunged))
    return [uid for uid in candidates if uid in view and view.modseq_of(uid) > modseq]


def among(uids: list[int], ascending: Sequence[int]) -> list[int]:
    """The *uids* that are also in *ascending* (a sorted sequence), by bisection:
    the cost is that of *uids*, however long *ascending* is."""
    found = []
    for uid in uids:
        index = bisect.bisect_left(ascending, uid)
        if index < len(ascending) and ascending[index] == uid:
            found.append(uid)
    return found


def _confirmed_uid(view: SelectedMailbox, numbers: SequenceSet, uids: SequenceSet) -> int:
    """Section 3.2.5.2: the highest UID of the leading pairs (sequence number, UID)
    that still match the mailbox; the client knows every expunge up to it."""
    confirmed = 0
    pairs = zip(
        _expand(numbers.resolve(max(view.exists, 1))),
        _expand(uids.resolve(max(view.uidnext - 1, 1))),
        strict=False,
    )
    for number, uid in pairs:
        if number > view.exists or view.uids[number - 1] != uid:
            break
        confirmed = uid
    return confirmed


def _expand(ranges: UidRanges) -> Iterator[int]:
    for low, high in ranges:
        yield from range(low, high + 1)


def _above(ranges: UidRanges, floor: int) -> UidRanges:
    return [(max(low, floor + 1), high) for low, high in ranges if high > floor]


def _in_ranges(uid: int, ranges: UidRanges) -> bool:
    index = bisect.bisect_right(ranges, (uid, float("inf"))) - 1
    return index >= 0 and ranges[index][0] <= uid <= ranges[index][1]
