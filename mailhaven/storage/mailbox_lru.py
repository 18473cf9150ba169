"""What a process keeps of a mailbox as it was at one modseq, between reads: the columns
SELECT needs (:mod:`mailhaven.storage.column_cache`) and the content id -> UID map of
SEARCH (:mod:`mailhaven.storage.text_hits`).

Both are read once and then brought up to date from what changed since (every change
takes a new modseq, RFC 7162 section 3.1.1), both are shared by the reader threads, and
both are bounded by the messages they hold over every mailbox of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, NamedTuple, TypeVar

# Messages kept over all the mailboxes of one cache (about 40 bytes each for the columns,
# about 125 for a content id map: a dictionary entry, the id's decimal text, the UID).
DEFAULT_BUDGET = 250_000
# Past this share of the mailbox changed, reading it again costs no more than applying
# the changes one by one.
_MOST_CHANGES_APPLIED = 4

V = TypeVar("V")


def too_many_changes(changes: int, messages: int) -> bool:
    """Whether *changes* to what was read of a mailbox of *messages* messages cost as
    much to apply one by one as reading the mailbox again."""
    return changes * _MOST_CHANGES_APPLIED > max(messages, 64)


class Kept(NamedTuple, Generic[V]):
    uidvalidity: int  # of the mailbox incarnation the value belongs to
    modseq: int  # the mailbox's modseq the value is current at
    size: int  # messages it holds, counted against the budget
    value: V


class MailboxLru(Generic[V]):
    """A bounded LRU of one kept value per mailbox; safe to use from several threads."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._entries: OrderedDict[int, Kept[V]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, mailbox_id: int) -> Kept[V] | None:
        """What is kept of the mailbox, now the most recently used."""
        with self._lock:
            kept = self._entries.get(mailbox_id)
            if kept is not None:
                self._entries.move_to_end(mailbox_id)
            return kept

    def put(self, mailbox_id: int, kept: Kept[V]) -> bool:
        """Keep *kept* in place of what is kept of the mailbox, unless that is a later
        state of the same incarnation (another reader stored it first).  False when
        *kept* alone is over the budget: then nothing of the mailbox is kept."""
        with self._lock:
            old = self._entries.get(mailbox_id)
            if old is not None:
                if old.uidvalidity == kept.uidvalidity and old.modseq > kept.modseq:
                    return True
                self._size -= old.size
                del self._entries[mailbox_id]
            if kept.size > self._budget:
                return False
            self._entries[mailbox_id] = kept
            self._size += kept.size
            while self._size > self._budget:
                _, evicted = self._entries.popitem(last=False)
                self._size -= evicted.size
            return True
