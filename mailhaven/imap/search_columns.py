"""SEARCH keys answered from the selected view's columns alone (RFC 9051 section
6.4.4; RFC 3501 section 6.4.4 for RECENT, NEW and OLD; RFC 5032 OLDER/YOUNGER;
RFC 7162 MODSEQ).

Flags, sequence numbers, UIDs, sizes, modseqs and internal dates are all in memory,
one column per fact (see :class:`~mailhaven.imap.selected.SelectedMailbox`).  A key
made only of those is evaluated as one boolean per message, column at a time, with
the per-message loops in C (``map`` over bound methods, ``itertools.compress``):
``SEARCH UNSEEN`` of a large mailbox then builds no object per message.  Flag keys
look at each distinct flag set once, since messages with equal flags share one.
Any other key (text, header, save date, EMAILID) makes :func:`column_mask` answer
None, and :mod:`mailhaven.imap.search` evaluates the key message by message.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import itertools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailhaven.codec.commands import SearchKey, SequenceSet
from mailhaven.imap.selected import SelectedMailbox

Mask = list[bool]

# SEARCH keys about one system flag: the flag, and whether it must be present.
FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_SECONDS_PER_DAY = 86400
_EPOCH_DAY = datetime.date(1970, 1, 1)


@dataclass
class _Columns:
    view: SelectedMailbox
    saved: set[int]
    now: datetime.datetime
    _distinct_flags: set[frozenset[str]] | None = field(default=None, init=False)

    @property
    def count(self) -> int:
        return len(self.view.uids)

    def distinct_flags(self) -> set[frozenset[str]]:
        if self._distinct_flags is None:
            self._distinct_flags = set(self.view.flags)
        return self._distinct_flags


def matching_uids_from_columns(
    view: SelectedMailbox, key: SearchKey, saved: set[int], now: datetime.datetime
) -> list[int] | None:
    """The UIDs matching *key* in sequence order, or None when *key* needs more than
    the view holds."""
    mask = column_mask(key, _Columns(view, saved, now))
    if mask is None:
        return None
    return list(itertools.compress(view.uids, mask))


def column_mask(key: SearchKey, columns: _Columns) -> Mask | None:
    """One boolean per message (in sequence order) for *key*, or None."""
    op, args = key.op, key.args
    if op in ("AND", "OR"):
        masks = [column_mask(child, columns) for child in args]  # type: ignore[union-attr]
        if any(mask is None for mask in masks):
            return None
        combine = operator.and_ if op == "AND" else operator.or_
        result = masks[0]
        for mask in masks[1:]:
            result = list(map(combine, result, mask))  # type: ignore[arg-type]
        return result
    if op == "NOT":
        inner = column_mask(args, columns)  # type: ignore[arg-type]
        return None if inner is None else list(map(operator.not_, inner))
    build = _BUILDERS.get(op)
    return None if build is None else build(args, columns)


def _flag_sets_mask(columns: _Columns, wanted: Callable[[frozenset[str]], bool]) -> Mask:
    matching = {flags for flags in columns.distinct_flags() if wanted(flags)}
    return list(map(matching.__contains__, columns.view.flags))


def _flag_key(op: str) -> Callable[[object, _Columns], Mask]:
    flag, present = FLAG_KEYS[op]
    return lambda args, columns: _flag_sets_mask(columns, lambda f: (flag in f) == present)


def _keyword(present: bool) -> Callable[[object, _Columns], Mask]:
    def build(args: object, columns: _Columns) -> Mask:
        wanted = str(args).lower()
        return _flag_sets_mask(
            columns, lambda flags: any(f.lower() == wanted for f in flags) == present
        )

    return build


def _recent(args: object, columns: _Columns) -> Mask:
    return list(map(columns.view.recent.__contains__, columns.view.uids))


def _new(args: object, columns: _Columns) -> Mask:
    unseen = _flag_sets_mask(columns, lambda flags: "\\Seen" not in flags)
    return list(map(operator.and_, _recent(args, columns), unseen))


def _old(args: object, columns: _Columns) -> Mask:
    return list(map(operator.not_, _recent(args, columns)))


def _sequence_numbers(args: object, columns: _Columns) -> Mask:
    sequence: SequenceSet = args  # type: ignore[assignment]
    if sequence.saved:
        return _saved(columns)
    mask = [False] * columns.count
    for low, high in sequence.resolve(columns.count):
        _set_range(mask, max(low, 1) - 1, min(high, columns.count))
    return mask


def _uid_set(args: object, columns: _Columns) -> Mask:
    sequence: SequenceSet = args  # type: ignore[assignment]
    if sequence.saved:
        return _saved(columns)
    uids = columns.view.uids
    mask = [False] * columns.count
    for low, high in sequence.resolve(uids[-1] if uids else 0):
        _set_range(mask, bisect.bisect_left(uids, low), bisect.bisect_right(uids, high))
    return mask


def _saved(columns: _Columns) -> Mask:
    return list(map(columns.saved.__contains__, columns.view.uids))


def _set_range(mask: Mask, start: int, end: int) -> None:
    if start < end:
        mask[start:end] = [True] * (end - start)


def _all(args: object, columns: _Columns) -> Mask:
    return [True] * columns.count


def _nothing(args: object, columns: _Columns) -> Mask:
    return [False] * columns.count


def _compare_column(
    column: Callable[[SelectedMailbox], Iterable[int]], compare: Callable[[int, int], bool]
) -> Callable[[object, _Columns], Mask]:
    """A key true where ``compare(argument, value)`` holds for the message's value."""

    def build(args: object, columns: _Columns) -> Mask:
        return list(map(functools.partial(compare, args), column(columns.view)))

    return build


