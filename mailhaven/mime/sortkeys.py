"""What SORT and THREAD need of a message, computed once at delivery (RFC 5256,
RFC 5957): the base subject, the first addresses, and the Message-IDs that link
replies to their parents."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mailhaven.mime.headers import HeaderField, decode_text, unfold
from mailhaven.mime.rfc822 import Address, parse_addresses

# RFC 5256 section 5: subj-blob, subj-refwd, subj-leader, subj-trailer, subj-fwd-*.
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"
_LEADER_REFWD = re.compile(r"(?:" + _BLOB + r")*" + _REFWD, re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)
_TRAILER_FWD = re.compile(r"\(fwd\)$", re.IGNORECASE)
_FWD_HEADER = "[fwd:"
_MSG_ID = re.compile(rb"<([^<>]*)>")


def collation_key(text: str) -> str:
    """An approximation of the i;unicode-casemap collation (RFC 5051) that SORT
    uses for strings: compatibility decomposition and case folding."""
    return unicodedata.normalize("NFKD", text).casefold()


def base_subject(subject: str) -> tuple[str, bool]:
    """The base subject of RFC 5256 section 2.1 (from an already RFC 2047 decoded
    subject), and whether removing artifacts showed it to be a reply or forward
    (a subj-refwd, a "(fwd)" trailer or a [fwd: ...] wrapper, RFC 5256 section 3)."""
    text = " ".join(subject.replace("\t", " ").split(" "))  # step 1: tabs to spaces
    text = re.sub(" +", " ", text)
    is_reply = False
    while True:
        text, trailer_reply = _remove_trailers(text)  # step 2
        text, leader_reply = _remove_leaders(text)  # steps 3 to 5
        is_reply = is_reply or trailer_reply or leader_reply
        # Step 6: a [fwd: ...] wrapper; repeat from step 2 with its content.
        if text[: len(_FWD_HEADER)].lower() == _FWD_HEADER and text.endswith("]"):
            text = text[len(_FWD_HEADER) : -1]
            is_reply = True
            continue
        return text, is_reply


def _remove_trailers(text: str) -> tuple[str, bool]:
    removed_fwd = False
    while True:
        if text.endswith((" ", "\t")):
            text = text[:-1]
        elif match := _TRAILER_FWD.search(text):
            text = text[: match.start()]
            removed_fwd = True
        else:
            return text, removed_fwd


def _remove_leaders(text: str) -> tuple[str, bool]:
    removed_refwd = False
    while True:
        before = text
        # Step 3: subj-leader = (*subj-blob subj-refwd) / WSP, as often as it matches.
        while True:
            if text.startswith((" ", "\t")):
                text = text[1:]
            elif match := _LEADER_REFWD.match(text):
                text = text[match.end() :]
                removed_refwd = True
            else:
                break
        # Step 4: a leading subj-blob, unless it is all that is left.
        match = _LEADING_BLOB.match(text)
        if match and text[match.end() :].strip(" \t"):
            text = text[match.end() :]
        if text == before:  # step 5: until nothing changes
            return text, removed_refwd


def message_ids(value: bytes | None) -> list[str]:
    """The normalised msg-ids in a Message-ID, References or In-Reply-To value:
    quoting and whitespace removed (RFC 5256 section 3 requires that
    ``<"a b"@c>`` and ``<ab@c>`` compare equal); ids without "@" are not valid."""
    if value is None:
        return []
    found = []
    for match in _MSG_ID.finditer(unfold(value)):
        normalised = re.sub(rb'["\s\\\\]', b"", match.group(1))
        if b"@" in normalised:
            found.append(normalised.decode("utf-8", "replace"))
    return found


@dataclass(frozen=True)
class SortData:
    """Sort values of one message (RFC 5256 section 3, RFC 5957 section 4).

    ``base_subject`` and the ``*_display``/``*_mailbox`` values are collation keys
    (see :func:`collation_key`); ``references`` are the parent links of RFC 5256
    section 3 (References, else the first In-Reply-To id)."""

    base_subject: str
    is_reply: bool
    from_mailbox: str
    to_mailbox: str
    cc_mailbox: str
    from_display: str
    to_display: str
    message_id: str | None
    references: tuple[str, ...]

    def to_list(self) -> list:
        return [
            self.base_subject,
            self.is_reply,
            self.from_mailbox,
            self.to_mailbox,
            self.cc_mailbox,
            self.from_display,
            self.to_display,
            self.message_id,
            list(self.references),
        ]

    @classmethod
    def from_list(cls, data: list) -> SortData:
        *values, references = data
        return cls(*values, references=tuple(references))


def sort_data(fields: list[HeaderField]) -> SortData:
    """The sort values of a message with these top-level header fields."""
    first: dict[bytes, bytes] = {}
    addresses: dict[bytes, list[Address]] = {}
    for field in fields:
        name = field.name.lower()
        first.setdefault(name, field.value)
        if name in (b"from", b"to", b"cc"):
            addresses.setdefault(name, []).extend(parse_addresses(field.value))
    subject = first.get(b"subject")
    base, is_reply = base_subject(decode_text(subject)) if subject is not None else ("", False)
    own_ids = message_ids(first.get(b"message-id"))
    references = message_ids(first.get(b"references")) or message_ids(first.get(b"in-reply-to"))[:1]
    return SortData(
        base_subject=collation_key(base),
        is_reply=is_reply,
        from_mailbox=_first_mailbox(addresses.get(b"from")),
        to_mailbox=_first_mailbox(addresses.get(b"to")),
        cc_mailbox=_first_mailbox(addresses.get(b"cc")),
        from_display=_first_display(addresses.get(b"from")),
        to_display=_first_display(addresses.get(b"to")),
        message_id=own_ids[0] if own_ids else None,
        references=tuple(references),
    )


def _first_mailbox(addresses: list[Address] | None) -> str:
    """RFC 5256 SORT FROM/TO/CC: the addr-mailbox of the first address."""
    if not addresses or addresses[0].mailbox is None:
        return ""
    return collation_key(decode_text(addresses[0].mailbox))


def _first_display(addresses: list[Address] | None) -> str:
    """RFC 5957 section 3: the decoded display name, else mailbox@host, else mailbox."""
    if not addresses:
        return ""
    address = addresses[0]
    if address.name is not None:
        name = decode_text(address.name).strip()
        if name:
            return collation_key(name)
    if address.mailbox is None:
        return ""
    mailbox = decode_text(address.mailbox)
    if address.host is not None:
        mailbox += "@" + decode_text(address.host)
    return collation_key(mailbox)
