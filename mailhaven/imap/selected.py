"""The selected mailbox as one session sees it, and the one place untagged updates
are produced (EXISTS, EXPUNGE/VANISHED, RECENT, unsolicited FETCH FLAGS).

Several sessions may have the same mailbox selected.  Each keeps its own view: the
list of UIDs in sequence-number order plus the flags it last reported.  The view
only moves forward when :meth:`SelectedMailbox.refresh` asks the store what changed
since the modseq the view last saw, and :meth:`SelectedMailbox.drain_updates` turns
that into responses at a point where the protocol allows them:

* RFC 9051 section 7.5.1 / RFC 3501 section 7.4.1: EXPUNGE must not be sent while
  answering FETCH, STORE or SEARCH (nor when no command is in progress), because
  the client's sequence numbers would shift under it.  Until then expunged messages
  stay in the view (their sequence numbers stay valid) and the EXPUNGE is pending.
* EXISTS may be sent at any time a command is in progress; new messages are
  appended to the view immediately.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import itertools
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from mailhaven.codec import responses, wire
from mailhaven.codec.commands import SequenceSet
from mailhaven.storage.column_cache import (
    ColumnSnapshot,
    first_unseen_from,
    index_of,
    owned_copy,
    without,
)
from mailhaven.storage.interface import (
    Changes,
    Mailbox,
    MailboxNotFound,
    MessageColumns,
    MessageSummary,
    Storage,
    epoch_and_offset,
)

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

# Single lookups by UID bisect the UID column; a command that looks up more than this
# many builds a UID -> index map once instead (FETCH 1:* of a large mailbox).
_LOOKUPS_BEFORE_MAP = 64
# A shared snapshot's map is built anew for each change the views follow (a mailbox
# receiving mail changes often), so it waits until the lookups have cost about as much
# as building it would: a bisection costs about as much as mapping 16 messages.
_MESSAGES_PER_LOOKUP = 16


@dataclass
class SelectedMailbox:
    """One session's view of its selected mailbox.

    The messages are kept as columns in sequence order (the message with sequence
    number n is at index n - 1 of each): UIDs, flags (messages with equal flags share
    one frozenset), modseqs, internal dates and sizes.  Compact arrays rather than one
    object per message, because SELECT of a large mailbox builds all of them and the
    next SELECT frees them; SEARCH of flags, numbers and dates runs over the columns
    (see :mod:`mailhaven.imap.search_columns`).  Read the columns, never change them
    from outside this class.

    SELECT takes the columns of the process's snapshot of the mailbox
    (:class:`~mailhaven.storage.column_cache.ColumnSnapshot`) as they are, shared with
    every other view of that snapshot: the view copies them only when it must diverge
    (copy-on-write: its own STORE, an EXPUNGE it reports), so SELECT does no work per
    message.  Views of one snapshot that apply the same change (another session's
    STORE or APPEND) share the result too (:meth:`_update_columns`).  Sequence numbers
    stay this session's own: a shared snapshot is never changed, and the view keeps
    expunged messages until it may report them (RFC 3501 section 7.4.1).
    """

    mailbox: Mailbox
    readonly: bool
    uids: array[int]
    flags: Sequence[frozenset[str]]  # a tuple while shared with a snapshot
    modseqs: array[int]
    internal_dates: array[int]  # seconds since the epoch
    tz_offsets: array[int]  # the internal date's zone, seconds east of UTC
    sizes: array[int]
    known_modseq: int
    recent: set[int] = field(default_factory=set)
    condstore: bool = False
    qresync: bool = False
    _reported_count: int = 0
    _reported_recent: int = 0
    _pending_expunges: set[int] = field(default_factory=set)
    _pending_flag_updates: set[int] = field(default_factory=set)
    keywords: set[str] = field(default_factory=set)
    _reported_keywords: frozenset[str] = frozenset()
    # RFC 7162 section 3.2: while expunges wait, the client may only be told a
    # HIGHESTMODSEQ below theirs; this is known_modseq from before they arrived.
    _modseq_before_pending_expunges: int | None = None
    # Set by EXPUNGE, UID EXPUNGE and MOVE under QRESYNC: the tagged OK carries
    # HIGHESTMODSEQ (RFC 7162 sections 3.2.7 and 3.2.9, RFC 6851 section 4.4).
    report_modseq_in_tagged: bool = False
    _index_by_uid: dict[int, int] | None = None
    _recent_claim_due: int | None = None  # see owe_recent_claim
    _lookups: int = 0
    # The snapshot whose columns this view's are, unchanged; None once it owns them.
    _snapshot: ColumnSnapshot | None = None

    @classmethod
    async def open(cls, storage: Storage, mailbox: Mailbox, readonly: bool) -> SelectedMailbox:
        snapshot = await storage.column_snapshot(mailbox.id)
        recent = set() if readonly else await storage.claim_recent(mailbox.id)
        return cls.sharing(mailbox, snapshot, readonly=readonly, recent=recent)

    @classmethod
    def sharing(
        cls,
        mailbox: Mailbox,
        snapshot: ColumnSnapshot,
        *,
        readonly: bool,
        recent: set[int] | None = None,
    ) -> SelectedMailbox:
        """A view holding *snapshot*'s columns as they are, as SELECT makes it."""
        recent = set() if recent is None else recent
        view = cls(
            mailbox=mailbox,
            readonly=readonly,
            uids=snapshot.uids,
            flags=snapshot.flags,
            modseqs=snapshot.modseqs,
            internal_dates=snapshot.internal_dates,
            tz_offsets=snapshot.tz_offsets,
            sizes=snapshot.sizes,
            # The snapshot's modseq is the mailbox's when it was read, so it is also
            # at least every message's.
            known_modseq=max(mailbox.highest_modseq, snapshot.modseq),
            recent=recent,
            _snapshot=snapshot,
        )
        snapshot.hold(view)
        view.keywords = set(snapshot.keywords())
        view._reported_count = len(view.uids)
        view._reported_recent = len(recent)
        view._reported_keywords = frozenset(view.keywords)
        return view

    # ------------------------------------------------------------- numbering

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def uidnext(self) -> int:
        return max(self.mailbox.uidnext, (self.uids[-1] + 1) if self.uids else 1)

    def _index(self, uid: int) -> int | None:
        """Where *uid* is in the columns, or None."""
        by_uid = self._index_by_uid
        if by_uid is not None:
            return by_uid.get(uid)
        shared = self._snapshot
        if shared is not None and shared.has_index_map():  # another view built it
            self._index_by_uid = shared.index_map()
            return self._index_by_uid.get(uid)
        self._lookups += 1
        if self._lookups > _LOOKUPS_BEFORE_MAP and (
            shared is None or self._lookups > len(self.uids) // _MESSAGES_PER_LOOKUP
        ):
            return self._index_map().get(uid)
        return index_of(self.uids, uid)

    def _index_map(self) -> dict[int, int]:
        """UID -> index, built once; a shared snapshot's is shared with its views."""
        if self._index_by_uid is None:
            shared = self._snapshot
            self._index_by_uid = (
                shared.index_map()
                if shared is not None
                else dict(zip(self.uids, range(len(self.uids)), strict=True))
            )
        return self._index_by_uid

    def _without_gaps(self) -> bool:
        """Whether the UIDs run without a gap (nothing was expunged or moved out of
        the mailbox since its first message came), so that a UID's index is its
        distance from the first UID."""
        uids = self.uids
        return not uids or uids[-1] - uids[0] + 1 == len(uids)

    def _existing_index(self, uid: int) -> int:
        index = self._index(uid)
        if index is None:
            raise KeyError(uid)
        return index

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self._index(uid) is not None

    def sequence_number(self, uid: int) -> int | None:
        index = self._index(uid)
        return None if index is None else index + 1

    def held(self, uids: Sequence[int]) -> list[int]:
        """Those of *uids* (ascending) that the view holds, in order.  Made for many
        at once (SEARCH of a common word, tens of thousands of UIDs): without gaps,
        two binary searches cut the range; otherwise one map lookup each."""
        if not uids or not self.uids:
            return []
        if self._without_gaps():
            start = bisect.bisect_left(uids, self.uids[0])
            end = bisect.bisect_right(uids, self.uids[-1])
            return list(uids[start:end])
        if self._few(uids):
            return [uid for uid in uids if self._index(uid) is not None]
        index = self._index_map()
        return [uid for uid in uids if uid in index]

    def sequence_numbers(self, uids: Sequence[int]) -> list[int]:
        """The sequence numbers of *uids*, which the view holds, in their order:
        one subtraction each without gaps, one map lookup each otherwise (a binary
        search per UID costs ten times more)."""
        if self._without_gaps():
            offset = self.uids[0] - 1 if self.uids else 0
            return [uid - offset for uid in uids]
        if self._few(uids):
            return [self._existing_index(uid) + 1 for uid in uids]
        index = self._index_map()
        return [index[uid] + 1 for uid in uids]

    def _few(self, uids: Sequence[int]) -> bool:
        """Whether binary searches for *uids* cost less than building the UID map:
        below about one message in thirty of the view."""
        return self._index_by_uid is None and len(uids) * 32 < len(self.uids)

    def resolve(self, sequence: SequenceSet, *, uid: bool, saved: Iterable[int] = ()) -> list[int]:
        """UIDs (ascending) named by a sequence set of sequence numbers or UIDs.

        RFC 9051 section 6.4.9: in UID commands, numbers that are not UIDs of the
        mailbox are ignored and ``*`` is the largest UID; for sequence numbers,
        the caller has already checked the range (see :meth:`sequence_in_range`).
        """
        if sequence.saved:
            wanted = set(saved)
            return [u for u in self.uids if u in wanted]
        if not self.uids:
            return []
        if uid:
            result: list[int] = []
            for low, high in sequence.resolve(self.uids[-1]):
                start = bisect.bisect_left(self.uids, low)
                end = bisect.bisect_right(self.uids, high)
                result.extend(self.uids[start:end])
            return result
        result = []
        for low, high in sequence.resolve(len(self.uids)):
            result.extend(self.uids[max(low, 1) - 1 : high])
        return result

    def indexes_of(self, uids: Sequence[int]) -> Sequence[int]:
        """Where each of *uids* (ascending, all in the view, as :meth:`resolve` gives
        them) is in the columns."""
        if len(uids) == len(self.uids):
            return range(len(uids))  # every message: resolve keeps the view's order
        return [self._existing_index(uid) for uid in uids]

    def sequence_in_range(self, sequence: SequenceSet) -> bool:
        """RFC 9051 section 9 (seq-number): a sequence number above EXISTS is an
        error (BAD); ``*`` in an empty mailbox is also an error."""
        if sequence.saved:
            return True
        for low, high in sequence.ranges:
            for value in (low, high):
                if value is None:
                    if not self.uids:
                        return False
                elif value > len(self.uids) or value < 1:
                    return False
        return True

    # ------------------------------------------------------------- messages

    def flags_of(self, uid: int) -> frozenset[str]:
        """The flags of *uid* as last reported to the client (KeyError if absent)."""
        return self.flags[self._existing_index(uid)]

    def modseq_of(self, uid: int) -> int:
        return self.modseqs[self._existing_index(uid)]

    def size_of(self, uid: int) -> int:
        return self.sizes[self._existing_index(uid)]

    def internal_date_of(self, uid: int) -> datetime.datetime:
        return self.internal_date_at(self._existing_index(uid))

    def internal_date_at(self, index: int) -> datetime.datetime:
        return _datetime(self.internal_dates[index], self.tz_offsets[index])

    def summary_at(self, index: int) -> MessageSummary:
        """The message at *index* (its sequence number - 1) as one object."""
        return MessageSummary(
            uid=self.uids[index],
            flags=self.flags[index],
            modseq=self.modseqs[index],
            internal_date=self.internal_date_at(index),
            size=self.sizes[index],
        )

    def first_unseen(self) -> int | None:
        """The sequence number of the first message without \\Seen (RFC 3501
        section 7.1, UNSEEN response code): kept with a shared snapshot."""
        if self._snapshot is not None:
            index = self._snapshot.first_unseen()
        else:
            index = first_unseen_from(self.flags, 0, set(self.flags))
        return None if index is None else index + 1

    # ------------------------------------------------------------- flags

    def flags_response(self) -> responses.Data:
        return responses.flags([*SYSTEM_FLAGS, *sorted(self.keywords)])

    def permanent_flags_code(self) -> bytes:
        names = [*SYSTEM_FLAGS, *sorted(self.keywords), "\\*"]
        return b"PERMANENTFLAGS " + wire.flag_list(names)

    def flag_list_of(self, uid: int) -> bytes:
        """The encoded FLAGS value of *uid* (RFC 9051 section 7.5.2): system flags
        first, then keywords, then ``\\Recent`` if this session holds it."""
        return self.flag_list_at(self._existing_index(uid))

    def flag_list_at(self, index: int) -> bytes:
        """:meth:`flag_list_of` the message at *index* (its sequence number - 1)."""
        return _encoded_flags(self.flags[index], self.uids[index] in self.recent)

    def record_own_changes(self, changed: Sequence[MessageSummary]) -> None:
        """Note flag changes this session made and reported itself (STORE), so
        :meth:`refresh` does not report them again as unsolicited FETCH."""
        for summary in changed:
            index = self._index(summary.uid)
            if index is not None:
                self._own_columns()[index] = summary.flags
                self.modseqs[index] = summary.modseq
                self._pending_flag_updates.discard(summary.uid)
                self.keywords.update(f for f in summary.flags if not f.startswith("\\"))
        if changed:
            self._advance_past_own_change(changed[0].modseq)

    def _advance_past_own_change(self, modseq: int) -> None:
        """Every change to a mailbox takes its next modseq (RFC 7162 section 3.1.1):
        when this session's change took the one right after what the view has seen,
        nothing else happened in between, and the view now is the mailbox at *modseq*.
        The refresh after the command then need not read the change back (a STORE on
        10,000 messages read 10,000 rows for nothing)."""
        if modseq == self.known_modseq + 1 and not self._pending_expunges:
            self.known_modseq = modseq
            self.mailbox = _advanced(self.mailbox, self.mailbox.uidnext, modseq)

    # ------------------------------------------------------------- updates

    def safe_modseq(self) -> int:
        """The highest modseq up to which the client has been told everything,
        for HIGHESTMODSEQ (RFC 7162 sections 3.2 and 6)."""
        if self._pending_expunges and self._modseq_before_pending_expunges is not None:
            return self._modseq_before_pending_expunges
        return self.known_modseq

    @property
    def has_pending_expunges(self) -> bool:
        return bool(self._pending_expunges)

    async def refresh(self, storage: Storage) -> None:
        """Fold everything the store recorded after ``known_modseq`` into the view."""
        try:
            changes = await storage.changes_since(self.mailbox.id, self.known_modseq)
        except MailboxNotFound:
            self.mailbox_deleted()
            return
        if self.apply_changes(changes):
            self.owe_recent_claim(changes.highest_modseq)
        if self._recent_claim_due is not None:
            seen_modseq, self._recent_claim_due = self._recent_claim_due, None
            self.recent.update(await storage.claim_new_recent(self.mailbox.id, seen_modseq))

    def owe_recent_claim(self, seen_modseq: int) -> None:
        """Messages up to *seen_modseq* are new to this view: the next :meth:`refresh`
        claims their ``\\Recent`` (RFC 3501 section 2.3.2), unless another session's
        claim in this process already covered them."""
        if not self.readonly:
            self._recent_claim_due = max(self._recent_claim_due or 0, seen_modseq)

    def mailbox_deleted(self) -> None:
        """Another session deleted the mailbox: to this session every message is
        expunged (RFC 2180 section 3.2), reported when EXPUNGE is allowed."""
        self._pending_expunges.update(self.uids)

    def apply_changes(self, changes: Changes, arrivals: Arrivals | None = None) -> bool:
        """The part of :meth:`refresh` that needs no store: fold *changes* (read since
        ``known_modseq``) into the view.  True when messages new to this view arrived,
        whose ``\\Recent`` a session may then claim (RFC 3501 section 2.3.2).
        *arrivals* (``Arrivals.of(changes)``, computed once for every view the change
        reaches) lets a view that holds none of the changed messages take them as they
        are, without looking at each."""
        if changes.highest_modseq <= self.known_modseq:
            return False
        if arrivals is not None and arrivals.all_new_to(self):
            return self._take_arrivals(changes, arrivals)
        expunged = set(changes.expunged) if changes.expunged else ()
        new: list[MessageSummary] = []
        updated: list[tuple[int, MessageSummary]] = []
        last = self.uids[-1] if self.uids else 0
        for summary in changes.changed:
            index = self._index(summary.uid)
            if index is None:
                if summary.uid > last and summary.uid not in expunged:
                    new.append(summary)
                    self.keywords.update(_keywords_of(summary.flags))
                continue
            if self.flags[index] != summary.flags:
                self._pending_flag_updates.add(summary.uid)
            updated.append((index, summary))
            self.keywords.update(_keywords_of(summary.flags))
        if not self._pending_expunges:
            self._modseq_before_pending_expunges = self.known_modseq
        if changes.expunged:
            self._pending_expunges.update(uid for uid in changes.expunged if uid in self)
        new.sort(key=lambda summary: summary.uid)
        self._update_columns(updated, new, changes.highest_modseq)
        self.known_modseq = changes.highest_modseq
        self.mailbox = _advanced(self.mailbox, changes.uidnext, changes.highest_modseq)
        return bool(new)

    def _take_arrivals(self, changes: Changes, arrivals: Arrivals) -> bool:
        """:meth:`apply_changes` when every changed message is new to this view."""
        if not self._pending_expunges:
            self._modseq_before_pending_expunges = self.known_modseq
        self._update_columns([], arrivals, changes.highest_modseq)
        self.keywords.update(arrivals.keywords)
        self.known_modseq = changes.highest_modseq
        self.mailbox = arrivals.advance(self.mailbox, changes)
        return bool(arrivals.uids)

    def _update_columns(
        self,
        updated: list[tuple[int, MessageSummary]],
        new: Sequence[MessageSummary] | Arrivals,
        modseq: int,
    ) -> None:
        """Store the flags and modseqs of *updated* messages and append *new* ones,
        which brings the view from ``known_modseq`` to *modseq*.  A view still sharing
        its snapshot takes the snapshot another view of it made for the same change,
        or makes it for them: what changed up to *modseq* is the same for all.  A view
        alone with its snapshot takes the columns for its own and changes them in place
        from then on."""
        if not updated and not new:
            return
        shared = self._snapshot
        if shared is not None and shared.modseq == self.known_modseq:
            successor = shared.successor(modseq)
            if successor is not None:
                self._share(successor)
                return
        else:
            shared = None
        flags = self._own_columns()
        for index, summary in updated:
            flags[index] = summary.flags
            self.modseqs[index] = summary.modseq
        self._append(new)
        if shared is not None and shared.held_by_others(self):
            successor = ColumnSnapshot(self._columns(), modseq)
            if not new:  # the same UIDs in the same places
                successor.inherit_index_map(shared)
            shared.remember_successor(modseq, successor)
            self._share(successor)

    def _own_columns(self) -> list[frozenset[str]]:
        """Copy the shared columns before this view changes them (memcpy, and one
        reference per message for the flags); returns the flags, now a list."""
        if self._snapshot is not None or not isinstance(self.flags, list):
            self._leave_snapshot()
            self._take_columns(owned_copy(self._columns()))
        assert isinstance(self.flags, list)
        return self.flags

    def _leave_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.release(self)
            self._snapshot = None

    def _share(self, snapshot: ColumnSnapshot) -> None:
        """Take *snapshot*'s columns as this view's (they hold the same messages)."""
        self._leave_snapshot()
        snapshot.hold(self)
        self._snapshot = snapshot
        self._take_columns(snapshot.columns)

    def _take_columns(self, columns: MessageColumns) -> None:
        """Make *columns* this view's (the UID map, built for the old ones, goes)."""
        self.uids, self.flags = columns.uids, columns.flags  # type: ignore[assignment]
        self.modseqs, self.sizes = columns.modseqs, columns.sizes  # type: ignore[assignment]
        self.internal_dates = columns.internal_dates  # type: ignore[assignment]
        self.tz_offsets = columns.tz_offsets  # type: ignore[assignment]
        self._index_by_uid = None
        self._lookups = 0

    def _columns(self) -> MessageColumns:
        return MessageColumns(
            self.uids, self.flags, self.modseqs, self.internal_dates, self.tz_offsets, self.sizes
        )

    def _append(self, new: Sequence[MessageSummary] | Arrivals) -> None:
        if isinstance(new, Arrivals):
            self._extend(new)
            return
        for summary in new:
            epoch, offset = epoch_and_offset(summary.internal_date)
            if self._index_by_uid is not None:
                self._index_by_uid[summary.uid] = len(self.uids)
            self.uids.append(summary.uid)
            self.flags.append(summary.flags)
            self.modseqs.append(summary.modseq)
            self.internal_dates.append(epoch)
            self.tz_offsets.append(offset)
            self.sizes.append(summary.size)

    def _extend(self, arrivals: Arrivals) -> None:
        """:meth:`_append` of messages already in columns, in one step per column."""
        if self._index_by_uid is not None:
            start = len(self.uids)
            self._index_by_uid.update(zip(arrivals.uids, itertools.count(start)))
        self.uids.extend(arrivals.uids)
        self.flags.extend(arrivals.flags)
        self.modseqs.extend(arrivals.modseqs)
        self.internal_dates.extend(arrivals.internal_dates)
        self.tz_offsets.extend(arrivals.tz_offsets)
        self.sizes.extend(arrivals.sizes)

    def remove_expunged(self, expunged: Iterable[int]) -> list[int]:
        """Drop UIDs this session expunged itself; returns their sequence numbers
        in the order the EXPUNGE responses must be sent (each computed after the
        previous removal, RFC 9051 section 7.5.1)."""
        numbers: list[int] = []
        doomed: list[int] = []
        for uid in sorted(expunged):
            self._pending_expunges.discard(uid)
            index = self._index(uid)
            if index is None:
                continue
            # Every message removed before this one had a lower sequence number.
            numbers.append(index + 1 - len(doomed))
            doomed.append(index)
            self.recent.discard(uid)
            self._pending_flag_updates.discard(uid)
        self._drop(doomed)
        return numbers

    def _drop(self, indexes: list[int]) -> None:
        """Remove the messages at *indexes* from every column, in one pass."""
        if not indexes:
            return
        remaining = without(self._columns(), indexes)
        self._leave_snapshot()  # the remaining columns are new, and this view's own
        self._take_columns(remaining)
        self._reported_count -= len(indexes)

    def drain_updates(self, *, allow_expunge: bool) -> list[responses.Data]:
        """The untagged responses owed to the client, in a safe order."""
        out: list[responses.Data] = []
        if allow_expunge and self._pending_expunges:
            expunged = sorted(self._pending_expunges)
            if self.qresync:
                self.remove_expunged(expunged)
                out.append(responses.vanished(expunged))
            else:
                out.extend(responses.expunge(n) for n in self.remove_expunged(expunged))
            self._pending_expunges.clear()
        if self.keywords != self._reported_keywords:
            out.append(self.flags_response())
            self._reported_keywords = frozenset(self.keywords)
        if self.exists != self._reported_count:
            out.append(responses.exists(self.exists))
            self._reported_count = self.exists
        if len(self.recent) != self._reported_recent:
            out.append(responses.recent(len(self.recent)))
            self._reported_recent = len(self.recent)
        for uid in sorted(self._pending_flag_updates):
            number = self.sequence_number(uid)
            if number is not None:
                out.append(responses.fetch(number, self.flag_items(uid)))
        self._pending_flag_updates.clear()
        return out

    def flag_items(self, uid: int, *, with_uid: bool = True) -> list[tuple[bytes, bytes]]:
        """[UID,] FLAGS (and MODSEQ once CONDSTORE is on) for a FETCH response."""
        items = [(b"FLAGS", self.flag_list_of(uid))]
        if with_uid:
            items.insert(0, (b"UID", b"%d" % uid))
        if self.condstore:
            items.append((b"MODSEQ", b"(%d)" % self.modseq_of(uid)))
        return items