def _local_days(view: SelectedMailbox) -> map[int]:
    """Each internal date's day in its own zone (RFC 9051 section 6.4.4: dates
    disregard time and timezone), as days since 1970-01-01."""
    local = map(operator.add, view.internal_dates, view.tz_offsets)
    return map(operator.floordiv, local, itertools.repeat(_SECONDS_PER_DAY))


def _date_key(op: str) -> Callable[[object, _Columns], Mask]:
    # BEFORE: day < d, i.e. d > day; ON: d == day; SINCE: day >= d, i.e. d <= day.
    compare = {"BEFORE": operator.gt, "ON": operator.eq, "SINCE": operator.le}[op]

    def build(args: object, columns: _Columns) -> Mask:
        day: datetime.date = args  # type: ignore[assignment]
        target = (day - _EPOCH_DAY).days
        days = _local_days(columns.view)
        return list(map(compare, itertools.repeat(target), days))

    return build


def _age_key(older: bool) -> Callable[[object, _Columns], Mask]:
    """RFC 5032: OLDER n is an INTERNALDATE at least n seconds ago, YOUNGER n one
    less than n seconds ago."""

    def build(args: object, columns: _Columns) -> Mask:
        cutoff = (columns.now - datetime.timedelta(seconds=int(args))).timestamp()  # type: ignore[call-overload]
        compare = operator.ge if older else operator.lt  # cutoff >= date, cutoff < date
        return list(map(compare, itertools.repeat(cutoff), columns.view.internal_dates))

    return build


_BUILDERS: dict[str, Callable[[object, _Columns], Mask]] = {
    **{op: _flag_key(op) for op in FLAG_KEYS},
    "KEYWORD": _keyword(True),
    "UNKEYWORD": _keyword(False),
    "ALL": _all,
    "SAVEDATESUPPORTED": _all,  # RFC 8514 section 4.3: every mailbox here has save dates
    "THREADID": _nothing,  # RFC 8474 section 5.2: no THREADIDs, so nothing matches
    "RECENT": _recent,
    "NEW": _new,
    "OLD": _old,
    "SEQSET": _sequence_numbers,
    "UID": _uid_set,
    # LARGER n: size > n, i.e. n < size; SMALLER n: n > size; MODSEQ n: n <= modseq.
    "LARGER": _compare_column(lambda view: view.sizes, operator.lt),
    "SMALLER": _compare_column(lambda view: view.sizes, operator.gt),
    "MODSEQ": _compare_column(lambda view: view.modseqs, operator.le),
    "BEFORE": _date_key("BEFORE"),
    "ON": _date_key("ON"),
    "SINCE": _date_key("SINCE"),
    "OLDER": _age_key(True),
    "YOUNGER": _age_key(False),
}
