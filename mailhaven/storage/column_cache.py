"""The columns of recently selected mailboxes, kept between SELECTs in one process.

SELECT needs every message's UID, flags, modseq, internal date and size
(:class:`~mailhaven.storage.interface.MessageColumns`).  Reading them means one
Python object per value from sqlite3, most of the cost of SELECT on a large mailbox.
A mailbox selected again (a phone reconnecting, a second device, the next SELECT of
the same session) has usually changed little, so the columns of the last read are
kept with the mailbox's modseq at that read, and brought up to date from what changed
after it: rows whose modseq is higher and the expunge records (RFC 7162 keeps both for
QRESYNC; every change to a mailbox takes a new modseq).  That costs copying the
arrays (memcpy) plus work proportional to the changes, once per change rather than per
SELECT: the result is a :class:`ColumnSnapshot` shared by every view selected at it.

The entries are keyed by mailbox id and UIDVALIDITY (a new incarnation of a mailbox,
or a renamed one, starts afresh).  Several processes may share the store: each keeps
its own cache, and catches up through the same modseqs.  The cached sequences are
shared with callers, who must copy before changing them.
"""

from __future__ import annotations

import bisect
import itertools
import weakref
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mailhaven.storage.interface import MessageColumns
from mailhaven.storage.mailbox_lru import DEFAULT_BUDGET, Kept, MailboxLru, too_many_changes

SEEN = "\\Seen"


class _Unknown:
    """Not computed yet (None is a value: no unseen message)."""


UNKNOWN = _Unknown()


def first_unseen_from(
    flags: Sequence[frozenset[str]], start: int, distinct: Iterable[frozenset[str]]
) -> int | None:
    """The index of the first message at or after *start* without ``\\Seen``;
    *distinct* holds every flag set of *flags* (and may hold more)."""
    # Messages share their flag sets: test each distinct set once, then find the
    # first match in C.
    unseen = {flag_set for flag_set in distinct if SEEN not in flag_set}
    if not unseen:
        return None
    matches = map(unseen.__contains__, map(flags.__getitem__, range(start, len(flags))))
    return next(itertools.compress(itertools.count(start), matches), None)


class ColumnSnapshot:
    """The columns of a mailbox as they were at one modseq, never changed once built.

    The cache keeps the latest snapshot of each mailbox, and every view selected at
    that modseq holds the same object: SELECT copies nothing, and a view copies the
    columns only when it must diverge from them (see
    :class:`~mailhaven.imap.selected.SelectedMailbox`).  What SELECT reports about the
    messages is kept with them (RFC 3501 section 6.3.1, RFC 9051 section 6.3.2): how
    many messages carry each distinct flag set (whence the keywords in use, for FLAGS
    and PERMANENTFLAGS) and where the first message without ``\\Seen`` is (the
    IMAP4rev1 UNSEEN code).  They are computed once per snapshot, or carried over from
    the previous snapshot and the changes (see :func:`updated`), never per SELECT.
    """

    __slots__ = (
        "uids",
        "flags",
        "modseqs",
        "internal_dates",
        "tz_offsets",
        "sizes",
        "modseq",
        "_flag_counts",
        "_first_unseen",
        "_index_by_uid",
        "_successor",
        "_holders",
        "__weakref__",
    )

    def __init__(
        self,
        columns: MessageColumns,
        modseq: int,
        flag_counts: dict[frozenset[str], int] | None = None,
        first_unseen: int | None | _Unknown = UNKNOWN,
    ) -> None:
        self.uids: array[int] = _as_array("I", columns.uids)
        self.flags: tuple[frozenset[str], ...] = tuple(columns.flags)
        self.modseqs: array[int] = _as_array("q", columns.modseqs)
        self.internal_dates: array[int] = _as_array("q", columns.internal_dates)
        self.tz_offsets: array[int] = _as_array("i", columns.tz_offsets)
        self.sizes: array[int] = _as_array("q", columns.sizes)
        self.modseq = modseq
        self._flag_counts = flag_counts
        self._first_unseen = first_unseen
        self._index_by_uid: dict[int, int] | None = None
        self._successor: tuple[int, weakref.ref[ColumnSnapshot]] | None = None
        self._holders: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()

    @property
    def columns(self) -> MessageColumns:
        return MessageColumns(
            self.uids, self.flags, self.modseqs, self.internal_dates, self.tz_offsets, self.sizes
        )

    def flag_counts(self) -> dict[frozenset[str], int]:
        """How many messages carry each distinct flag set."""
        if self._flag_counts is None:
            self._flag_counts = dict(Counter(self.flags))
        return self._flag_counts

    def keywords(self) -> frozenset[str]:
        """The keywords at least one message carries."""
        return frozenset(
            flag for flags in self.flag_counts() for flag in flags if not flag.startswith("\\")
        )

    def first_unseen(self) -> int | None:
        """The index of the first message without ``\\Seen``, or None."""
        if isinstance(self._first_unseen, _Unknown):
            self._first_unseen = first_unseen_from(self.flags, 0, self.flag_counts())
        return self._first_unseen

    def index_map(self) -> dict[int, int]:
        """UID -> index, built once and shared by every view of this snapshot."""
        if self._index_by_uid is None:
            self._index_by_uid = dict(zip(self.uids, range(len(self.uids)), strict=True))
        return self._index_by_uid

    def has_index_map(self) -> bool:
        return self._index_by_uid is not None

    def inherit_index_map(self, predecessor: ColumnSnapshot) -> None:
        """Share *predecessor*'s UID map, for a snapshot with the very same UIDs."""
        self._index_by_uid = predecessor._index_by_uid

    def hold(self, view: object) -> None:
        """Note that *view* uses these columns (until :meth:`release`, or its end)."""
        self._holders[id(view)] = view

    def release(self, view: object) -> None:
        self._holders.pop(id(view), None)

    def held_by_others(self, view: object) -> bool:
        """Whether a view other than *view* uses these columns."""
        return len(self._holders) > (1 if id(view) in self._holders else 0)

    def successor(self, modseq: int) -> ColumnSnapshot | None:
        """The snapshot a view of this one became by applying the changes up to
        *modseq*, while another view of it still holds it (see :meth:`remember_successor`)."""
        remembered = self._successor
        if remembered is None or remembered[0] != modseq:
            return None
        return remembered[1]()

    def remember_successor(self, modseq: int, successor: ColumnSnapshot) -> None:
        """Every change to a mailbox takes a new modseq, so what changed between this
        snapshot's modseq and *modseq* is the same for every view that holds it: the
        first to apply it leaves the result here for the others (the views idling on
        a mailbox all advance with each change).  Held weakly, so that a chain of
        successors does not outlive the views that use it."""
        self._successor = (modseq, weakref.ref(successor))


