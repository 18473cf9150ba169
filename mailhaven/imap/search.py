"""Evaluation of SEARCH keys against a selected mailbox (RFC 9051 section 6.4.4,
RFC 3501 section 6.4.4, RFC 5032 WITHIN, RFC 7162 MODSEQ, RFC 8514 SAVEDATE,
RFC 8474 EMAILID/THREADID).

Keys about flags, numbers and sizes are answered from the selected view in memory.
BODY and TEXT go to the store's text index, the date keys (INTERNALDATE and SENT*)
to its date indexes (one query per distinct key, before the per-message pass).
Header keys need each message's stored header: the text index first narrows them to
the messages whose decoded text (headers included) contains the needle, and only
those candidates are loaded and checked field by field.  A key made only of index
keys is answered with set operations, without the per-message pass.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhaven.codec.commands import SearchKey, SequenceSet
from mailhaven.imap.search_columns import FLAG_KEYS as _FLAG_KEYS
from mailhaven.imap.search_columns import matching_uids_from_columns
from mailhaven.imap.search_fields import top_field_values
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.storage.interface import MessageObjectData, MessageSummary, Storage, TextHits

BATCH = 512

_ADDRESS_KEYS = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject"}
_TEXT_KEYS = {"BODY": False, "TEXT": True}
# Date keys are answered by the store's date indexes; SENT* compare the Date header.
_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
# The internal op that date keys become: args (sent, first day or None, end or None),
# the days in [first, end).  One range per AND keeps SINCE x BEFORE y one query for
# the days between instead of two half mailboxes intersected.
_DAYS = "DAYS"
_HEADER_KEYS = frozenset({*_ADDRESS_KEYS, "HEADER"})
_OBJECT_KEYS = frozenset({"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE", "EMAILID"})


@dataclass(slots=True)
class _Message:
    number: int
    summary: MessageSummary
    header: bytes | None = None  # the top-level header block
    objects: MessageObjectData | None = None


@dataclass
class _Context:
    view: SelectedMailbox
    saved: set[int]
    now: datetime.datetime
    text_hits: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    header_hits: dict[str, set[int]] = field(default_factory=dict)  # needle: candidates
    date_hits: dict[tuple[bool, datetime.date | None, datetime.date | None], set[int]] = field(
        default_factory=dict
    )


async def matching_uids(
    storage: Storage,
    view: SelectedMailbox,
    key: SearchKey,
    *,
    saved: set[int] | None = None,
    now: datetime.datetime | None = None,
) -> list[int]:
    """UIDs of the messages in *view* matching *key*, in sequence-number order."""
    context = _Context(view, saved or set(), now or datetime.datetime.now(datetime.UTC))
    from_memory = matching_uids_from_columns(view, key, context.saved, context.now)
    if from_memory is not None:
        return from_memory
    lone = _lone_text_key(key)
    if lone is not None:
        op, needle = lone
        hits = await storage.search_text_hits(view.mailbox.id, needle, headers=_TEXT_KEYS[op])
        return _hits_in_view(view, hits)
    for op, needle in _text_needles(key):
        if (op, needle) not in context.text_hits:
            context.text_hits[(op, needle)] = await storage.search_text(
                view.mailbox.id, needle, headers=_TEXT_KEYS[op]
            )
    key = _day_ranges(key)
    for sent, first, end in _day_range_needles(key):
        if (sent, first, end) not in context.date_hits:
            context.date_hits[(sent, first, end)] = await storage.search_dates(
                view.mailbox.id, first, end, sent=sent
            )
    answer = _index_answer(key, context)
    if answer is not None:
        return _in_view(view, answer)
    predicate = _compile(key, context)
    needs_headers = _uses(key, _HEADER_KEYS)
    needs_objects = _uses(key, _OBJECT_KEYS)
    candidates = await _header_candidates(storage, view, key, context) if needs_headers else None
    numbered = _numbered_messages(view, _required_uids(key, context))
    matches: list[int] = []
    for start in range(0, len(numbered), BATCH):
        messages = [
            _Message(number, view.summary_at(number - 1))
            for number, _ in numbered[start : start + BATCH]
        ]
        batch = [message.summary.uid for message in messages]
        to_load = batch if candidates is None else [uid for uid in batch if uid in candidates]
        if needs_headers and to_load:
            blocks = await storage.fetch_headers(view.mailbox.id, to_load)
            for message in messages:
                message.header = blocks.get(message.summary.uid)
        if needs_objects:
            found = await storage.object_data(view.mailbox.id, batch)
            by_uid_objects = {item.uid: item for item in found}
            for message in messages:
                message.objects = by_uid_objects.get(message.summary.uid)
        matches.extend(m.summary.uid for m in messages if predicate(m))
    return matches


def _in_view(view: SelectedMailbox, uids: set[int]) -> list[int]:
    """*uids* that the view holds, ascending (as sequence numbers do).  The index may
    know messages that arrived after the view was last brought up to date."""
    return view.held(sorted(uids))


def _lone_text_key(key: SearchKey) -> tuple[str, str] | None:
    """(op, needle) when *key* is one BODY or TEXT key and nothing else (the parser
    wraps a lone key in AND)."""
    while key.op == "AND" and len(key.args) == 1:  # type: ignore[arg-type]
        key = key.args[0]  # type: ignore[index]
    return (key.op, key.args) if key.op in _TEXT_KEYS else None  # type: ignore[return-value]


def _hits_in_view(view: SelectedMailbox, hits: TextHits) -> list[int]:
    """The hits that the view holds.  A view that has seen exactly the modseq of the
    hits and reported every expunge holds exactly the mailbox's messages at that
    modseq, so the hits as they are (a word in a third of a large mailbox: tens of
    thousands of UIDs, not looked up one by one); otherwise the index may know
    messages that arrived after the view was last brought up to date, and the view
    may hold messages expunged since (RFC 9051 section 7.5.1: they stay until their
    EXPUNGE may be sent)."""
    if hits.modseq == view.known_modseq and not view.has_pending_expunges:
        return hits.uids
    return view.held(hits.uids)


def _numbered_messages(view: SelectedMailbox, required: set[int] | None) -> list[tuple[int, int]]:
    """(sequence number, UID) of the messages to evaluate, in sequence order: all of
    them, or only those in *required* (UIDs ascend with sequence numbers)."""
    if required is None:
        return list(enumerate(view.uids, start=1))
    held = _in_view(view, required)
    return list(zip(view.sequence_numbers(held), held, strict=True))


def _required_uids(key: SearchKey, context: _Context) -> set[int] | None:
    """A set of UIDs outside which no message can match *key*, or None when any
    message may: text keys need an index hit, header keys a header candidate, and
    AND/OR combine those.  SEARCH of a rare word then looks at its few hits instead
    of every message of the mailbox."""
    op, args = key.op, key.args
    if op in _TEXT_KEYS:
        return context.text_hits[(op, args)]  # type: ignore[index]
    if op == _DAYS:
        return context.date_hits[args]  # type: ignore[index]
    if op in _ADDRESS_KEYS:
        return context.header_hits.get(str(args))
    if op == "HEADER":
        return context.header_hits.get(args[1])  # type: ignore[index]
    if op == "AND":
        parts = [_required_uids(child, context) for child in args]  # type: ignore[union-attr]
        known = [part for part in parts if part is not None]
        return set.intersection(*known) if known else None
    if op == "OR":
        left, right = (_required_uids(child, context) for child in args)  # type: ignore[union-attr]
        return None if left is None or right is None else left | right
    return None


def _index_answer(key: SearchKey, context: _Context) -> set[int] | None:
    """The UIDs matching *key* when the index sets alone decide it (text and date
    keys, AND/OR/NOT of them), possibly with UIDs the view does not hold; None when some
    key needs the per-message pass.  A common word then costs set operations on
    its hits rather than a Python object per hit."""
    op, args = key.op, key.args
    if op in _TEXT_KEYS:
        return context.text_hits[(op, args)]  # type: ignore[index]
    if op == _DAYS:
        return context.date_hits[args]  # type: ignore[index]
    if op == "AND":
        parts = [_index_answer(child, context) for child in args]  # type: ignore[union-attr]
        if any(part is None for part in parts):
            return None
        return set.intersection(*parts) if parts else None  # type: ignore[arg-type]
    if op == "OR":
        left, right = (_index_answer(child, context) for child in args)  # type: ignore[union-attr]
        return None if left is None or right is None else left | right
    if op == "NOT":
        inner = _index_answer(args, context)  # type: ignore[arg-type]
        return None if inner is None else set(context.view.uids) - inner
    return None


async def _header_candidates(
    storage: Storage, view: SelectedMailbox, key: SearchKey, context: _Context
) -> set[int]:
    """The only messages a header key can match.  Sound because the indexed header
    text is each top-level field's decoded value (the same decoding the field check
    uses), casefolded: a field containing the needle puts the needle in that text."""
    for needle in _header_needles(key):
        if needle not in context.header_hits:
            context.header_hits[needle] = await storage.search_text(
                view.mailbox.id, needle, headers=True
            )
    return set().union(*context.header_hits.values())


def _header_needles(key: SearchKey) -> list[str]:
    if key.op in _ADDRESS_KEYS:
        found = [str(key.args)]
    elif key.op == "HEADER":
        found = [key.args[1]]  # type: ignore[index]
    else:
        found = []
    for child in _children(key):
        found.extend(_header_needles(child))
    return found


def _children(key: SearchKey) -> list[SearchKey]:
    if key.op == "NOT":
        return [key.args]  # type: ignore[list-item]
    if key.op in ("OR", "AND"):
        return list(key.args)  # type: ignore[arg-type]
    return []


def _day_ranges(key: SearchKey) -> SearchKey:
    """*key* with each date key turned into a range of days, and the ranges of the
    same kind (internal or sent date) that are AND-ed together merged into one."""
    op, args = key.op, key.args
    if op in _DATE_KEYS:
        day: datetime.date = args  # type: ignore[assignment]
        after = day + datetime.timedelta(days=1)
        first, end = {"BEFORE": (None, day), "ON": (day, after), "SINCE": (day, None)}[
            op.removeprefix("SENT")
        ]
        return SearchKey(_DAYS, (op.startswith("SENT"), first, end))
    if op == "NOT":
        return SearchKey(op, _day_ranges(args))  # type: ignore[arg-type]
    if op == "OR":
        return SearchKey(op, tuple(_day_ranges(child) for child in args))  # type: ignore[union-attr]
    if op != "AND":
        return key
    children = [_day_ranges(child) for child in args]  # type: ignore[union-attr]
    others = [child for child in children if child.op != _DAYS]
    for sent in (False, True):
        ranges = [child.args for child in children if child.op == _DAYS and child.args[0] == sent]
        if ranges:
            firsts = [first for _, first, _ in ranges if first is not None]  # type: ignore[misc]
            ends = [end for _, _, end in ranges if end is not None]  # type: ignore[misc]
            merged = (sent, max(firsts, default=None), min(ends, default=None))
            others.append(SearchKey(_DAYS, merged))
    return SearchKey(op, tuple(others))


def _day_range_needles(
    key: SearchKey,
) -> list[tuple[bool, datetime.date | None, datetime.date | None]]:
    found = [key.args] if key.op == _DAYS else []
    for child in _children(key):
        found.extend(_day_range_needles(child))
    return found  # type: ignore[return-value]


def _text_needles(key: SearchKey) -> list[tuple[str, str]]:
    found = [(key.op, key.args)] if key.op in _TEXT_KEYS else []
    for child in _children(key):
        found.extend(_text_needles(child))
    return found  # type: ignore[return-value]


def _uses(key: SearchKey, ops: frozenset[str]) -> bool:
    return key.op in ops or any(_uses(child, ops) for child in _children(key))


Predicate = Callable[[_Message], bool]


def _compile(key: SearchKey, context: _Context) -> Predicate:
    """Turn a key tree into one predicate; RFC 9051 6.4.4: a list of keys is their
    intersection, OR and NOT are as named."""
    op, args = key.op, key.args
    if op == "AND":
        parts = [_compile(child, context) for child in args]  # type: ignore[union-attr]
        if len(parts) == 1:
            # A lone key arrives wrapped in AND; calling it directly saves a generator
            # per message, which is most of the cost of SEARCH UNSEEN on a big mailbox.
            return parts[0]
        return lambda m: all(p(m) for p in parts)
    if op == "OR":
        left, right = (_compile(child, context) for child in args)  # type: ignore[union-attr]
        return lambda m: left(m) or right(m)
    if op == "NOT":
        inner = _compile(args, context)  # type: ignore[arg-type]
        return lambda m: not inner(m)
    if op in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[op]
        return lambda m: (flag in m.summary.flags) == present
    if op in _TEXT_KEYS:
        hits = context.text_hits[(op, args)]  # type: ignore[index]
        return lambda m: m.summary.uid in hits
    if op == _DAYS:
        dated = context.date_hits[args]  # type: ignore[index]
        return lambda m: m.summary.uid in dated
    if op in _ADDRESS_KEYS:
        return _header_contains(_ADDRESS_KEYS[op], str(args))
    if op == "HEADER":
        name, value = args  # type: ignore[misc]
        return _header_contains(name, value)
    return _simple(op, args, context)


def _simple(op: str, args: object, context: _Context) -> Predicate:
    view = context.view
    recent = view.recent
    if op == "ALL":
        return lambda m: True
    if op == "RECENT":
        return lambda m: m.summary.uid in recent
    if op == "NEW":
        return lambda m: m.summary.uid in recent and "\\Seen" not in m.summary.flags
    if op == "OLD":
        return lambda m: m.summary.uid not in recent
    if op in ("KEYWORD", "UNKEYWORD"):
        wanted = str(args).lower()
        present = op == "KEYWORD"
        return lambda m: any(f.lower() == wanted for f in m.summary.flags) == present
    if op in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):
        compare = _date_comparison(op[5:], args)  # type: ignore[arg-type]
        return lambda m: m.objects is not None and compare(m.objects.save_date.date())
    if op == "SAVEDATESUPPORTED":
        return lambda m: True  # RFC 8514 section 4.3: every mailbox here has save dates
    if op == "EMAILID":
        return lambda m: m.objects is not None and f"M{m.objects.email_id}" == args
    if op == "THREADID":
        return lambda m: False  # RFC 8474 section 5.2: no THREADIDs, so nothing matches
    if op == "LARGER":
        return lambda m: m.summary.size > args  # type: ignore[operator]
    if op == "SMALLER":
        return lambda m: m.summary.size < args  # type: ignore[operator]
    if op in ("OLDER", "YOUNGER"):
        # RFC 5032: OLDER n is INTERNALDATE more than n seconds ago.
        cutoff = context.now - datetime.timedelta(seconds=int(args))  # type: ignore[call-overload]
        if op == "OLDER":
            return lambda m: m.summary.internal_date <= cutoff
        return lambda m: m.summary.internal_date > cutoff
    if op == "MODSEQ":
        return lambda m: m.summary.modseq >= args  # type: ignore[operator]
    if op == "SEQSET":
        return _in_set(args, context, lambda m: m.number, len(view.uids))  # type: ignore[arg-type]
    if op == "UID":
        largest = view.uids[-1] if view.uids else 0
        return _in_set(args, context, lambda m: m.summary.uid, largest)  # type: ignore[arg-type]
    raise ValueError(f"unknown search key {op}")


def _in_set(
    sequence: SequenceSet, context: _Context, value: Callable[[_Message], int], largest: int
) -> Predicate:
    if sequence.saved:
        saved = context.saved
        return lambda m: m.summary.uid in saved
    spans = sequence.resolve(largest)
    return lambda m: any(low <= value(m) <= high for low, high in spans)


def _date_comparison(op: str, day: datetime.date) -> Callable[[datetime.date], bool]:
    """RFC 9051 6.4.4: dates disregard time and timezone."""
    if op == "BEFORE":
        return lambda d: d < day
    if op == "ON":
        return lambda d: d == day
    return lambda d: d >= day


def _header_contains(name: str, needle: str) -> Predicate:
    """Case-insensitive substring of the decoded header; an empty needle matches
    any message that has the field (RFC 9051 6.4.4 HEADER)."""
    folded = needle.casefold()

    def predicate(message: _Message) -> bool:
        if message.header is None:
            return False
        values = top_field_values(message.header, name)
        return any(folded in value.casefold() for value in values)

    return predicate
