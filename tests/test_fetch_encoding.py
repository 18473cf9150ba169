"""FETCH of many messages encodes its responses in bulk; the bytes must be those of
one ``* n FETCH (...)`` response per message (RFC 9051 section 7.5.2)."""

from __future__ import annotations

from mailhaven.codec import responses


def test_encoded_fetches_match_single_responses() -> None:
    messages = [
        (1, [(b"UID", b"4"), (b"FLAGS", b"(\\Seen \\Recent)")]),
        (2, [(b"FLAGS", b"()")]),
        (17, [(b"UID", b"90"), (b"BODY[]", b"{3}\r\nabc"), (b"MODSEQ", b"(12)")]),
    ]
    expected = b"".join(responses.fetch(n, items).encode() for n, items in messages)
    assert responses.encoded_fetches(messages) == expected
    assert expected.startswith(b"* 1 FETCH (UID 4 FLAGS (\\Seen \\Recent))\r\n* 2 FETCH")


def test_no_messages_encode_to_nothing() -> None:
    assert responses.encoded_fetches([]) == b""


def test_encoding_with_literals_gives_the_same_bytes() -> None:
    messages = [
        (1, [(b"UID", b"4"), (b"BODY[]", b"{3}\r\nabc")]),
        (2, []),
        (3, [(b"RFC822.HEADER", b"{4}\r\nX:\r\n")]),
        (9, [(b"FLAGS", b"()"), (b"BODY[HEADER]", b'""'), (b"UID", b"12")]),
    ]
    expected = b"".join(responses.fetch(n, items).encode() for n, items in messages)
    assert responses.encoded_fetches_with_literals(messages) == expected
    assert responses.encoded_fetches_with_literals([]) == b""