def _as_array(typecode: str, values: Sequence[int]) -> array[int]:
    if isinstance(values, array) and values.typecode == typecode:
        return values
    return array(typecode, values)


class ColumnCache:
    """A bounded LRU of mailbox snapshots; safe to use from several threads."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._kept: MailboxLru[ColumnSnapshot] = MailboxLru(budget)

    def get(self, mailbox_id: int, uidvalidity: int, modseq: int) -> ColumnSnapshot:
        """The cached snapshot of the mailbox, if it belongs to this incarnation and
        is not from the future; else KeyError."""
        kept = self._kept.get(mailbox_id)
        if kept is None or kept.uidvalidity != uidvalidity or kept.modseq > modseq:
            raise KeyError(mailbox_id)
        return kept.value

    def current(self, mailbox_id: int, uidvalidity: int, modseq: int) -> ColumnSnapshot | None:
        """The cached snapshot if it is exactly the mailbox at *modseq*, else None."""
        try:
            snapshot = self.get(mailbox_id, uidvalidity, modseq)
        except KeyError:
            return None
        return snapshot if snapshot.modseq == modseq else None

    def put(self, mailbox_id: int, uidvalidity: int, snapshot: ColumnSnapshot) -> None:
        kept = Kept(uidvalidity, snapshot.modseq, len(snapshot.uids), snapshot)
        self._kept.put(mailbox_id, kept)


def owned_copy(columns: MessageColumns) -> MessageColumns:
    """Columns the caller may change: the arrays copied (memcpy), the flags as a list
    (one reference per message)."""
    return MessageColumns(
        array("I", columns.uids),
        list(columns.flags),
        array("q", columns.modseqs),
        array("q", columns.internal_dates),
        array("i", columns.tz_offsets),
        array("q", columns.sizes),
    )


def without(columns: MessageColumns, indexes: Iterable[int]) -> MessageColumns:
    """*columns* less the messages at *indexes*, in one pass over each column; new
    sequences the caller may change (the flags as a list)."""
    keep = [True] * len(columns.uids)
    for index in indexes:
        keep[index] = False
    compress = itertools.compress
    return MessageColumns(
        array("I", compress(columns.uids, keep)),
        list(compress(columns.flags, keep)),
        array("q", compress(columns.modseqs, keep)),
        array("q", compress(columns.internal_dates, keep)),
        array("i", compress(columns.tz_offsets, keep)),
        array("q", compress(columns.sizes, keep)),
    )


def updated(
    snapshot: ColumnSnapshot,
    changed_rows: Sequence[Sequence[Any]],
    expunged: Sequence[int],
    parse_flags: Callable[[str], frozenset[str]],
    modseq: int,
) -> ColumnSnapshot | None:
    """*snapshot* brought to *modseq*: *changed_rows* are (uid, flag text, modseq,
    internal date, zone, size) in UID order, *expunged* the UIDs expunged since.
    None when there are too many changes to be worth applying one by one.

    The columns are copied (:func:`owned_copy`, or :func:`without` the expunged);
    the flag counts and the first unseen message are carried over and corrected
    for the changes alone."""
    if too_many_changes(len(changed_rows) + len(expunged), len(snapshot.uids)):
        return None
    counts = _Counts(snapshot._flag_counts)
    first_unseen = snapshot._first_unseen
    gone = sorted(i for uid in expunged if (i := index_of(snapshot.uids, uid)) is not None)
    if gone:
        if not isinstance(first_unseen, _Unknown) and first_unseen is not None:
            # Messages before the first unseen one were all seen: scanning resumes
            # where it was, shifted by the removals before it.
            first_unseen -= bisect.bisect_left(gone, first_unseen)
        for index in gone:
            counts.remove(snapshot.flags[index])
        columns = without(snapshot.columns, gone)
    else:
        columns = owned_copy(snapshot.columns)
    uids, flags, modseqs = columns.uids, columns.flags, columns.modseqs
    dates, zones, sizes = columns.internal_dates, columns.tz_offsets, columns.sizes
    newly_unseen: list[int] = []
    for uid, flag_text, row_modseq, date, zone, size in changed_rows:
        index = index_of(uids, uid)
        new_flags = parse_flags(flag_text)
        if index is not None:
            counts.remove(flags[index])
            flags[index] = new_flags
            modseqs[index] = row_modseq
        elif not uids or uid > uids[-1]:
            index = len(uids)
            uids.append(uid)
            flags.append(new_flags)
            modseqs.append(row_modseq)
            dates.append(date)
            zones.append(zone)
            sizes.append(size)
        else:
            return None  # a message the cached read did not see: read again
        counts.add(new_flags)
        if SEEN not in new_flags:
            newly_unseen.append(index)
    columns = MessageColumns(uids, tuple(flags), modseqs, dates, zones, sizes)
    flag_counts = counts.result()
    if not isinstance(first_unseen, _Unknown) and flag_counts is not None:
        first_unseen = _first_unseen_after_changes(
            columns.flags, first_unseen, newly_unseen, flag_counts
        )
    else:
        first_unseen = UNKNOWN
    return ColumnSnapshot(columns, modseq, flag_counts, first_unseen)


def _first_unseen_after_changes(
    flags: Sequence[frozenset[str]],
    previous: int | None,
    newly_unseen: list[int],
    flag_counts: dict[frozenset[str], int],
) -> int | None:
    """*previous* is where the first unseen message was (shifted by the expunges):
    every message before it was seen, so only a changed message can now come first;
    else the scan resumes at *previous* (which may have been seen or expunged since)."""
    resume = len(flags) if previous is None else previous
    earlier = [index for index in newly_unseen if index < resume]
    if earlier:
        return min(earlier)
    return first_unseen_from(flags, resume, flag_counts)


class _Counts:
    """Flag set counts being corrected change by change; None stays unknown."""

    def __init__(self, counts: dict[frozenset[str], int] | None) -> None:
        self._counts = None if counts is None else dict(counts)

    def remove(self, flags: frozenset[str]) -> None:
        if self._counts is not None:
            self._counts[flags] -= 1

    def add(self, flags: frozenset[str]) -> None:
        if self._counts is not None:
            self._counts[flags] = self._counts.get(flags, 0) + 1

    def result(self) -> dict[frozenset[str], int] | None:
        if self._counts is None:
            return None
        return {flags: count for flags, count in self._counts.items() if count > 0}


def index_of(uids: Sequence[int], uid: int) -> int | None:
    """Where *uid* is in the ascending *uids*, or None."""
    index = bisect.bisect_left(uids, uid)
    return index if index < len(uids) and uids[index] == uid else None
