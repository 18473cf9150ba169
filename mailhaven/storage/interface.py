"""The narrow asynchronous storage interface every backend implements.

The IMAP layer only talks to this interface; :mod:`mailhaven.storage.sqlite` is the
embedded default.  Rules every backend follows:

* Every mutating method is one transaction: when it returns, its changes are
  durable (survive a crash or ``kill -9``); when it raises, nothing changed.
* Every change to a mailbox (append, flag change, expunge, copy/move into it) takes a
  new modification sequence from the mailbox's counter (RFC 7162 section 3.1.1) and
  records it on the changed message, so :meth:`Storage.changes_since` can tell any
  session exactly what happened after the modseq it last saw.  Expunged UIDs are
  remembered with the modseq of their expunge (for QRESYNC VANISHED).
* After each committed change the backend calls :meth:`ChangeHub.publish` with the
  mailbox id, so sessions with that mailbox selected (IDLE in particular) wake up.
* Blocking work (SQLite calls, file I/O) never runs on the event loop thread.
* Mailbox names are full hierarchical names as Python ``str`` (Unicode), with "/" as
  the hierarchy separator; "INBOX" is stored as exactly "INBOX".
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mailhaven.storage.column_cache import ColumnSnapshot


class StorageError(Exception):
    """Base class of errors the IMAP layer turns into NO responses."""


class MailboxExists(StorageError):
    """CREATE or RENAME to a name that exists (NO [ALREADYEXISTS])."""


class MailboxNotFound(StorageError):
    """The named mailbox does not exist (NO [NONEXISTENT] / [TRYCREATE])."""


class MailboxHasChildren(StorageError):
    """DELETE of a mailbox with inferiors that is already \\Noselect (RFC 9051 6.3.5)."""


class OverQuota(StorageError):
    """APPEND, COPY or MOVE would take the account over a quota limit; nothing was
    changed (RFC 9208 section 4.3.1, NO [OVERQUOTA])."""


class UserExists(StorageError):
    pass


class UserNotFound(StorageError):
    pass


class AppPasswordExists(StorageError):
    """The account already has an app password with this label."""


class AppPasswordNotFound(StorageError):
    """The account has no app password with this label."""


@dataclass(frozen=True, slots=True)
class AppPassword:
    """An app password as listed: its label and creation time (the secret itself is
    only ever stored as a digest)."""

    label: str
    created: int  # Unix time


@dataclass(frozen=True, slots=True)
class AuthBlock:
    """A temporary refusal of logins: from one IP (kind "ip") or to one account
    (kind "account", key the casefolded name) until the Unix time *until*."""

    kind: str
    key: str
    until: float
    reason: str
    created: float


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    password_hash: str
    imap_enabled: bool = True
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    user_id: int
    name: str
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    special_use: tuple[str, ...] = ()  # e.g. ("\\Sent",) (RFC 6154)
    selectable: bool = True  # False for a \Noselect placeholder left by DELETE
    object_id: int = 0  # never reused, kept by RENAME: the MAILBOXID (RFC 8474 section 4)


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    """What STATUS reports (RFC 9051 section 6.3.11, RFC 8438 SIZE)."""

    messages: int
    recent: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highest_modseq: int
    deleted_size: int = 0  # octets of the \Deleted messages (RFC 9208 DELETED-STORAGE)
    object_id: int = 0  # the mailbox's MAILBOXID (RFC 8474 section 4.3)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """The small per-message facts a selected mailbox keeps in memory."""

    uid: int
    flags: frozenset[str]
    modseq: int
    internal_date: datetime.datetime
    size: int


@dataclass(frozen=True, slots=True)
class MessageColumns:
    """Every message of a mailbox, column by column in UID order: what a selected
    view keeps, as a handful of sequences instead of one object per message.
    Messages with equal flags share one frozenset."""

    uids: Sequence[int]
    flags: Sequence[frozenset[str]]
    modseqs: Sequence[int]
    internal_dates: Sequence[int]  # seconds since the epoch
    tz_offsets: Sequence[int]  # the internal date's zone, seconds east of UTC
    sizes: Sequence[int]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append: raw bytes exactly as received, and its metadata computed
    once (see :func:`mailhaven.mime.analyze`)."""

    raw: bytes
    flags: frozenset[str]
    internal_date: datetime.datetime
    metadata: bytes  # MessageMetadata.to_bytes()
    body_text: str = ""  # decoded text of the body parts, for SEARCH BODY
    header_text: str = ""  # decoded header fields, for SEARCH TEXT
    # The metadata's wire items when the caller has them at hand (after analyze), so
    # the writer need not decode the metadata again to store them.
    wire: StoredWire | None = None


