"""IDLE's fan-out: one commit tells every idling session of the mailbox at once.

A commit wakes every session idling on the mailbox (RFC 2177; RFC 9051 section
6.3.13).  Woken one task each, 10,000 idlers cost 10,000 task switches, each through
a storage round trip and a write that may wait, and the objects of all those
suspended coroutines live long enough for the garbage collector to promote them:
at 10,000 idlers its full collections were most of the fan-out's time.  Here one
task per mailbox reads the change once per distinct "changes since" question and
then, in one pass, folds it into each parked idler's view and writes the untagged
responses straight to its socket.  Nothing per idler outlives the pass.

Only an idler that is *parked* -- its IDLE waiting for a wake, nothing of its output
still waiting in the connection -- is served this way.  Any other (busy, at another
modseq, slow to read) is woken as before and refreshes itself in its own task, where
its writes wait with back-pressure: a client that does not read cannot hold up the
others, nor make the server buffer more than one small response for it.

``\\Recent`` (RFC 3501 section 2.3.2): one session gets each new message's flag.  In
a pass that sees new messages, the first writable idler that may change flags owes
the claim (:meth:`SelectedMailbox.owe_recent_claim`) and is woken to make it in its own
refresh, where it waits for the writer; its EXISTS has gone out with the others'.  Its
claim covers the change, so the other idlers of the pass would get nothing from
theirs and skip it (:class:`mailhaven.storage.coalesce.RecentClaims` gives sessions
that do ask the same answer).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from mailhaven.imap.selected import Arrivals
from mailhaven.storage.interface import Changes, MailboxNotFound, Storage

if TYPE_CHECKING:
    from mailhaven.imap.selected import SelectedMailbox
    from mailhaven.imap.session import Session

log = logging.getLogger("mailhaven.idle")


class Waiter(Protocol):
    """What the IDLE command waits on (``idle._Wakeup``)."""

    @property
    def parked(self) -> bool:
        """True while the IDLE waits for a wake and does nothing else."""

    def wake(self) -> None: ...


Members = dict["Session", Waiter]


class IdleFanOut:
    """The idling sessions of one server process, by mailbox, served one pass per
    change.  The change hub calls this once per commit, not once per idler."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._idlers: dict[int, Members] = {}  # mailbox id -> sessions idling on it
        self._delivering: set[int] = set()
        self._published_again: set[int] = set()  # during a pass: another one follows
        self._tasks: set[asyncio.Task[None]] = set()  # held until done (asyncio keeps weak ones)

    def enter(self, session: Session, waiter: Waiter) -> int | None:
        """Serve *session*'s IDLE until :meth:`leave`; returns the mailbox id to leave
        with (None when no mailbox is selected: nothing to report)."""
        view = session.selected
        if view is None:
            return None
        mailbox_id = view.mailbox.id
        idlers = self._idlers.get(mailbox_id)
        if idlers is None:
            idlers = self._idlers[mailbox_id] = {}
            self._storage.changes.subscribe(mailbox_id, self._changed)
        idlers[session] = waiter
        return mailbox_id

    def leave(self, mailbox_id: int, session: Session) -> None:
        idlers = self._idlers.get(mailbox_id)
        if idlers is None:
            return
        idlers.pop(session, None)
        if not idlers:
            del self._idlers[mailbox_id]
            self._storage.changes.unsubscribe(mailbox_id, self._changed)

    def _changed(self, mailbox_id: int) -> None:
        if mailbox_id in self._delivering:
            self._published_again.add(mailbox_id)
            return
        self._delivering.add(mailbox_id)
        task = asyncio.get_running_loop().create_task(self._deliver(mailbox_id))
        self._hold(task)

    def _hold(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, mailbox_id: int) -> None:
        try:
            while True:
                self._published_again.discard(mailbox_id)
                await self._pass(mailbox_id)
                if mailbox_id not in self._published_again:
                    return
        finally:
            self._delivering.discard(mailbox_id)

    async def _pass(self, mailbox_id: int) -> None:
        """Serve every idler of the mailbox: one read per distinct modseq the idlers'
        views have seen (normally one), then one synchronous sweep."""
        pending = dict(self._idlers.get(mailbox_id, {}))
        while pending:
            first, first_waiter = next(iter(pending.items()))
            view = first.selected
            if view is None or not first_waiter.parked:
                del pending[first]
                first_waiter.wake()
                continue
            modseq = view.known_modseq
            try:
                changes = await self._storage.changes_since(mailbox_id, modseq)
            except Exception as error:  # each session's own refresh deals with it
                if not isinstance(error, MailboxNotFound):
                    log.exception("reading the changes for idling sessions failed")
                for waiter in pending.values():
                    waiter.wake()
                return
            pending = self._sweep(mailbox_id, modseq, changes, pending, first)

    def _sweep(
        self, mailbox_id: int, modseq: int, changes: Changes, pending: Members, first: Session
    ) -> Members:
        """Fold *changes* into every parked idler's view that has seen exactly
        *modseq* and write its updates; wake the idlers that cannot be served now.
        Returns the idlers at other modseqs, for another read."""
        others: Members = {}
        claimer: tuple[Waiter, SelectedMailbox] | None = None
        arrivals = Arrivals.of(changes)
        for session, waiter in pending.items():
            view = session.selected
            if not _servable(session, waiter, view, mailbox_id):
                waiter.wake()  # its own task refreshes and writes, waiting as it must
                continue
            assert view is not None
            if view.known_modseq != modseq:
                if session is first:  # moved on meanwhile: let it refresh itself
                    waiter.wake()
                else:
                    others[session] = waiter
                continue
            if view.apply_changes(changes, arrivals) and not view.readonly and claimer is None:
                claimer = (waiter, view)
            session.send_now(view.drain_updates(allow_expunge=True))
        if claimer is not None:
            claimer_waiter, claimer_view = claimer
            claimer_view.owe_recent_claim(changes.highest_modseq)
            claimer_waiter.wake()
        return others


def _servable(
    session: Session, waiter: Waiter, view: SelectedMailbox | None, mailbox_id: int
) -> bool:
    """Whether a pass may update *view* and write for *session* right now: parked in
    IDLE on this mailbox, with nothing of its output waiting."""
    return (
        waiter.parked
        and view is not None
        and view.mailbox.id == mailbox_id
        and session.can_send_now()
    )