# A commit advances every view of the mailbox (10,000 idlers' at once) with the same
# change: each of these is computed once for all of them.


@dataclass
class Arrivals:
    """The messages of one :class:`Changes` as columns, built once for every view the
    change reaches: a view that holds none of them (an APPEND or delivery seen by idlers
    at the modseq before it) extends its columns with these instead of looking up,
    converting and appending each message itself."""

    uids: array[int]
    flags: tuple[frozenset[str], ...]
    modseqs: array[int]
    internal_dates: array[int]
    tz_offsets: array[int]
    sizes: array[int]
    keywords: frozenset[str]
    # The views share one Mailbox (see _advanced): the last one advanced and its
    # successor, compared by identity (hashing the Mailbox for the cache costs more).
    _advanced_from: Mailbox | None = None
    _advanced_to: Mailbox | None = None

    @classmethod
    def of(cls, changes: Changes) -> Arrivals | None:
        """None when the change expunged messages: each view then works it out."""
        if changes.expunged:
            return None
        changed = sorted(changes.changed, key=lambda summary: summary.uid)
        moments = [epoch_and_offset(summary.internal_date) for summary in changed]
        return cls(
            uids=array("I", (summary.uid for summary in changed)),
            flags=tuple(summary.flags for summary in changed),
            modseqs=array("q", (summary.modseq for summary in changed)),
            internal_dates=array("q", (epoch for epoch, _ in moments)),
            tz_offsets=array("i", (offset for _, offset in moments)),
            sizes=array("q", (summary.size for summary in changed)),
            keywords=frozenset().union(*(_keywords_of(summary.flags) for summary in changed)),
        )

    def __len__(self) -> int:
        return len(self.uids)

    def all_new_to(self, view: SelectedMailbox) -> bool:
        """True when every message here comes after the last one *view* holds (so
        none is a flag change of a message it has)."""
        return not self.uids or not view.uids or self.uids[0] > view.uids[-1]

    def advance(self, mailbox: Mailbox, changes: Changes) -> Mailbox:
        """*mailbox* with the UIDNEXT and HIGHESTMODSEQ after *changes*."""
        if mailbox is not self._advanced_from:
            self._advanced_from = mailbox
            self._advanced_to = _advanced(mailbox, changes.uidnext, changes.highest_modseq)
        assert self._advanced_to is not None
        return self._advanced_to


@functools.lru_cache(maxsize=64)
def _advanced(mailbox: Mailbox, uidnext: int, highest_modseq: int) -> Mailbox:
    return replace(mailbox, uidnext=uidnext, highest_modseq=highest_modseq)


@functools.lru_cache(maxsize=1024)
def _keywords_of(flags: frozenset[str]) -> frozenset[str]:
    return frozenset(f for f in flags if not f.startswith("\\"))


@functools.lru_cache(maxsize=256)
def _zone(offset: int) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(seconds=offset))


def _datetime(epoch: int, offset: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, _zone(offset))


def _flag_order(flag: str) -> tuple[int, str]:
    try:
        return (SYSTEM_FLAGS.index(flag), "")
    except ValueError:
        return (len(SYSTEM_FLAGS), flag.lower())


@functools.lru_cache(maxsize=4096)
def _encoded_flags(flags: frozenset[str], recent: bool) -> bytes:
    # A mailbox has few distinct flag sets, so FETCH FLAGS of every message sorts
    # and encodes each of them once.
    ordered = sorted(flags, key=_flag_order)
    if recent:
        ordered.append("\\Recent")
    return wire.flag_list(ordered)