@dataclass(frozen=True, slots=True)
class MessageContent:
    """What FETCH needs beyond the summary; fields not asked for are None."""

    uid: int
    raw: bytes | None = None
    metadata: bytes | None = None  # MessageMetadata.to_bytes()


class StoredWire(NamedTuple):
    """ENVELOPE, BODY and BODYSTRUCTURE of a message exactly as FETCH sends them
    (RFC 9051 section 7.5.2), stored at delivery."""

    envelope: bytes
    body: bytes
    bodystructure: bytes


@dataclass(frozen=True, slots=True)
class MessageObjectData:
    """Per-message facts of RFC 8474 and RFC 8514 that FETCH and SEARCH rarely need:
    ``email_id`` is the id of the stored content, shared by all copies (EMAILID);
    ``save_date`` is when the message was saved into its mailbox (SAVEDATE)."""

    uid: int
    email_id: int
    save_date: datetime.datetime


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """An account's limits (RFC 9208 sections 5.1, 5.2); None is unlimited."""

    storage: int | None = None  # octets
    messages: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """An account's usage and the limits in force (its own, or the defaults)."""

    storage: int  # octets: the sum of RFC822.SIZE of all its messages
    messages: int
    limits: QuotaLimits


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything that happened in a mailbox after some modseq."""

    highest_modseq: int
    uidnext: int
    changed: tuple[MessageSummary, ...]  # new or flag-changed messages, UID order
    expunged: tuple[int, ...]  # UIDs expunged after the modseq, ascending


@dataclass(frozen=True, slots=True)
class TextHits:
    """The messages of a mailbox whose text contains a needle (RFC 9051 section 6.4.4
    BODY/TEXT), as the mailbox was at *modseq*: every match and only matches at that
    modseq, so a view that has seen exactly that modseq and holds no expunged message
    holds exactly these."""

    modseq: int
    uids: list[int]  # ascending


@dataclass(frozen=True, slots=True)
class StoreResult:
    changed: tuple[MessageSummary, ...]  # messages whose flags changed (new modseq)
    unchanged_since_failed: tuple[int, ...] = ()  # UIDs refused by UNCHANGEDSINCE


@dataclass(frozen=True, slots=True)
class ImportOrigin:
    """Where imported messages came from, recorded with them so a rerun of the same
    import skips them (``mailhaven import USER imap://...`` is resumable)."""

    source: str  # e.g. "alice@imap.example.com:993"
    folder: str
    uidvalidity: int
    uids: tuple[int, ...]  # the source UIDs, pairwise with the appended messages


@dataclass(frozen=True, slots=True)
class CopyResult:
    """COPYUID data (RFC 4315): source UIDs and the UIDs they got, pairwise."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    destination_uids: tuple[int, ...]


Listener = Callable[[int], None]


@dataclass
class ChangeHub:
    """In-process publish/subscribe of "mailbox N changed" (called after commit)."""

    _listeners: dict[int, set[Listener]] = field(default_factory=dict)
    # Bumped by each publish: a read begun at a mailbox's current generation has seen
    # every change published so far, so later readers at the same one may share it.
    _generations: dict[int, int] = field(default_factory=dict)

    def generation(self, mailbox_id: int) -> int:
        return self._generations.get(mailbox_id, 0)

    def subscribe(self, mailbox_id: int, listener: Listener) -> None:
        self._listeners.setdefault(mailbox_id, set()).add(listener)

    def unsubscribe(self, mailbox_id: int, listener: Listener) -> None:
        listeners = self._listeners.get(mailbox_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[mailbox_id]

    def publish(self, mailbox_id: int) -> None:
        self._generations[mailbox_id] = self._generations.get(mailbox_id, 0) + 1
        for listener in list(self._listeners.get(mailbox_id, ())):
            listener(mailbox_id)


class Storage(ABC):
    """A mail store.  Methods are coroutines and safe to call concurrently."""

    changes: ChangeHub
    # Limits of accounts without limits of their own; set from the configuration.
    quota_defaults: QuotaLimits = QuotaLimits()

    # ----------------------------------------------------------------- lifecycle
    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""

    @abstractmethod
    async def close(self) -> None: ...

    # ----------------------------------------------------------------- accounts
    @abstractmethod
    async def create_user(self, name: str, password_hash: str) -> User:
        """Create an account with INBOX, Drafts, Sent, Trash, Junk and Archive (the
        last five with their RFC 6154 special-use attributes), all subscribed."""

    @abstractmethod
    async def get_user(self, name: str) -> User | None: ...

    @abstractmethod
    async def list_users(self) -> list[User]: ...

    @abstractmethod
    async def set_password(self, name: str, password_hash: str) -> None: ...

    @abstractmethod
    async def delete_user(self, name: str) -> None:
        """Delete the account and all its mail."""

    # ----------------------------------------------------------------- mailboxes
    @abstractmethod
    async def list_mailboxes(self, user_id: int) -> list[Mailbox]:
        """All mailboxes of a user, including \\Noselect placeholders, by name."""

    @abstractmethod
    async def get_mailbox(self, user_id: int, name: str) -> Mailbox | None:
        """Look up by exact name (the caller canonicalises INBOX)."""

    @abstractmethod
    async def create_mailbox(
        self, user_id: int, name: str, special_use: Sequence[str] = ()
    ) -> Mailbox:
        """Create a mailbox (and any missing superiors, RFC 9051 6.3.4); raise
        MailboxExists if it exists and is selectable; turns a \\Noselect placeholder
        of that name into a real mailbox with a new UIDVALIDITY."""

    @abstractmethod
    async def delete_mailbox(self, user_id: int, name: str) -> None:
        """RFC 9051 6.3.5: a mailbox with inferiors becomes \\Noselect (its messages
        are removed); one without is removed; raise MailboxHasChildren when it is
        already \\Noselect and has inferiors; MailboxNotFound when absent."""

    @abstractmethod
    async def rename_mailbox(self, user_id: int, old: str, new: str) -> None:
        """RFC 9051 6.3.6: renames inferiors too and creates missing superiors of
        *new*; renaming INBOX moves all its messages to a new mailbox *new* and
        leaves INBOX empty.  Raises MailboxNotFound / MailboxExists."""

    @abstractmethod
    async def subscriptions(self, user_id: int) -> set[str]: ...

    @abstractmethod
    async def subscribe(self, user_id: int, name: str) -> None: ...

    @abstractmethod
    async def unsubscribe(self, user_id: int, name: str) -> None: ...

    @abstractmethod
    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts: ...

    # ----------------------------------------------------------------- messages
    @abstractmethod
    async def append(self, mailbox_id: int, messages: Sequence[NewMessage]) -> CopyResult:
        """Append all messages atomically (MULTIAPPEND, RFC 3502); new messages are
        \\Recent.  Returns uidvalidity and the new UIDs (source_uids empty)."""

    @abstractmethod
    async def append_to(
        self,
        user_id: int,
        name: str,
        prepare: Callable[[], Sequence[NewMessage]],
        *,
        fallback: str | None = None,
        account_must_be_enabled: bool = False,
    ) -> CopyResult:
        """Like :meth:`append`, for a mailbox given by name: *prepare* builds the
        messages (blocking CPU work, MIME analysis: never run on the event loop), then
        they go to the user's mailbox *name*, or to *fallback* when *name* is not a
        selectable mailbox.  MailboxNotFound when neither is; with
        *account_must_be_enabled* (local delivery), UserNotFound when the account is
        gone or disabled.  Backends do the whole of it with as few hand-offs between
        threads as they can: a delivery's latency is what a sender waits for."""

    @abstractmethod
    async def message_summaries(self, mailbox_id: int) -> list[MessageSummary]:
        """Every message of the mailbox in UID order."""

    @abstractmethod
    async def message_columns(self, mailbox_id: int) -> MessageColumns:
        """Every message of the mailbox in UID order, as columns (what SELECT needs),
        without building an object per message.  The sequences may be shared with
        other callers: copy them before changing them."""

    @abstractmethod
    async def column_snapshot(self, mailbox_id: int) -> ColumnSnapshot:
        """:meth:`message_columns` with the modseq they are current at and what SELECT
        derives from them, possibly shared with other callers: never change it."""

    @abstractmethod
    async def store_column_snapshot(self, mailbox_id: int) -> None:
        """Keep the mailbox's :meth:`column_snapshot` where the first SELECT of a later
        process finds it, if the mailbox is large enough for that to pay (after a bulk
        import, as the first SELECT would otherwise do it)."""

    @abstractmethod
    async def claim_recent(self, mailbox_id: int) -> set[int]:
        """UIDs whose \\Recent belongs to the caller: returns and clears them, so
        only one session sees each message as recent (RFC 3501 2.3.2)."""

    async def claim_new_recent(self, mailbox_id: int, seen_modseq: int) -> set[int]:
        """:meth:`claim_recent` for a session that has just seen the mailbox up to
        *seen_modseq* with new messages in it.  A backend may answer from claims
        already made since then (see ``storage.coalesce.RecentClaims``)."""
        return await self.claim_recent(mailbox_id)

    @abstractmethod
    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes: ...

    @abstractmethod
    async def vanished_since(
        self, mailbox_id: int, modseq: int, uid_ranges: Sequence[tuple[int, int]]
    ) -> list[int]:
        """UIDs (ascending) expunged from the mailbox with a modseq above *modseq*
        and within the inclusive, ascending, non-overlapping *uid_ranges* (RFC 7162
        sections 3.2.5.1 and 3.2.6: VANISHED (EARLIER))."""

    @abstractmethod
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: str,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """mode "+" adds, "-" removes, "" replaces.  Only messages whose flags really
        change get a new modseq.  With *unchanged_since*, a message whose modseq is
        greater is left alone and reported (RFC 7162 3.1.3)."""

    @abstractmethod
    async def copy(
        self, source_mailbox_id: int, uids: Iterable[int], destination_mailbox_id: int
    ) -> CopyResult:
        """Copy messages with flags and internal date; the copies are \\Recent."""

    @abstractmethod
    async def move(
        self, source_mailbox_id: int, uids: Iterable[int], destination_mailbox_id: int
    ) -> CopyResult:
        """Copy then expunge from the source, in one transaction (RFC 6851)."""

    @abstractmethod
    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (only those among *uids* when given);
        returns the expunged UIDs ascending."""

    @abstractmethod
    async def fetch_content(
        self, mailbox_id: int, uids: Sequence[int], *, raw: bool, metadata: bool
    ) -> list[MessageContent]:
        """Stored bytes and/or metadata of existing messages, in the order of
        *uids* (UIDs that no longer exist are left out)."""

    @abstractmethod
    async def fetch_headers(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, bytes]:
        """The top-level header block (BODY[HEADER], RFC 9051 section 6.4.5) of existing
        messages by UID, read without the rest of the message."""

    @abstractmethod
    async def fetch_wire(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, StoredWire]:
        """The stored ENVELOPE, BODY and BODYSTRUCTURE of existing messages by UID, read
        without the metadata; a message stored without them is left out (its metadata
        still holds them)."""

    @abstractmethod
    async def object_data(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageObjectData]:
        """EMAILID and SAVEDATE of existing messages, in the order of *uids*."""

    # ----------------------------------------------------------------- quota

    @abstractmethod
    async def quota(self, user_id: int) -> QuotaUsage:
        """Exact usage of the account and the limits that apply to it."""

    @abstractmethod
    async def set_quota(self, user_id: int, limits: QuotaLimits | None) -> QuotaUsage:
        """Give the account its own limits (None: back to the defaults).  append,
        copy and move raise OverQuota, inside their transaction, when they would
        exceed the limits in force (RFC 9208 section 4.3.1)."""

    @abstractmethod
    async def search_text(self, mailbox_id: int, needle: str, *, headers: bool) -> set[int]:
        """UIDs whose decoded body text (and with *headers*, decoded header text)
        contains *needle*, compared case-insensitively (RFC 9051 6.4.4 BODY/TEXT)."""

    @abstractmethod
    async def search_text_hits(self, mailbox_id: int, needle: str, *, headers: bool) -> TextHits:
        """:meth:`search_text` with the mailbox's modseq its answer belongs to."""

    @abstractmethod
    async def search_dates(
        self,
        mailbox_id: int,
        first: datetime.date | None,
        end: datetime.date | None,
        *,
        sent: bool,
    ) -> set[int]:
        """UIDs whose INTERNALDATE (with *sent*, Date header) falls on a day from
        *first* up to but excluding *end* (None: unbounded), disregarding time and
        timezone (RFC 9051 6.4.4 BEFORE/ON/SINCE, SENT*); with *sent*, a message
        without a valid Date header is in no range."""

    # ----------------------------------------------------------------- mail flow (import)
    @abstractmethod
    async def append_imported(
        self, mailbox_id: int, messages: Sequence[NewMessage], origin: ImportOrigin
    ) -> CopyResult:
        """Append like :meth:`append` and record *origin* in the same transaction, so
        a message is either stored and recorded, or neither."""

    @abstractmethod
    async def imported_uids(
        self, user_id: int, source: str, folder: str, uidvalidity: int
    ) -> set[int]:
        """Source UIDs already imported by :meth:`append_imported` from this folder."""

    @abstractmethod
    async def append_with_uids(
        self,
        mailbox_id: int,
        messages: Sequence[NewMessage],
        uids: Sequence[int],
        *,
        uidnext_at_least: int = 1,
    ) -> CopyResult:
        """Append keeping the given UIDs (an import from a server whose clients have
        them cached): ascending, each at least the mailbox's UIDNEXT.  UIDNEXT then
        becomes at least *uidnext_at_least* (the source's next UID)."""

    @abstractmethod
    async def adopt_uidvalidity(self, mailbox_id: int, uidvalidity: int) -> None:
        """Give a mailbox that never held a message another server's UIDVALIDITY
        (RFC 9051 section 2.3.1.1: clients keep their cache only if the pair
        UIDVALIDITY/UID still names the same message)."""

    # ----------------------------------------------------------------- account security
    # (SQLite: mailhaven/storage/sqlite_security.py)
    @abstractmethod
    async def set_imap_enabled(self, name: str, enabled: bool) -> None:
        """Allow or refuse IMAP logins for the account (UserNotFound if absent)."""

    @abstractmethod
    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable or enable the account as a whole (UserNotFound if absent)."""

    @abstractmethod
    async def set_scram_credentials(self, name: str, credentials: str) -> None:
        """Store the salted SCRAM keys of the current password (see
        :mod:`mailhaven.security.scram`); a later set_password forgets them."""

    @abstractmethod
    async def scram_credentials(self, user_id: int) -> str | None: ...

    @abstractmethod
    async def add_app_password(self, name: str, label: str, digest: str) -> None:
        """Raise AppPasswordExists when the label is taken, UserNotFound."""

    @abstractmethod
    async def app_passwords(self, name: str) -> list[AppPassword]:
        """The account's app passwords by label (UserNotFound if absent)."""

    @abstractmethod
    async def revoke_app_password(self, name: str, label: str) -> None:
        """Raise AppPasswordNotFound / UserNotFound."""

    @abstractmethod
    async def app_password_digests(self, user_id: int) -> list[tuple[str, str]]:
        """(label, digest) of every app password of the account."""

    @abstractmethod
    async def record_auth_failure(
        self, ip: str, account: str, at: float, ip_since: float, account_since: float
    ) -> tuple[int, int]:
        """Record a failed login; return the failures from *ip* since *ip_since* and
        to *account* since *account_since*, this one included."""

    @abstractmethod
    async def add_auth_block(self, block: AuthBlock) -> None:
        """Add a block, or extend an existing one of the same kind and key."""

    @abstractmethod
    async def active_auth_block(self, kind: str, key: str, now: float) -> AuthBlock | None: ...

    @abstractmethod
    async def list_auth_blocks(self, now: float) -> list[AuthBlock]: ...

    @abstractmethod
    async def clear_auth_blocks(self, key: str | None) -> int:
        """Lift the blocks of one IP or account (all when None) and forget their
        failures; return how many blocks were lifted."""

    @abstractmethod
    async def record_login(self, user_id: int, ip: str, at: float) -> None:
        """Remember that the account logged in successfully from *ip*."""

    @abstractmethod
    async def is_known_ip(self, user_id: int, ip: str) -> bool: ...


def epoch_and_offset(moment: datetime.datetime) -> tuple[int, int]:
    """An aware datetime as (seconds since the epoch, seconds east of UTC), the form
    in which :class:`MessageColumns` keeps internal dates."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("internal dates must be timezone-aware")
    return int(moment.timestamp()), int(offset.total_seconds())
