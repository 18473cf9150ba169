"""The columns of recently selected mailboxes, kept between SELECTs in one process.

SELECT needs every message's UID, flags, modseq, internal date and size
(:class:`~mailhaven.storage.interface.MessageColumns`).  Reading them means one
Python object per value from sqlite3, most of the cost of SELECT on a large mailbox.
A mailbox selected again (a phone reconnecting, a second device, the next SELECT of
the same session) has usually changed little, so the columns of the last read are
kept with the mailbox's modseq at that read, and brought up to date from what changed
after it: rows whose modseq is higher and the expunge records (RFC 7162 keeps both for
QRESYNC; every change to a mailbox takes a new modseq).  That costs copying the
arrays (memcpy) plus work proportional to the changes.

The entries are keyed by mailbox id and UIDVALIDITY (a new incarnation of a mailbox,
or a renamed one, starts afresh).  Several processes may share the store: each keeps
its own cache, and catches up through the same modseqs.  The cached sequences are
shared with callers, who must copy before changing them.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailhaven.storage.interface import MessageColumns

# Messages kept over all cached mailboxes of a process (about 40 bytes each).
DEFAULT_BUDGET = 250_000
# Bringing columns up to date costs Python work per change: past this share of the
# mailbox, reading it again is as cheap.
_MOST_CHANGES_APPLIED = 4


@dataclass(frozen=True, slots=True)
class _Entry:
    uidvalidity: int
    modseq: int
    columns: MessageColumns


class ColumnCache:
    """A bounded LRU of mailbox columns; safe to use from several threads."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, mailbox_id: int, uidvalidity: int, modseq: int) -> tuple[int, MessageColumns]:
        """The cached columns of the mailbox and the modseq they were read at, if
        they belong to this incarnation and are not from the future; else KeyError."""
        with self._lock:
            entry = self._entries[mailbox_id]
            self._entries.move_to_end(mailbox_id)
        if entry.uidvalidity != uidvalidity or entry.modseq > modseq:
            raise KeyError(mailbox_id)
        return entry.modseq, entry.columns

    def put(self, mailbox_id: int, uidvalidity: int, modseq: int, columns: MessageColumns) -> None:
        count = len(columns.uids)
        with self._lock:
            old = self._entries.get(mailbox_id)
            if old is not None:
                if old.uidvalidity == uidvalidity and old.modseq > modseq:
                    return  # another reader already stored a later state
                self._size -= len(old.columns.uids)
                del self._entries[mailbox_id]
            if count > self._budget:
                return
            self._entries[mailbox_id] = _Entry(uidvalidity, modseq, columns)
            self._size += count
            while self._size > self._budget:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted.columns.uids)


def packed(
    uids: Sequence[int],
    flags: Sequence[frozenset[str]],
    modseqs: Sequence[int],
    internal_dates: Sequence[int],
    tz_offsets: Sequence[int],
    sizes: Sequence[int],
) -> MessageColumns:
    """Columns in the compact form the cache keeps (and views copy with memcpy)."""
    return MessageColumns(
        array("I", uids),
        tuple(flags),
        array("q", modseqs),
        array("q", internal_dates),
        array("i", tz_offsets),
        array("q", sizes),
    )


def updated(
    columns: MessageColumns,
    changed_rows: Sequence[Sequence[Any]],
    expunged: Sequence[int],
    parse_flags: Callable[[str], frozenset[str]],
) -> MessageColumns | None:
    """*columns* after the changes: *changed_rows* are (uid, flag text, modseq,
    internal date, zone, size) in UID order, *expunged* the UIDs expunged since.
    None when there are too many changes to be worth applying one by one."""
    if (len(changed_rows) + len(expunged)) * _MOST_CHANGES_APPLIED > max(len(columns.uids), 64):
        return None
    uids, flags, modseqs, dates, zones, sizes = (
        array("I", columns.uids),
        list(columns.flags),
        array("q", columns.modseqs),
        array("q", columns.internal_dates),
        array("i", columns.tz_offsets),
        array("q", columns.sizes),
    )
    gone = {index for uid in expunged if (index := _index(uids, uid)) is not None}
    if gone:
        keep = [index not in gone for index in range(len(uids))]
        compress = itertools.compress
        uids, flags = array("I", compress(uids, keep)), list(compress(flags, keep))
        modseqs, dates = array("q", compress(modseqs, keep)), array("q", compress(dates, keep))
        zones, sizes = array("i", compress(zones, keep)), array("q", compress(sizes, keep))
    for uid, flag_text, modseq, date, zone, size in changed_rows:
        index = _index(uids, uid)
        if index is not None:
            flags[index] = parse_flags(flag_text)
            modseqs[index] = modseq
        elif not uids or uid > uids[-1]:
            uids.append(uid)
            flags.append(parse_flags(flag_text))
            modseqs.append(modseq)
            dates.append(date)
            zones.append(zone)
            sizes.append(size)
        else:
            return None  # a message the cached read did not see: read again
    return MessageColumns(uids, tuple(flags), modseqs, dates, zones, sizes)


def _index(uids: array[int], uid: int) -> int | None:
    index = bisect.bisect_left(uids, uid)
    return index if index < len(uids) and uids[index] == uid else None
