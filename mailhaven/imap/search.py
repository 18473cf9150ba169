"""Evaluation of SEARCH keys against a selected mailbox (RFC 9051 section 6.4.4,
RFC 3501 section 6.4.4, RFC 5032 WITHIN, RFC 7162 MODSEQ, RFC 8514 SAVEDATE,
RFC 8474 EMAILID/THREADID).

Keys about flags, numbers, sizes and dates are answered from the selected view in
memory.  BODY and TEXT go to the store's text index (one query per distinct needle,
before the per-message pass).  Header keys need each message's stored header: the
text index first narrows them to the messages whose decoded text (headers included)
contains the needle, and only those candidates are loaded and checked field by field.
The SENT* keys need every message's Date, so they load every header.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhaven.codec.commands import SearchKey, SequenceSet
from mailhaven.imap.search_columns import FLAG_KEYS as _FLAG_KEYS
from mailhaven.imap.search_columns import matching_uids_from_columns
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.mime import MessageMetadata, header_value
from mailhaven.storage.interface import MessageObjectData, MessageSummary, Storage

BATCH = 512

_ADDRESS_KEYS = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject"}
_TEXT_KEYS = {"BODY": False, "TEXT": True}
_SENT_KEYS = frozenset({"SENTBEFORE", "SENTON", "SENTSINCE"})
_HEADER_KEYS = frozenset({*_ADDRESS_KEYS, "HEADER", *_SENT_KEYS})
_OBJECT_KEYS = frozenset({"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE", "EMAILID"})


@dataclass(slots=True)
class _Message:
    number: int
    summary: MessageSummary
    raw: bytes | None = None
    metadata: MessageMetadata | None = None
    objects: MessageObjectData | None = None


@dataclass
class _Context:
    view: SelectedMailbox
    saved: set[int]
    now: datetime.datetime
    text_hits: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    header_hits: dict[str, set[int]] = field(default_factory=dict)  # needle: candidates


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
    for op, needle in _text_needles(key):
        if (op, needle) not in context.text_hits:
            context.text_hits[(op, needle)] = await storage.search_text(
                view.mailbox.id, needle, headers=_TEXT_KEYS[op]
            )
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
            contents = await storage.fetch_content(
                view.mailbox.id, to_load, raw=True, metadata=True
            )
            by_uid = {content.uid: content for content in contents}
            for message in messages:
                content = by_uid.get(message.summary.uid)
                if content is not None and content.metadata is not None:
                    message.raw = content.raw
                    message.metadata = MessageMetadata.from_bytes(content.metadata)
        if needs_objects:
            found = await storage.object_data(view.mailbox.id, batch)
            by_uid_objects = {item.uid: item for item in found}
            for message in messages:
                message.objects = by_uid_objects.get(message.summary.uid)
        matches.extend(m.summary.uid for m in messages if predicate(m))
    return matches


def _numbered_messages(view: SelectedMailbox, required: set[int] | None) -> list[tuple[int, int]]:
    """(sequence number, UID) of the messages to evaluate, in sequence order: all of
    them, or only those in *required* (UIDs ascend with sequence numbers)."""
    if required is None:
        return list(enumerate(view.uids, start=1))
    numbered = ((view.sequence_number(uid), uid) for uid in sorted(required))
    return [(number, uid) for number, uid in numbered if number is not None]


def _required_uids(key: SearchKey, context: _Context) -> set[int] | None:
    """A set of UIDs outside which no message can match *key*, or None when any
    message may: text keys need an index hit, header keys a header candidate, and
    AND/OR combine those.  SEARCH of a rare word then looks at its few hits instead
    of every message of the mailbox."""
    op, args = key.op, key.args
    if op in _TEXT_KEYS:
        return context.text_hits[(op, args)]  # type: ignore[index]
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


async def _header_candidates(
    storage: Storage, view: SelectedMailbox, key: SearchKey, context: _Context
) -> set[int] | None:
    """The only messages a header key can match, or None when every message's header
    is needed (SENT* keys).  Sound because the indexed header text is each top-level
    field's decoded value (the same decoding the field check uses), casefolded: a
    field containing the needle puts the needle in that text."""
    for needle in _header_needles(key):
        if needle not in context.header_hits:
            context.header_hits[needle] = await storage.search_text(
                view.mailbox.id, needle, headers=True
            )
    if _uses(key, _SENT_KEYS):
        return None
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
    if op in ("BEFORE", "ON", "SINCE"):
        compare = _date_comparison(op, args)  # type: ignore[arg-type]
        return lambda m: compare(m.summary.internal_date.date())
    if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        compare = _date_comparison(op[4:], args)  # type: ignore[arg-type]
        return lambda m: (
            bool(m.metadata and m.metadata.sent_date)
            and compare(
                m.metadata.sent_date.date()  # type: ignore[union-attr]
            )
        )
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
        if message.raw is None or message.metadata is None:
            return False
        values = header_value(message.raw, message.metadata, name)
        return any(folded in value.casefold() for value in values)

    return predicate
