"""From the text index's hits to a mailbox's UIDs, in Python from a per-process map.

The FTS5 table indexes stored contents (its rowids are content ids) while SEARCH
answers with a mailbox's UIDs.  Joining each hit to ``messages`` in SQL cost about
2,000 instructions a hit (a seek in ``messages_by_content``), a fifth of a word found
in a third of a 100,000-message mailbox, and the UIDs then came back to Python as
text to be turned into integers.  Here the index hands back only its rowids, as one
``group_concat`` string, and a map from content id to UID, kept per mailbox and
process, turns each into a UID with one dictionary lookup of the decimal text as
SQLite wrote it (no integer parsing).

The map is built from one read of the mailbox's (UID, content id) pairs and brought up
to date from what changed since, like the column snapshots
(:mod:`mailhaven.storage.column_cache`): a (mailbox, UID) pair names the same content
for the life of the mailbox's UIDVALIDITY (UIDs are never reused, RFC 9051 section
2.3.1.1, and content ids come from a counter that never hands one out twice), so only
messages with a UID above the last one mapped are new, and the expunge records (kept
for QRESYNC, RFC 7162) name the ones that went.  Each map belongs to one modseq of the
mailbox: a search reads the mailbox row, the map and the index in one read transaction,
so its UIDs are exactly the matching messages at that modseq, which the caller compares
with the modseq its view has seen.

The index covers the contents up to its watermark (:mod:`mailhaven.storage.text_backlog`),
read in the same transaction; the few above it, stored but not yet indexed, are matched
by scanning their text for the needle, the substring definition itself, so what the
search finds does not depend on how far the index has come.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from collections.abc import Iterable

from mailhaven.storage import text_backlog
from mailhaven.storage.interface import Mailbox, TextHits
from mailhaven.storage.mailbox_lru import DEFAULT_BUDGET, Kept, MailboxLru, too_many_changes

# FTS5 seeks to a rowid range in each doclist: a common word among 1,000 consecutive
# contents of a 100,000-content index costs 0.9 ms instead of 26 ms.
_INDEX_HITS = (
    "SELECT group_concat(rowid) FROM contents_fts"
    " WHERE contents_fts MATCH ? AND rowid BETWEEN ? AND ?"
)
# CROSS JOIN keeps the index query as the outer loop, run once; each hit finds its
# messages in messages_by_content.
_JOINED_UIDS = (
    "SELECT group_concat(m.uid) FROM contents_fts AS f CROSS JOIN messages AS m"
    " ON m.content_id = f.rowid WHERE f.contents_fts MATCH ? AND m.mailbox_id = ?"
)
# The substring definition itself, on a content ``c``'s casefolded text: what the index
# answers, and what answers without it (contents above the watermark, not yet in the
# index, and needles too short to have a trigram).
SUBSTRING_MATCH = (
    "(instr(c.body_text, :needle) > 0 OR (:headers AND instr(c.header_text, :needle) > 0))"
)
_TAIL_HITS = (
    "SELECT group_concat(c.id) FROM contents AS c"
    f" WHERE c.id > :after AND c.id BETWEEN :low AND :high AND {SUBSTRING_MATCH}"
)
_TAIL_UIDS = (
    "SELECT group_concat(m.uid) FROM contents AS c CROSS JOIN messages AS m"
    " ON m.content_id = c.id WHERE c.id > :after AND m.mailbox_id = :mailbox"
    f" AND {SUBSTRING_MATCH}"
)
_NO_CONTENT_ID = 2**63  # above every content id (SQLite's integers are 64-bit)

_ALL_PAIRS = "SELECT uid, content_id FROM messages WHERE mailbox_id = ? ORDER BY uid"
_PAIRS_AFTER = "SELECT uid, content_id FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid"
_EXPUNGED_AFTER = (
    "SELECT uid FROM expunged INDEXED BY expunged_by_modseq WHERE mailbox_id = ? AND modseq > ?"
)


class _Pairs:
    """Every (UID, content id) of one mailbox incarnation that a process has read, from
    one full read on: only ever added to (UIDs and content ids are never reused), and
    shared by the :class:`ContentUids` of each modseq, which say which of them are the
    mailbox's at that modseq.  Changed and read under its lock."""

    __slots__ = ("single", "shared", "last_uid", "count", "lowest", "highest", "lock")

    def __init__(self) -> None:
        # A content is usually held by one message of a mailbox; a COPY within the
        # mailbox makes one held by several: their further UIDs are kept apart, so
        # that the common lookup is one dict.get a hit.
        self.single: dict[str, int] = {}  # content id (decimal) -> the first UID holding it
        self.shared: dict[str, tuple[int, ...]] = {}  # content id -> further UIDs
        self.last_uid = 0
        self.count = 0
        # The content ids of every pair lie within [lowest, highest]: the index need
        # not look elsewhere for this mailbox's hits.
        self.lowest = _NO_CONTENT_ID
        self.highest = -1
        self.lock = threading.Lock()

    def add(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Add the (UID, content id) *pairs* above ``last_uid``, in UID order."""
        single, shared = self.single, self.shared
        with self.lock:
            for uid, content_id in pairs:
                if uid <= self.last_uid:
                    continue  # another reader added it already
                key = str(content_id)
                if key not in single:
                    single[key] = uid
                else:
                    shared[key] = (*shared.get(key, ()), uid)
                self.last_uid = uid
                self.count += 1
                if content_id < self.lowest:
                    self.lowest = content_id
                if content_id > self.highest:
                    self.highest = content_id


class ContentUids:
    """One mailbox's content id -> UID map at one modseq: the messages of its
    :class:`_Pairs` up to ``last_uid``, less those expunged since the full read
    (``gone``).  A newer modseq adds to the shared pairs and makes a new object;
    bringing the map up to date costs the changes, not the mailbox."""

    __slots__ = ("uidvalidity", "modseq", "last_uid", "_gone", "_pairs")

    def __init__(
        self,
        uidvalidity: int,
        modseq: int,
        last_uid: int,
        gone: frozenset[int],
        pairs: _Pairs,
    ) -> None:
        self.uidvalidity = uidvalidity
        self.modseq = modseq
        self.last_uid = last_uid
        self._gone = gone
        self._pairs = pairs

    @classmethod
    def of_pairs(
        cls, uidvalidity: int, modseq: int, pairs: Iterable[tuple[int, int]]
    ) -> ContentUids:
        """The map of a mailbox whose messages are *pairs* of (UID, content id), in
        UID order."""
        store = _Pairs()
        store.add(pairs)
        return cls(uidvalidity, modseq, store.last_uid, frozenset(), store)

    def __len__(self) -> int:
        """How many messages the map holds (those expunged since it was read too, until
        it is read again: that is what it costs in memory)."""
        return self._pairs.count

    def content_range(self) -> tuple[int, int]:
        """Bounds of the content ids of the map's messages (an empty range, low above
        high, when it has none); those of messages added for a later modseq may widen
        it, which only lets through hits that :meth:`uids_of` skips."""
        with self._pairs.lock:
            return self._pairs.lowest, self._pairs.highest

    def uids_of(self, content_ids: list[str]) -> list[int]:
        """The UIDs, ascending, of the messages holding any of *content_ids* (decimal
        text); ids of contents that no message of the mailbox holds are skipped."""
        pairs = self._pairs
        with pairs.lock:
            found = list(filter(None, map(pairs.single.get, content_ids)))
            if pairs.shared:
                for content_id in pairs.shared.keys() & set(content_ids):
                    found.extend(pairs.shared[content_id])
            newest = pairs.last_uid
        # Content ids usually rise with UIDs, and sorting a sorted list is one pass.
        found.sort()
        if newest > self.last_uid:  # messages added for a later modseq
            del found[bisect.bisect_right(found, self.last_uid) :]
        return _without(found, self._gone)

    def advanced(
        self, added: list[tuple[int, int]], expunged: list[int], modseq: int
    ) -> ContentUids | None:
        """This map with the messages *added* ((UID, content id), all above
        ``last_uid``, in UID order) and without the *expunged* UIDs, at *modseq*; None
        when so much changed, or has been expunged since the full read, that reading
        the mailbox again is as cheap."""
        gone = self._gone.union(expunged) if expunged else self._gone
        # Filtering the UIDs expunged since the read out of every answer counts too.
        if too_many_changes(max(len(added) + len(expunged), len(gone)), len(self)):
            return None
        last_uid = self.last_uid
        if added:
            last_uid = added[-1][0]
            self._pairs.add(added)
        return ContentUids(self.uidvalidity, modseq, last_uid, gone, self._pairs)


def _without(uids: list[int], gone: frozenset[int]) -> list[int]:
    """*uids* (ascending) less those in *gone*: a few removed by bisection, many by
    one pass."""
    if not gone:
        return uids
    if len(gone) * 32 > len(uids):
        return [uid for uid in uids if uid not in gone]
    for uid in gone:
        index = bisect.bisect_left(uids, uid)
        if index < len(uids) and uids[index] == uid:
            del uids[index]
    return uids


def _brought_up_to_date(
    conn: sqlite3.Connection, mailbox_id: int, cached: ContentUids, modseq: int
) -> ContentUids | None:
    added = conn.execute(_PAIRS_AFTER, (mailbox_id, cached.last_uid)).fetchall()
    expunged = [uid for (uid,) in conn.execute(_EXPUNGED_AFTER, (mailbox_id, cached.modseq))]
    return cached.advanced(added, expunged, modseq)


def search(
    conn: sqlite3.Connection,
    mailbox: Mailbox,
    phrase: str,
    cache: ContentUidsCache,
    needle: str,
    headers: bool,
) -> TextHits:
    """The messages of *mailbox* (its row as *conn*'s read transaction sees it) whose
    text matches the FTS5 *phrase*, the query for the casefolded *needle* in the body
    (with *headers*, in the header too)."""
    mailbox_id, modseq = mailbox.id, mailbox.highest_modseq
    indexed_through = text_backlog.watermark(conn)
    tail = {"needle": needle, "headers": headers, "after": indexed_through}
    contents = cache.current(conn, mailbox_id, mailbox.uidvalidity, modseq)
    if contents is None:
        # Not mapped (see ContentUidsCache.current): the hits are joined to their
        # messages in SQL instead.
        (found,) = conn.execute(_JOINED_UIDS, (phrase, mailbox_id)).fetchone()
        (unindexed,) = conn.execute(_TAIL_UIDS, {**tail, "mailbox": mailbox_id}).fetchone()
        found = ",".join(filter(None, (found, unindexed)))
        return TextHits(modseq, sorted(map(int, found.split(","))) if found else [])
    low, high = contents.content_range()
    if low > high:
        return TextHits(modseq, [])  # an empty mailbox: no need to ask the index
    hits = index_hits(conn, phrase, low, min(high, indexed_through))
    if high > indexed_through:
        (unindexed,) = conn.execute(_TAIL_HITS, {**tail, "low": low, "high": high}).fetchone()
        if unindexed:
            hits.extend(unindexed.split(","))
    return TextHits(modseq, contents.uids_of(hits))


def index_hits(conn: sqlite3.Connection, phrase: str, low: int, high: int) -> list[str]:
    """The content ids (decimal, as SQLite writes them) from *low* to *high* matching
    *phrase*: one string from SQLite rather than a row a hit (a row costs about 2,700
    instructions).  The index covers every mailbox of every user; the range keeps a
    small or recent mailbox from paying for the whole store's hits."""
    if low > high:
        return []  # every content of the range is above the watermark
    (found,) = conn.execute(_INDEX_HITS, (phrase, low, high)).fetchone()
    return found.split(",") if found else []


class ContentUidsCache:
    """A bounded LRU of the maps of recently searched mailboxes; safe to use from
    several threads (the reader threads share it)."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._kept: MailboxLru[ContentUids] = MailboxLru(budget)
        self._lock = threading.Lock()
        # Mailboxes (id: UIDVALIDITY) whose map alone was over the budget.
        self._too_large: dict[int, int] = {}

    def current(
        self, conn: sqlite3.Connection, mailbox_id: int, uidvalidity: int, modseq: int
    ) -> ContentUids | None:
        """The map of the mailbox as *conn*'s read transaction sees it (its row said
        *uidvalidity* and *modseq*): the cached one, brought up to date if it is older,
        or read in full.  None when reading it would cost more than the map saves: for a
        mailbox found larger than the whole budget (it would be read for every search),
        and for a transaction older than the cached map (a search that began before a
        change another search has already mapped; the map cannot be taken back to an
        earlier modseq, and reading it in full for one search costs 110-210 ms at
        100,000 messages)."""
        with self._lock:
            if self._too_large.get(mailbox_id) == uidvalidity:
                return None
        kept = self._kept.get(mailbox_id)
        if kept is not None and kept.uidvalidity == uidvalidity:
            cached = kept.value
            if cached.modseq == modseq:
                return cached
            if cached.modseq > modseq:
                return None
            advanced = _brought_up_to_date(conn, mailbox_id, cached, modseq)
            if advanced is not None:
                self._put(mailbox_id, advanced)
                return advanced
        fresh = ContentUids.of_pairs(uidvalidity, modseq, conn.execute(_ALL_PAIRS, (mailbox_id,)))
        self._put(mailbox_id, fresh)
        return fresh

    def _put(self, mailbox_id: int, entry: ContentUids) -> None:
        if not self._kept.put(mailbox_id, Kept(entry.uidvalidity, entry.modseq, len(entry), entry)):
            with self._lock:
                self._too_large[mailbox_id] = entry.uidvalidity
