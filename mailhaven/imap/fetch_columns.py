"""FETCH of items the selected view holds (RFC 9051 section 6.4.5): UID, FLAGS,
INTERNALDATE, RFC822.SIZE, MODSEQ (RFC 7162 section 3.1.4) and THREADID (always NIL,
RFC 8474 section 5.2), formatted straight from the view's columns.

A phone resynchronising flags asks ``UID FETCH 1:* (FLAGS)`` of the whole mailbox.
Building a list of (name, value) pairs per message and joining them was most of that
command's time; here one format string per command takes one row of values per
message, the flag lists are encoded once per distinct flag set, and the output is
joined once per chunk.  The bytes are exactly those of the general path in
:mod:`mailhaven.imap.commands.fetch`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

from mailhaven.codec import wire
from mailhaven.codec.commands import FetchAttribute
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.selected import _datetime as internal_datetime
from mailhaven.imap.selected import _encoded_flags as encoded_flags

# Each item's place in the format string; the values come from _column below.
_FORMATS: dict[str, bytes] = {
    "UID": b"UID %d",
    "FLAGS": b"FLAGS %b",
    "INTERNALDATE": b"INTERNALDATE %b",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "MODSEQ": b"MODSEQ (%d)",
    "THREADID": b"THREADID NIL",
}
VIEW_ITEMS = frozenset(_FORMATS)

# Rows formatted and joined at once: bounds the memory of FETCH 1:* of a huge mailbox.
CHUNK = 8192


def served_from_view(attributes: Iterable[FetchAttribute]) -> bool:
    """True when every item is one the view's columns answer."""
    return all(a.name in VIEW_ITEMS for a in attributes)


def encoded_chunks(
    view: SelectedMailbox, indexes: Sequence[int], attributes: Sequence[FetchAttribute]
) -> Iterator[bytes]:
    """The FETCH responses of the messages at *indexes* (sequence number - 1, in
    order), ``CHUNK`` messages per piece of bytes."""
    line = b"* %d FETCH (" + b" ".join(_FORMATS[a.name] for a in attributes) + b")\r\n"
    names = [a.name for a in attributes if a.name != "THREADID"]
    for start in range(0, len(indexes), CHUNK):
        part = indexes[start : start + CHUNK]
        numbers = map((1).__add__, part)  # sequence numbers
        columns = [_column(view, name, part) for name in names]
        yield b"".join(map(line.__mod__, zip(numbers, *columns, strict=True)))


def _column(view: SelectedMailbox, name: str, indexes: Sequence[int]) -> list:
    if name == "UID":
        return _take(view.uids, indexes)
    if name == "RFC822.SIZE":
        return _take(view.sizes, indexes)
    if name == "MODSEQ":
        return _take(view.modseqs, indexes)
    if name == "FLAGS":
        return _flag_lists(view, indexes)
    assert name == "INTERNALDATE"
    return list(
        map(
            _internal_date,
            _take(view.internal_dates, indexes),
            _take(view.tz_offsets, indexes),
        )
    )


def _take(column: Sequence[int], indexes: Sequence[int]) -> list:
    if isinstance(indexes, range) and indexes.step == 1:
        return list(column[indexes.start : indexes.stop])
    return list(map(column.__getitem__, indexes))


def _flag_lists(view: SelectedMailbox, indexes: Sequence[int]) -> list[bytes]:
    """Each message's encoded FLAGS, as :meth:`SelectedMailbox.flag_list_at` gives it:
    messages share their flag sets, so each distinct set is encoded once."""
    flag_sets = _take(view.flags, indexes)
    if view.recent:
        holds_recent = map(view.recent.__contains__, _take(view.uids, indexes))
        return list(map(encoded_flags, flag_sets, holds_recent))
    encoded = {flags: encoded_flags(flags, False) for flags in set(flag_sets)}
    return list(map(encoded.__getitem__, flag_sets))


@functools.lru_cache(maxsize=65536)
def _internal_date(epoch: int, offset: int) -> bytes:
    return wire.date_time(internal_datetime(epoch, offset))
