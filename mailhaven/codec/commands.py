"""Typed IMAP commands, as produced by :mod:`mailhaven.codec.parser`.

Each class mirrors one command of RFC 3501 section 6 / RFC 9051 section 6 (and the
extensions named in its docstring).  Values are already decoded from the wire:
astrings are ``bytes`` where the protocol keeps them opaque (mailbox names, whose
decoding depends on whether the client enabled UTF-8, see
:func:`mailhaven.codec.mailbox_names.decode_mailbox`), ``str`` where they are ASCII
protocol tokens (flags, capability names), upper-cased where the protocol is
case-insensitive (command names, fetch attributes, search keys, status items).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal as TypingLiteral

# --------------------------------------------------------------------------- sets


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A sequence-set (RFC 9051 section 9, ``sequence-set``) or ``$`` (RFC 5182).

    ``ranges`` holds inclusive ``(low, high)`` pairs as written by the client, where
    ``None`` stands for ``*`` (the largest number in use).  Order as written; a range
    may be given high-to-low (``5:2``) and means the same as ``2:5``.
    ``saved`` is True for ``$`` (the saved search result of SEARCHRES), in which
    case ``ranges`` is empty.
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Normalised ascending ``(low, high)`` ranges with ``*`` replaced by *largest*.

        RFC 9051 section 9: ``*`` is the largest number in use; ranges are unordered.
        Overlapping ranges are merged.  Not valid for ``saved`` sets.
        """
        spans = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            if a > b:
                a, b = b, a
            spans.append((a, b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged


# --------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class Section:
    """A ``section`` of BODY[...] / BINARY[...] (RFC 9051 section 6.4.5).

    ``part`` is the part path (``(1, 2)`` for ``1.2``; empty for the whole message).
    ``text`` is one of None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
    "MIME".  ``fields`` are the upper-cased header field names for HEADER.FIELDS[.NOT].
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One ``fetch-att`` (RFC 9051 section 6.4.5, RFC 7162 MODSEQ, RFC 3516 BINARY).

    ``name`` is one of: FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
    BODYSTRUCTURE, UID, RFC822, RFC822.HEADER, RFC822.TEXT, BODY[] (any BODY with a
    section, ``section`` set), BINARY (``section`` set, text None), BINARY.SIZE
    (``section`` set), MODSEQ, SAVEDATE, EMAILID, THREADID, PREVIEW.
    The macros ALL, FAST and FULL are expanded by the parser.
    ``partial`` is ``(offset, count)`` for ``<offset.count>``.
    ``peek`` is True for BODY.PEEK[...] / BINARY.PEEK[...].
    ``lazy`` is True for PREVIEW (LAZY) (RFC 8970 section 4.1).
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False
    lazy: bool = False


# --------------------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One ``search-key`` (RFC 9051 section 6.4.4, RFC 7162 MODSEQ, RFC 5032 WITHIN).

    ``op`` is the upper-cased key name; ``args`` its decoded arguments:

    - no argument: ALL, ANSWERED, DELETED, DRAFT, FLAGGED, NEW, OLD, RECENT, SEEN,
      UNANSWERED, UNDELETED, UNDRAFT, UNFLAGGED, UNSEEN
    - str (decoded with the search charset): BCC, BODY, CC, FROM, SUBJECT, TEXT, TO;
      KEYWORD / UNKEYWORD (the flag atom)
    - (field name upper-cased, value str): HEADER
    - datetime.date: BEFORE, ON, SINCE, SENTBEFORE, SENTON, SENTSINCE
    - int: LARGER, SMALLER, OLDER, YOUNGER (seconds), MODSEQ (the mod-sequence;
      the optional entry name/type are dropped)
    - no argument: SAVEDATESUPPORTED (RFC 8514)
    - datetime.date: SAVEDBEFORE, SAVEDON, SAVEDSINCE (RFC 8514)
    - str (the objectid): EMAILID, THREADID (RFC 8474)
    - SequenceSet: SEQSET (a bare sequence set), UID
    - SearchKey: NOT
    - (SearchKey, SearchKey): OR
    - tuple[SearchKey, ...]: AND (a parenthesised list, and the top level)
    """

    op: str
    args: object = None


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH (RFC 9051 section 6.4.4, ESEARCH RFC 4731, SEARCHRES RFC 5182).

    ``return_options`` is None when no RETURN clause was given, otherwise the tuple
    of upper-cased options (MIN, MAX, ALL, COUNT, SAVE); ``RETURN ()`` gives ``()``.
    ``charset`` is the upper-cased CHARSET argument or None.
    """

    tag: str
    key: SearchKey
    uid: bool = False
    charset: str | None = None
    return_options: tuple[str, ...] | None = None


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Capability:
    tag: str


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str


@dataclass(frozen=True, slots=True)
class Logout:
    tag: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    tag: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE (RFC 9051 section 6.2.2) with SASL-IR (RFC 4959).

    ``initial_response`` is the decoded initial response: None when absent,
    b"" when the client sent ``=``.
    """

    tag: str
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login:
    tag: str
    username: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE (RFC 5161); capability names upper-cased."""

    tag: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT / EXAMINE (RFC 9051 sections 6.3.2, 6.3.3).

    ``condstore`` is True for the ``(CONDSTORE)`` parameter.  ``qresync`` is
    ``(uidvalidity, modseq, known_uids or None, (seq_set, uid_set) or None)`` for the
    RFC 7162 section 3.2.5 QRESYNC parameter.
    """

    tag: str
    mailbox: bytes
    readonly: bool = False
    condstore: bool = False
    qresync: tuple[int, int, SequenceSet | None, tuple[SequenceSet, SequenceSet] | None] | None = (
        None
    )


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE with optional ``(USE (\\Drafts ...))`` (RFC 6154 section 3)."""

    tag: str
    mailbox: bytes
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    tag: str
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Rename:
    tag: str
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    tag: str
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tag: str
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class List:
    """LIST (RFC 9051 section 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819).

    ``patterns`` holds one or more mbox patterns (raw bytes, like mailbox names).
    ``select_options`` upper-cased (SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE).
    ``return_options`` upper-cased (SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS).
    ``status_items`` are the items of ``RETURN (STATUS (...))``.
    ``extended`` is True when the client used any LIST-EXTENDED syntax (selection
    options, RETURN or a pattern list), which changes how results are shaped.
    """

    tag: str
    reference: bytes
    patterns: tuple[bytes, ...]
    select_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    tag: str
    reference: bytes
    pattern: bytes


@dataclass(frozen=True, slots=True)
class Namespace:
    tag: str


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS; items upper-cased (MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE, HIGHESTMODSEQ, APPENDLIMIT, MAILBOXID, DELETED-STORAGE)."""

    tag: str
    mailbox: bytes
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND / MULTIAPPEND (RFC 3502).  ``binary`` for ``~{n}``."""

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Append:
    tag: str
    mailbox: bytes
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    tag: str


@dataclass(frozen=True, slots=True)
class Check:
    tag: str


@dataclass(frozen=True, slots=True)
class Close:
    tag: str


@dataclass(frozen=True, slots=True)
class Unselect:
    tag: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE (RFC 4315) when ``uids`` is set."""

    tag: str
    uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH / UID FETCH (RFC 9051 section 6.4.5) with CHANGEDSINCE and VANISHED
    modifiers (RFC 7162 sections 3.1.4, 3.2.6).  For UID FETCH the parser adds the
    UID attribute if the client did not ask for it (RFC 9051 section 6.4.9)."""

    tag: str
    sequence: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    """STORE / UID STORE (RFC 9051 section 6.4.6), UNCHANGEDSINCE (RFC 7162 3.1.3).

    ``mode`` is "+" (add), "-" (remove) or "" (replace).  Flags keep the client's
    spelling; system flags (``\\Seen``) are matched case-insensitively by the server.
    """

    tag: str
    sequence: SequenceSet
    mode: TypingLiteral["+", "-", ""]
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    tag: str
    sequence: SequenceSet
    mailbox: bytes
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    tag: str
    sequence: SequenceSet
    mailbox: bytes
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971): ``params`` is None for NIL, else field/value pairs."""

    tag: str
    params: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS (RFC 4978); ``algorithm`` upper-cased (only DEFLATE exists)."""

    tag: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class GetQuota:
    """GETQUOTA (RFC 9208 section 4.1.1); ``root`` is the quota root name."""

    tag: str
    root: bytes


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    """GETQUOTAROOT (RFC 9208 section 4.1.2)."""

    tag: str
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class SetQuota:
    """SETQUOTA (RFC 9208 section 4.1.3); resource names upper-cased."""

    tag: str
    root: bytes
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One sort-criterion of RFC 5256 (and DISPLAYFROM/DISPLAYTO of RFC 5957)."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    """SORT / UID SORT (RFC 5256 section 3); ``key`` as in :class:`Search`."""

    tag: str
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Thread:
    """THREAD / UID THREAD (RFC 5256 section 3); ``algorithm`` upper-cased."""

    tag: str
    algorithm: str
    charset: str
    key: SearchKey
    uid: bool = False


Command = (
    Capability
    | Noop
    | Logout
    | StartTLS
    | Authenticate
    | Login
    | Enable
    | Select
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Id
    | Compress
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | Sort
    | Thread
)
