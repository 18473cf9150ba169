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
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from mailhaven.codec import responses, wire
from mailhaven.codec.commands import SequenceSet
from mailhaven.storage.interface import Mailbox, MailboxNotFound, MessageSummary, Storage

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


@dataclass
class SelectedMailbox:
    """One session's view of its selected mailbox."""

    mailbox: Mailbox
    readonly: bool
    uids: list[int]
    summaries: dict[int, MessageSummary]
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

    @classmethod
    async def open(cls, storage: Storage, mailbox: Mailbox, readonly: bool) -> SelectedMailbox:
        summaries = await storage.message_summaries(mailbox.id)
        recent = set() if readonly else await storage.claim_recent(mailbox.id)
        view = cls(
            mailbox=mailbox,
            readonly=readonly,
            uids=[s.uid for s in summaries],
            summaries={s.uid: s for s in summaries},
            known_modseq=max(mailbox.highest_modseq, max((s.modseq for s in summaries), default=0)),
            recent=recent,
        )
        view.keywords = view._all_keywords()
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

    def sequence_number(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

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

    # ------------------------------------------------------------- flags

    def flags_response(self) -> responses.Data:
        return responses.flags([*SYSTEM_FLAGS, *sorted(self.keywords)])

    def permanent_flags_code(self) -> bytes:
        names = [*SYSTEM_FLAGS, *sorted(self.keywords), "\\*"]
        return b"PERMANENTFLAGS " + wire.flag_list(names)

    def flag_list_of(self, uid: int) -> bytes:
        """The encoded FLAGS value of *uid* (RFC 9051 section 7.5.2): system flags
        first, then keywords, then ``\\Recent`` if this session holds it."""
        return _encoded_flags(self.summaries[uid].flags, uid in self.recent)

    def _all_keywords(self) -> set[str]:
        # Messages share their flag sets (see storage.flags.parse_flags): look at
        # each distinct set once rather than at every message's.
        distinct = {s.flags for s in self.summaries.values()}
        return {f for flags in distinct for f in flags if not f.startswith("\\")}

    def record_own_changes(self, changed: Sequence[MessageSummary]) -> None:
        """Note flag changes this session made and reported itself (STORE), so
        :meth:`refresh` does not report them again as unsolicited FETCH."""
        for summary in changed:
            if summary.uid in self.summaries:
                self.summaries[summary.uid] = summary
                self._pending_flag_updates.discard(summary.uid)
                self.keywords.update(f for f in summary.flags if not f.startswith("\\"))

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
            # Another session deleted the mailbox: to this session every message is
            # expunged (RFC 2180 section 3.2), reported when EXPUNGE is allowed.
            self._pending_expunges.update(self.summaries)
            return
        if changes.highest_modseq <= self.known_modseq:
            return
        new_uids: list[int] = []
        last = self.uids[-1] if self.uids else 0
        for summary in changes.changed:
            known = self.summaries.get(summary.uid)
            if known is None:
                if summary.uid > last and summary.uid not in changes.expunged:
                    new_uids.append(summary.uid)
                    self.summaries[summary.uid] = summary
                continue
            if known.flags != summary.flags:
                self._pending_flag_updates.add(summary.uid)
            self.summaries[summary.uid] = summary
            self.keywords.update(f for f in summary.flags if not f.startswith("\\"))
        if not self._pending_expunges:
            self._modseq_before_pending_expunges = self.known_modseq
        for uid in changes.expunged:
            if uid in self.summaries and uid not in new_uids:
                self._pending_expunges.add(uid)
        if new_uids:
            new_uids.sort()
            self.uids.extend(new_uids)
            if not self.readonly:
                claimed = await storage.claim_new_recent(self.mailbox.id, changes.highest_modseq)
                self.recent.update(claimed)
        self.known_modseq = changes.highest_modseq
        self.mailbox = replace(
            self.mailbox, uidnext=changes.uidnext, highest_modseq=changes.highest_modseq
        )

    def remove_expunged(self, expunged: Iterable[int]) -> list[int]:
        """Drop UIDs this session expunged itself; returns their sequence numbers
        in the order the EXPUNGE responses must be sent (each computed after the
        previous removal, RFC 9051 section 7.5.1)."""
        numbers = []
        for uid in sorted(expunged):
            self._pending_expunges.discard(uid)
            number = self.sequence_number(uid)
            if number is None:
                continue
            numbers.append(number)
            self._forget(number, uid)
        return numbers

    def _forget(self, number: int, uid: int) -> None:
        del self.uids[number - 1]
        self.summaries.pop(uid, None)
        self.recent.discard(uid)
        self._pending_flag_updates.discard(uid)
        self._reported_count -= 1

    def drain_updates(self, *, allow_expunge: bool) -> list[responses.Data]:
        """The untagged responses owed to the client, in a safe order."""
        out: list[responses.Data] = []
        if allow_expunge and self._pending_expunges:
            expunged = sorted(self._pending_expunges)
            if self.qresync:
                for uid in expunged:
                    number = self.sequence_number(uid)
                    if number is not None:
                        self._forget(number, uid)
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
            items.append((b"MODSEQ", b"(%d)" % self.summaries[uid].modseq))
        return items


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
