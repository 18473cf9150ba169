"""Mailbox name encodings: modified UTF-7 (RFC 3501 section 5.1.3) and UTF-8.

IMAP4rev1 clients send mailbox names in modified UTF-7; clients that enabled
``UTF8=ACCEPT`` (RFC 6855 section 3) or ``IMAP4rev2`` (RFC 9051 section 5.1) send
UTF-8.  The parser keeps names as raw bytes; the server decodes them here once it
knows which mode the connection is in.
"""

from __future__ import annotations

import base64
import binascii

from mailhaven.codec.errors import ProtocolError

_INBOX = "INBOX"
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_BASE64_VALUE = {char: index for index, char in enumerate(_BASE64_ALPHABET)}


def _is_direct(codepoint: int) -> bool:
    """Printable US-ASCII represents itself in modified UTF-7 (RFC 3501 5.1.3)."""
    return 0x20 <= codepoint <= 0x7E


def _encode_shifted(run: str) -> bytes:
    encoded = base64.b64encode(run.encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
    return b"&" + encoded + b"-"


def encode_mutf7(name: str) -> bytes:
    """Encode *name* in modified UTF-7 (RFC 3501 section 5.1.3).

    Printable ASCII except "&" stands for itself, "&" becomes "&-", and every run
    of other characters becomes "&" + modified BASE64 of UTF-16BE + "-".
    *name* must be valid Unicode (no lone surrogates): ValueError otherwise.
    """
    out = bytearray()
    shifted: list[str] = []
    for char in name:
        if not _is_direct(ord(char)):
            shifted.append(char)
            continue
        if shifted:
            out += _encode_shifted("".join(shifted))
            shifted.clear()
        out += b"&-" if char == "&" else char.encode("ascii")
    if shifted:
        out += _encode_shifted("".join(shifted))
    return bytes(out)


def _decode_shifted(chunk: bytes) -> str:
    """Decode the modified BASE64 between "&" and "-", insisting on the canonical
    form: minimal length, zero padding bits, whole UTF-16 code units, valid
    surrogate pairs and no characters that must be written directly."""
    if any(byte not in _BASE64_VALUE for byte in chunk):
        raise ProtocolError("Invalid modified UTF-7 mailbox name: bad BASE64 character")
    spare_bits = (6 * len(chunk)) % 16  # bits after the last whole UTF-16 unit
    if spare_bits >= 6:
        raise ProtocolError("Invalid modified UTF-7 mailbox name: truncated sequence")
    if _BASE64_VALUE[chunk[-1]] & ((1 << spare_bits) - 1):
        raise ProtocolError("Invalid modified UTF-7 mailbox name: non-zero padding bits")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        text = base64.b64decode(padded, validate=True).decode("utf-16-be")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ProtocolError("Invalid modified UTF-7 mailbox name: bad UTF-16") from error
    if any(_is_direct(ord(char)) for char in text):
        raise ProtocolError("Invalid modified UTF-7 mailbox name: ASCII must not be encoded")
    return text


def decode_mutf7(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name (RFC 3501 section 5.1.3).

    Raises ProtocolError for anything that is not the canonical encoding of a
    name: 8-bit or control bytes, unterminated or adjacent "&" sequences, and
    non-canonical BASE64 (see :func:`_decode_shifted`).
    """
    parts: list[str] = []
    position = 0
    previous_was_shifted = False
    while position < len(data):
        byte = data[position]
        if byte != ord("&"):
            if not _is_direct(byte):
                raise ProtocolError("Invalid modified UTF-7 mailbox name: raw 8-bit or CTL")
            parts.append(chr(byte))
            previous_was_shifted = False
            position += 1
            continue
        end = data.find(b"-", position + 1)
        if end < 0:
            raise ProtocolError("Invalid modified UTF-7 mailbox name: unterminated '&'")
        chunk = data[position + 1 : end]
        if not chunk:
            parts.append("&")
            previous_was_shifted = False
        elif previous_was_shifted:
            # Two adjacent shifted runs must have been written as one.
            raise ProtocolError("Invalid modified UTF-7 mailbox name: adjacent '&' sequences")
        else:
            parts.append(_decode_shifted(chunk))
            previous_was_shifted = True
        position = end + 1
    return "".join(parts)


def decode_mailbox(raw: bytes, utf8: bool) -> str:
    """Decode a mailbox name as sent by the client.

    In UTF-8 mode (RFC 6855 section 3, RFC 9051 section 5.1) *raw* is UTF-8 and
    nothing else; otherwise it is modified UTF-7.  ProtocolError when invalid.
    """
    if not utf8:
        return decode_mutf7(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("Mailbox name is not valid UTF-8") from error


def encode_mailbox(name: str, utf8: bool) -> bytes:
    """Encode a mailbox name for the client: UTF-8 or modified UTF-7."""
    return name.encode("utf-8") if utf8 else encode_mutf7(name)


def canonical_mailbox(name: str, delimiter: str = "/") -> str:
    """Spell INBOX canonically (RFC 9051 section 5.1: INBOX is case-insensitive).

    "inbox" in any case becomes "INBOX", and so does the first component of a
    child name ("Inbox/Sub" -> "INBOX/Sub") so that INBOX's children are found
    however the client spells the parent.
    """
    first, separator, rest = name.partition(delimiter)
    if first.upper() != _INBOX:
        return name
    return _INBOX + separator + rest
