"""Server responses (RFC 9051 section 7) as typed values that encode to bytes.

Handlers build these; only :meth:`encode` turns them into wire bytes.  Untagged
data responses carry a payload already encoded with :mod:`mailhaven.codec.wire`
(so bulk FETCH output can be assembled from pre-serialised metadata without
re-encoding), built by the constructor functions below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailhaven.codec import wire


@dataclass(frozen=True, slots=True)
class Tagged:
    """``response-tagged``: the completion result of one command."""

    tag: str
    status: str  # "OK" | "NO" | "BAD"
    text: str
    code: bytes | None = None  # the response code without brackets, e.g. b"READ-WRITE"

    def encode(self) -> bytes:
        return b"%s %s %s%s\r\n" % (
            self.tag.encode("ascii", "replace"),
            self.status.encode("ascii"),
            b"[" + self.code + b"] " if self.code else b"",
            _text(self.text),
        )


@dataclass(frozen=True, slots=True)
class Untagged:
    """``resp-cond-state`` / ``resp-cond-bye`` / greeting: ``* OK [code] text``."""

    status: str  # "OK" | "NO" | "BAD" | "BYE" | "PREAUTH"
    text: str
    code: bytes | None = None

    def encode(self) -> bytes:
        return b"* %s %s%s\r\n" % (
            self.status.encode("ascii"),
            b"[" + self.code + b"] " if self.code else b"",
            _text(self.text),
        )


@dataclass(frozen=True, slots=True)
class Continuation:
    """``continue-req = "+" SP (resp-text / base64) CRLF``."""

    payload: bytes = b"Ready"

    def encode(self) -> bytes:
        return b"+ " + self.payload + b"\r\n"


@dataclass(frozen=True, slots=True)
class Data:
    """An untagged data response; *payload* is everything after ``* ``."""

    payload: bytes

    def encode(self) -> bytes:
        return b"* " + self.payload + b"\r\n"


Response = Tagged | Untagged | Continuation | Data


def _text(text: str) -> bytes:
    # resp-text must not contain CR or LF; the server's own texts are ASCII/UTF-8.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8") or b"done"


# ------------------------------------------------------------------ data builders


def exists(count: int) -> Data:
    return Data(b"%d EXISTS" % count)


def recent(count: int) -> Data:
    return Data(b"%d RECENT" % count)


def expunge(sequence_number: int) -> Data:
    return Data(b"%d EXPUNGE" % sequence_number)


def vanished(uids: Iterable[int], *, earlier: bool = False) -> Data:
    """RFC 7162 section 3.2.10."""
    return Data(b"VANISHED " + (b"(EARLIER) " if earlier else b"") + wire.sequence_set(uids))


def flags(flag_names: Iterable[str]) -> Data:
    return Data(b"FLAGS " + wire.flag_list(flag_names))


def fetch(sequence_number: int, items: Sequence[tuple[bytes, bytes]]) -> Data:
    """``message-data = nz-number SP "FETCH" SP msg-att``; items are (name, value)."""
    return Data(b"%d FETCH (" % sequence_number + b" ".join(n + b" " + v for n, v in items) + b")")


def encoded_fetches(messages: Iterable[tuple[int, Sequence[tuple[bytes, bytes]]]]) -> bytes:
    """Several FETCH responses, encoded as :func:`fetch` and :meth:`Data.encode` would
    encode them one by one; FETCH 1:* of a large mailbox sends thousands at once."""
    return b"".join(
        [
            b"* %d FETCH (%b)\r\n" % (number, b" ".join([n + b" " + v for n, v in items]))
            for number, items in messages
        ]
    )


def encoded_fetches_with_literals(
    messages: Iterable[tuple[int, Sequence[tuple[bytes, bytes]]]],
) -> bytes:
    """The same bytes as :func:`encoded_fetches`, for responses carrying message text:
    every piece is joined once, so a literal of a megabyte is copied once rather than
    at each level of nesting (about four times faster for whole messages, a little
    slower for many small items)."""
    pieces: list[bytes] = []
    for number, items in messages:
        pieces.append(b"* %d FETCH (" % number)
        for name, value in items:
            pieces += (name, b" ", value, b" ")
        if items:
            pieces[-1] = b")\r\n"
        else:
            pieces.append(b")\r\n")
    return b"".join(pieces)


def capability(names: Iterable[str]) -> Data:
    return Data(b"CAPABILITY " + " ".join(names).encode("ascii"))


def enabled(names: Iterable[str]) -> Data:
    return Data(b" ".join([b"ENABLED", *(n.encode("ascii") for n in names)]))


def list_item(
    command: str,
    attributes: Iterable[str],
    delimiter: str | None,
    encoded_name: bytes,
    extended: bytes = b"",
    *,
    utf8: bool = False,
) -> Data:
    """``mailbox-list`` for LIST/LSUB (RFC 9051 section 7.3.1); *encoded_name* is
    the mailbox name already in the session's encoding (mUTF-7 or UTF-8)."""
    return Data(
        command.encode("ascii")
        + b" "
        + wire.paren(a.encode("ascii") for a in attributes)
        + b" "
        + (wire.NIL if delimiter is None else wire.string(delimiter))
        + b" "
        + wire.astring(encoded_name, utf8=utf8)
        + extended
    )


def status(
    encoded_name: bytes, items: Sequence[tuple[str, int | bytes]], *, utf8: bool = False
) -> Data:
    """``* STATUS name (MESSAGES 3 ...)``; a bytes value is sent as it is
    (``MAILBOXID (F1)`` of RFC 8474 section 4.3)."""
    return Data(
        b"STATUS "
        + wire.astring(encoded_name, utf8=utf8)
        + b" "
        + wire.paren(
            b"%s %s" % (name.encode("ascii"), value if isinstance(value, bytes) else b"%d" % value)
            for name, value in items
        )
    )


def search(numbers: Iterable[int], highest_modseq: int | None = None) -> Data:
    """``* SEARCH 2 3 6`` (RFC 3501 7.2.5), with ``(MODSEQ n)`` per RFC 7162 3.1.5."""
    # One formatting call for all the numbers: a common word finds tens of thousands.
    listed = tuple(numbers)
    payload = b"SEARCH" + (b" %d" * len(listed)) % listed
    if highest_modseq is not None:
        payload += b" (MODSEQ %d)" % highest_modseq
    return Data(payload)


def esearch(tag: str, uid: bool, results: Sequence[tuple[str, bytes]]) -> Data:
    """``* ESEARCH (TAG "a") UID MIN 2 COUNT 3`` (RFC 4731 section 3.1)."""
    payload = b"ESEARCH (TAG " + wire.string(tag) + b")"
    if uid:
        payload += b" UID"
    for name, value in results:
        payload += b" " + name.encode("ascii") + b" " + value
    return Data(payload)
