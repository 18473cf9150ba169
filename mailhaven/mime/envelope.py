"""The ENVELOPE structure (RFC 9051 section 7.5.2, RFC 3501 section 7.4.2).

Fields come from the header unchanged (no RFC 2047 decoding: the client decodes)
except that folding line ends are removed.  Sender and Reply-To default to From
when absent; address lists are parsed per RFC 5322 section 3.4, groups as
``(NIL NIL "name" NIL)`` ... ``(NIL NIL NIL NIL)``.
"""

from __future__ import annotations

from mailhaven.codec import wire
from mailhaven.mime.headers import HeaderField, unfold
from mailhaven.mime.rfc822 import Address, parse_addresses

_STRING_FIELDS = (b"date", b"subject", b"in-reply-to", b"message-id")
_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")


def nstring_nolf(value: bytes | None) -> bytes:
    """An nstring with CR and LF removed (header folding is not content)."""
    return wire.nstring(None if value is None else unfold(value))


def text_for_humans(value: bytes) -> bytes:
    """A display text (subject, display name) as one line: folding removed, tabs
    made spaces, runs of spaces collapsed, leading and trailing spaces dropped."""
    words = unfold(value).replace(b"\t", b" ").split(b" ")
    return b" ".join(word for word in words if word)


def _address_list(addresses: list[Address] | None) -> bytes:
    if not addresses:
        return wire.NIL
    return wire.paren(
        wire.paren(
            [
                wire.nstring(None if address.name is None else text_for_humans(address.name)),
                nstring_nolf(address.route),
                nstring_nolf(address.mailbox),
                nstring_nolf(address.host),
            ]
        )
        for address in addresses
    )


def envelope(fields: list[HeaderField]) -> bytes:
    """The ENVELOPE of a message with the given top-level header fields."""
    strings: dict[bytes, bytes] = {}
    addresses: dict[bytes, list[Address]] = {}
    for field in fields:
        name = field.name.lower()
        if name in _STRING_FIELDS:
            strings[name] = field.value
        elif name in _ADDRESS_FIELDS:
            # Repeated address fields are merged rather than one chosen.
            addresses.setdefault(name, []).extend(parse_addresses(field.value))
    sender = addresses.get(b"from")
    subject = strings.get(b"subject")
    items = [
        nstring_nolf(strings.get(b"date")),
        wire.nstring(None if subject is None else text_for_humans(subject)),
        _address_list(sender),
        _address_list(addresses.get(b"sender") or sender),
        _address_list(addresses.get(b"reply-to") or sender),
        _address_list(addresses.get(b"to")),
        _address_list(addresses.get(b"cc")),
        _address_list(addresses.get(b"bcc")),
        nstring_nolf(strings.get(b"in-reply-to")),
        nstring_nolf(strings.get(b"message-id")),
    ]
    return wire.paren(items)
