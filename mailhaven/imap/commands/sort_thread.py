"""SORT, THREAD and their UID forms (RFC 5256 section 3), with the DISPLAYFROM and
DISPLAYTO sort keys (RFC 5957 section 4).

Matching reuses SEARCH's evaluation; the sort values come from the metadata
stored at delivery (``mime/sortkeys.py``), loaded in batches without the raw
message.  Messages stored before sort values were part of the metadata are read
once more to compute them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.commands.search import _uses_modseq
from mailhaven.imap.search import matching_uids
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.session import Session
from mailhaven.imap.threading import ThreadMessage, encode_threads, ordered_subject, references
from mailhaven.mime import MessageMetadata, SortData, sort_values

BATCH = 512


@dataclass(frozen=True, slots=True)
class _Sortable:
    uid: int
    position: int  # sequence number: the implicit last sort key (RFC 5256 section 3)
    sort: SortData
    sent: float


_SORT_VALUES: dict[str, Callable[[SelectedMailbox, _Sortable], object]] = {
    "ARRIVAL": lambda view, m: view.internal_date_of(m.uid).timestamp(),
    "DATE": lambda view, m: m.sent,
    "SIZE": lambda view, m: view.size_of(m.uid),
    "SUBJECT": lambda view, m: m.sort.base_subject,
    "FROM": lambda view, m: m.sort.from_mailbox,
    "TO": lambda view, m: m.sort.to_mailbox,
    "CC": lambda view, m: m.sort.cc_mailbox,
    "DISPLAYFROM": lambda view, m: m.sort.from_display,
    "DISPLAYTO": lambda view, m: m.sort.to_display,
}


async def sort(session: Session, command: c.Sort) -> Tagged:
    view = session.require_selected()
    uids = await matching_uids(
        session.storage, view, command.key, saved=set(session.saved_search or ())
    )
    messages = await _sortables(session, view, uids)
    # Stable sorts from the last criterion to the first: ties keep the order of
    # the next criterion and finally the sequence order (REVERSE keeps stability).
    for criterion in reversed(command.criteria):
        value = _SORT_VALUES[criterion.key]
        messages.sort(key=lambda m, value=value: value(view, m), reverse=criterion.reverse)  # type: ignore[misc]
    numbers = [m.uid if command.uid else m.position for m in messages]
    payload = b" ".join([b"SORT", *(b"%d" % n for n in numbers)])
    if _uses_modseq(command.key) and uids:  # RFC 7162 section 3.1.5
        payload += b" (MODSEQ %d)" % max(map(view.modseq_of, uids))
    await session.send(responses.Data(payload))
    return Tagged(command.tag, "OK", "SORT completed")


async def thread(session: Session, command: c.Thread) -> Tagged:
    view = session.require_selected()
    uids = await matching_uids(
        session.storage, view, command.key, saved=set(session.saved_search or ())
    )
    messages = [
        ThreadMessage(
            number=m.uid if command.uid else m.position,
            position=m.position,
            sent=m.sent,
            sort=m.sort,
        )
        for m in await _sortables(session, view, uids)
    ]
    algorithm = ordered_subject if command.algorithm == "ORDEREDSUBJECT" else references
    payload = encode_threads(algorithm(messages))
    await session.send(responses.Data(b"THREAD " + payload if payload else b"THREAD"))
    return Tagged(command.tag, "OK", "THREAD completed")


async def _sortables(session: Session, view: SelectedMailbox, uids: list[int]) -> list[_Sortable]:
    result: list[_Sortable] = []
    for start in range(0, len(uids), BATCH):
        batch = uids[start : start + BATCH]
        loaded = await session.storage.fetch_content(
            view.mailbox.id, batch, raw=False, metadata=True
        )
        metadata = {
            content.uid: MessageMetadata.from_bytes(content.metadata)
            for content in loaded
            if content.metadata is not None
        }
        stale = [uid for uid, meta in metadata.items() if meta.sort is None]
        raw: dict[int, bytes] = {}
        if stale:
            for content in await session.storage.fetch_content(
                view.mailbox.id, stale, raw=True, metadata=False
            ):
                raw[content.uid] = content.raw or b""
        for uid in batch:
            position = view.sequence_number(uid)
            if uid not in metadata or position is None:
                continue  # expunged meanwhile by another session
            meta = metadata[uid]
            result.append(
                _Sortable(
                    uid=uid,
                    position=position,
                    sort=sort_values(raw.get(uid, b""), meta),
                    sent=_sent_timestamp(meta, view.internal_date_of(uid)),
                )
            )
    return result


def _sent_timestamp(metadata: MessageMetadata, internal_date: datetime.datetime) -> float:
    """RFC 5256 section 2.2: the Date: header in UTC (a date without zone counts
    as UTC), else the INTERNALDATE."""
    sent = metadata.sent_date
    if sent is None:
        return internal_date.timestamp()
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=datetime.UTC)
    return sent.timestamp()
