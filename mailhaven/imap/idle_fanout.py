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

``\\Recent`` (RFC 3501 section 2.3.2): one session gets each new message's flag.  The
first writable idler of a pass that saw new messages claims them; the claim covers
the change, so the other idlers of the pass would get nothing from theirs and skip it
(:class:`mailhaven.storage.coalesce.RecentClaims` gives the same answer to sessions
that do ask).  Its EXISTS goes out with the others; its RECENT follows the claim.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

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
    """The idling sessions of one server process, served one pass per change."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._waiting: dict[int, Members] = {}  # mailbox id -> idlers to serve
        self._delivering: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # held until done (asyncio keeps weak ones)

    def changed(self, session: Session, waiter: Waiter) -> None:
        """The change hub's call for an idling session: queue it for the next pass of
        its mailbox, or wake it when it is not parked."""
        view = session.selected
        if view is None or not waiter.parked:
            waiter.wake()
            return
        mailbox_id = view.mailbox.id
        self._waiting.setdefault(mailbox_id, {})[session] = waiter
        if mailbox_id not in self._delivering:
            self._delivering.add(mailbox_id)
            self._spawn(self._deliver(mailbox_id))

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, mailbox_id: int) -> None:
        try:
            while batch := self._waiting.pop(mailbox_id, None):
                for modseq, members in _by_known_modseq(batch).items():
                    await self._deliver_group(mailbox_id, modseq, members)
        finally:
            self._delivering.discard(mailbox_id)

    async def _deliver_group(self, mailbox_id: int, modseq: int, members: Members) -> None:
        try:
            changes = await self._storage.changes_since(mailbox_id, modseq)
        except MailboxNotFound:
            changes = None  # each session's own refresh reports the expunges
        except Exception:
            log.exception("reading the changes for idling sessions failed")
            changes = None
        if changes is None:
            for waiter in members.values():
                waiter.wake()
            return
        claimer: tuple[Session, Waiter, SelectedMailbox] | None = None
        for session, waiter in members.items():
            view = session.selected
            if not _servable(session, waiter, view, mailbox_id, modseq):
                waiter.wake()  # its own task refreshes and writes, waiting as it must
                continue
            assert view is not None
            if view.apply_changes(changes) and not view.readonly and claimer is None:
                claimer = (session, waiter, view)
            session.send_now(view.drain_updates(allow_expunge=True))
        if claimer is not None:
            self._spawn(self._claim_recent(*claimer, changes))

    async def _claim_recent(
        self, session: Session, waiter: Waiter, view: SelectedMailbox, changes: Changes
    ) -> None:
        try:
            claimed = await self._storage.claim_new_recent(view.mailbox.id, changes.highest_modseq)
        except Exception:
            log.exception("claiming \\Recent for an idling session failed")
            return
        if not claimed:
            return
        view.recent.update(claimed)
        if waiter.parked and session.selected is view and session.can_send_now():
            session.send_now(view.drain_updates(allow_expunge=True))
        else:
            waiter.wake()  # RECENT goes out with the session's next updates


def _by_known_modseq(batch: Members) -> dict[int, Members]:
    """The idlers grouped by the modseq their view has seen: one read per group."""
    groups: dict[int, Members] = {}
    for session, waiter in batch.items():
        view = session.selected
        if view is None:
            waiter.wake()
            continue
        groups.setdefault(view.known_modseq, {})[session] = waiter
    return groups


def _servable(
    session: Session, waiter: Waiter, view: SelectedMailbox | None, mailbox_id: int, modseq: int
) -> bool:
    """Whether this pass may update *view* and write for *session* right now: still
    idling and parked on the same mailbox, at the modseq the changes were read from,
    with nothing of its output waiting."""
    return (
        waiter.parked
        and view is not None
        and view.mailbox.id == mailbox_id
        and view.known_modseq == modseq
        and session.can_send_now()
    )
