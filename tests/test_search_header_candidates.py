"""SEARCH header keys narrowed by the text index (mailhaven/imap/search.py): the
index only proposes candidates, so a needle that occurs elsewhere in a message
(its body, another field) must not make a header key match, and every message
whose field does contain the needle must still be found."""

from __future__ import annotations

import pytest

from tests.support import search_numbers as search
from tests.support import selected_inbox_with


def _message(subject: str, sender: str, body: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n{extra}"
        f"Date: Tue, 1 Mar 2022 09:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


MESSAGES = [
    # 1: the needle only in the body
    _message("Lunch", "alice@example.org", "the quarterly numbers"),
    # 2: the needle in the subject, as an RFC 2047 encoded word
    _message("=?UTF-8?B?UXVhcnRlcmx5IEZvcmVjYXN0?=", "carol@example.org", "see attached"),
    # 3: the needle in another header field only
    _message("Minutes", "dave@example.org", "nothing", "X-Topic: quarterly\r\n"),
    # 4: plain subject, folded over two lines, different case
    _message("Our\r\n QUARTERLY review", "Ophélie Wintergreen <o@example.org>", "hi"),
]


@pytest.fixture
def client(tmp_path):
    with selected_inbox_with(tmp_path, [(None, raw) for raw in MESSAGES]) as imap:
        yield imap


def test_subject_matches_only_the_subject_field(client):
    assert search(client, "SUBJECT", "quarterly") == [2, 4]


def test_negated_header_key_covers_messages_the_index_did_not_propose(client):
    assert search(client, "NOT", "SUBJECT", "quarterly") == [1, 3]


def test_header_key_with_a_field_name_and_short_or_empty_needles(client):
    assert search(client, "HEADER", "X-Topic", "quarterly") == [3]
    assert search(client, "HEADER", "X-Topic", '""') == [3]
    assert search(client, "SUBJECT", "lu") == [1]


def test_decoded_non_ascii_address_and_combined_keys(client):
    client.literal = "ophélie".encode()
    typ, data = client.search("UTF-8", "FROM")
    assert typ == "OK" and data == [b"4"]
    assert search(client, "OR", "FROM", "carol", "SUBJECT", "minutes") == [2, 3]
    assert search(client, "SUBJECT", "quarterly", "NOT", "FROM", "carol") == [4]


def test_index_restricted_search_keeps_sequence_numbers_after_expunge(client):
    typ, data = client.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "OK", data
    client.expunge()
    # Messages 2-4 are now 1-3; only the indexed hits are evaluated.
    assert search(client, "BODY", "attached") == [1]
    assert search(client, "OR", "BODY", "attached", "SUBJECT", "review") == [1, 3]
    assert search(client, "BODY", "nothing", "SUBJECT", "minutes") == [2]
    typ, data = client.uid("SEARCH", "SUBJECT", "quarterly")
    assert typ == "OK" and data == [b"2 4"]
