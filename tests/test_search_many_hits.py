"""SEARCH answers with many hits (mailhaven/imap/selected.py ``held`` and
``sequence_numbers``, mailhaven/codec/responses.py ``search``, the text index join
in mailhaven/storage/sqlite.py): the bulk paths must give exactly what the
one-message-at-a-time definitions give, with or without gaps in the UIDs, for few
hits or many, and for copies whose stored text came before the mailbox's own."""

from __future__ import annotations

import contextlib
import datetime
import imaplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.client import Response, search_uids
from mailhaven.codec import responses
from mailhaven.mime import analyze
from mailhaven.storage.interface import NewMessage
from tests.support import ServerThread, view_of


@st.composite
def views_and_asked(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """A view's UIDs (with or without gaps) and ascending UIDs to ask about, some of
    them not in the view (expunged, or arrived after it)."""
    first = draw(st.integers(1, 50))
    count = draw(st.integers(0, 300))
    if draw(st.booleans()):
        uids = list(range(first, first + count))
    else:
        uids = sorted(draw(st.sets(st.integers(1, 400), max_size=count)))
    extra = draw(st.sets(st.integers(1, 500), max_size=40))
    kept = draw(st.lists(st.sampled_from(uids), max_size=len(uids))) if uids else []
    return uids, sorted(set(kept) | extra)


@given(views_and_asked())
def test_held_keeps_exactly_the_uids_in_the_view(case: tuple[list[int], list[int]]) -> None:
    uids, asked = case
    view = view_of(uids)
    present = set(uids)
    assert view.held(asked) == [uid for uid in asked if uid in present]


@given(views_and_asked())
def test_sequence_numbers_are_positions_in_the_view(case: tuple[list[int], list[int]]) -> None:
    uids, asked = case
    view = view_of(uids)
    held = [uid for uid in asked if uid in set(uids)]
    assert view.sequence_numbers(held) == [uids.index(uid) + 1 for uid in held]


@pytest.mark.parametrize("numbers", [[], [7], [1, 2, 30000, 4294967295]])
def test_search_response_lists_every_number(numbers: list[int]) -> None:
    expected = b" ".join([b"SEARCH", *(str(n).encode() for n in numbers)])
    assert responses.search(numbers).payload == expected
    assert responses.search(numbers, 12).payload == expected + b" (MODSEQ 12)"


def test_benchmark_client_reads_search_numbers_without_modseq() -> None:
    response = Response(b"OK", b"done", [b"* SEARCH 2 3 10 (MODSEQ 917162500)\r\n", b"* 3 EXISTS"])
    assert search_uids(response) == {2, 3, 10}
    assert search_uids(Response(b"OK", b"done", [b"* SEARCH\r\n"])) == set()


def _message(i: int, word: str) -> bytes:
    return f"Subject: message {i}\r\n\r\nline {i} {word}\r\n".encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = ServerThread(tmp_path_factory.mktemp("many-hits")).start()
    server.add_user("alice")
    yield server
    server.stop()


def _login(server: ServerThread) -> imaplib.IMAP4:
    return server.imaplib_client("alice")


def _append(server: ServerThread, name: str, raws: list[bytes]) -> None:
    """One transaction for many messages: 180 APPENDs would take seconds."""
    storage = server.storage
    user = server.call(storage.get_user("alice"))
    mailbox = server.call(storage.get_mailbox(user.id, name))
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    messages = []
    for raw in raws:
        analyzed = analyze(raw)
        metadata = analyzed.metadata.to_bytes()
        messages.append(
            NewMessage(raw, frozenset(), when, metadata, analyzed.body_text, analyzed.header_text)
        )
    server.call(storage.append(mailbox.id, messages))


def _numbers(data: list[bytes]) -> list[int]:
    return [int(n) for n in data[0].split()]


def test_many_hits_with_gaps_copies_and_late_arrivals(server: ServerThread) -> None:
    """Every third message holds the word; expunges leave gaps; the mailbox also
    holds copies of older messages, whose stored text precedes its own, so the
    index meets their UIDs out of order; a message that arrives after the view
    was last brought up to date is not in the answer."""
    imap = _login(server)
    other = _login(server)
    try:
        for name in ("Old", "Work"):
            assert imap.create(name)[0] == "OK"
        _append(server, "Old", [_message(i, "harborview" if i % 2 else "hay") for i in range(30)])
        _append(
            server, "Work", [_message(i, "harborview" if i % 3 == 0 else "hay") for i in range(150)]
        )
        imap.select("Old")
        assert imap.uid("COPY", "1:*", "Work")[0] == "OK"
        imap.select("Work")
        # Gaps: every tenth message goes.
        imap.store(",".join(str(n) for n in range(1, 181, 10)), "+FLAGS.SILENT", r"(\Deleted)")
        assert imap.expunge()[0] == "OK"
        other.append("Work", None, None, _message(999, "harborview"))  # after the view

        typ, data = imap.uid("SEARCH", "TEXT", "harborview")
        assert typ == "OK"
        uids = _numbers(data)
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[TEXT])")
        assert typ == "OK"
        expected = []
        for item in data:
            if isinstance(item, tuple) and b"harborview" in item[1]:
                expected.append(int(item[0].split(b"UID ")[1].split()[0]))
        # The FETCH above saw the late message too (the view was brought up to date
        # after the SEARCH): the SEARCH before it must not have had it.
        late = max(expected)
        assert uids == sorted(expected)[:-1] and late not in uids
        assert len(uids) * 32 > 160  # many: through the UID map, not one by one

        typ, data = imap.search(None, "TEXT", "harborview")
        assert typ == "OK"
        typ, fetched = imap.fetch(",".join(map(str, _numbers(data))), "(UID)")
        assert typ == "OK"
        # By now the view holds the late message: sequence numbers cover it too.
        found = sorted(int(line.split(b"UID ")[1].rstrip(b")")) for line in fetched)
        assert found == sorted(expected)
    finally:
        for client in (imap, other):
            with contextlib.suppress(imaplib.IMAP4.abort, OSError):
                client.logout()


def test_few_hits_in_a_mailbox_with_gaps_need_no_uid_map() -> None:
    view = view_of([*range(1, 101), *range(150, 300)])
    assert view.held([5, 120, 151, 400]) == [5, 151]
    assert view.sequence_numbers([5, 151]) == [5, 102]
    assert view._index_by_uid is None  # two binary searches, not a map of 250 UIDs
