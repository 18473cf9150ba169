"""Mailbox name encodings (RFC 3501 section 5.1.3, RFC 6855, RFC 9051 section 5.1)."""

from __future__ import annotations

import pytest

from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.mailbox_names import (
    canonical_mailbox,
    decode_mailbox,
    decode_mutf7,
    encode_mailbox,
    encode_mutf7,
)

EXAMPLES = [
    ("INBOX", b"INBOX"),
    ("&", b"&-"),
    ("Tom & Jerry", b"Tom &- Jerry"),
    # RFC 3501 section 5.1.3
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("Привет", b"&BB8EQAQ4BDIENQRC-"),
    ("😀", b"&2D3eAA-"),  # a surrogate pair
    ("a\tb", b"a&AAk-b"),  # control characters are encoded, not sent raw
]


@pytest.mark.parametrize(("name", "encoded"), EXAMPLES)
def test_mutf7_examples(name: str, encoded: bytes) -> None:
    assert encode_mutf7(name) == encoded
    assert decode_mutf7(encoded) == name


@pytest.mark.parametrize(
    "invalid",
    [
        b"&U,BTFw",  # unterminated
        b"&U,BTFw-&ZeVnLIqe-",  # adjacent shifted sequences must be merged
        b"&AGE-",  # "a" must be written directly
        b"&ACY-",  # "&" must be written as "&-"
        b"&U,BTF-",  # not a whole number of UTF-16 units
        b"&U,BTFx-",  # non-zero padding bits
        b"&U,BTFwA-",  # superfluous BASE64 character
        b"&2D0-",  # lone high surrogate
        b"&U/BTFw-",  # "/" instead of ","
        b"&U,BTFw=-",  # padding is not used
        "caf\u00e9".encode(),  # raw 8-bit
        b"a\tb",  # raw control character
    ],
)
def test_mutf7_rejects_non_canonical_input(invalid: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_mutf7(invalid)


def test_decode_mailbox_in_utf8_mode_is_utf8_only() -> None:
    assert decode_mailbox("Entwürfe".encode(), utf8=True) == "Entwürfe"
    # An ASCII name with "&" is taken literally in UTF-8 mode.
    assert decode_mailbox(b"Entw&APw-rfe", utf8=True) == "Entw&APw-rfe"
    with pytest.raises(ProtocolError):
        decode_mailbox(b"\xff\xfe", utf8=True)


def test_decode_mailbox_in_legacy_mode_is_mutf7() -> None:
    assert decode_mailbox(b"Entw&APw-rfe", utf8=False) == "Entwürfe"
    with pytest.raises(ProtocolError):
        decode_mailbox("Entwürfe".encode(), utf8=False)


def test_encode_mailbox_follows_the_mode() -> None:
    assert encode_mailbox("Entwürfe", utf8=True) == "Entwürfe".encode()
    assert encode_mailbox("Entwürfe", utf8=False) == b"Entw&APw-rfe"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("inbox", "INBOX"),
        ("InBoX", "INBOX"),
        ("INBOX", "INBOX"),
        ("inbox/Sub/inbox", "INBOX/Sub/inbox"),
        ("Inboxes", "Inboxes"),
        ("Archive/inbox", "Archive/inbox"),
        ("", ""),
    ],
)
def test_canonical_mailbox(name: str, canonical: str) -> None:
    assert canonical_mailbox(name) == canonical


def test_canonical_mailbox_with_another_delimiter() -> None:
    assert canonical_mailbox("inbox.Sent", delimiter=".") == "INBOX.Sent"
    assert canonical_mailbox("inbox/Sent", delimiter=".") == "inbox/Sent"
