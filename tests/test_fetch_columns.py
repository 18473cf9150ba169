"""FETCH of the items the selected view holds is formatted straight from its columns
(mailhaven/imap/fetch_columns.py); its bytes must be those of the general per-message
path of mailhaven/imap/commands/fetch.py (RFC 9051 section 7.5.2), for any mix of
items, flags, \\Recent, zones and subsets of messages, and over a real socket."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.codec import responses
from mailhaven.codec.commands import FetchAttribute
from mailhaven.imap import fetch_columns
from mailhaven.imap.commands import fetch as fetch_command
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.storage.interface import Mailbox
from tests.support import ServerThread

FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "Work"]
ITEMS = sorted(fetch_columns.VIEW_ITEMS)


@st.composite
def views(draw: st.DrawFn) -> SelectedMailbox:
    count = draw(st.integers(0, 40))
    uids = sorted(draw(st.sets(st.integers(1, 10_000), min_size=count, max_size=count)))
    flag_sets = st.frozensets(st.sampled_from(FLAG_POOL), max_size=4)
    view = SelectedMailbox(
        mailbox=Mailbox(
            id=1, user_id=1, name="INBOX", uidvalidity=1, uidnext=10_001, highest_modseq=99
        ),
        readonly=False,
        uids=array("I", uids),
        flags=draw(st.lists(flag_sets, min_size=count, max_size=count)),
        modseqs=array("q", draw(st.lists(st.integers(1, 2**40), min_size=count, max_size=count))),
        internal_dates=array(
            "q", draw(st.lists(st.integers(0, 2**32), min_size=count, max_size=count))
        ),
        tz_offsets=array(
            "i",
            [
                60 * m
                for m in draw(st.lists(st.integers(-720, 840), min_size=count, max_size=count))
            ],
        ),
        sizes=array("q", draw(st.lists(st.integers(0, 2**31), min_size=count, max_size=count))),
        known_modseq=99,
    )
    view.recent = set(draw(st.lists(st.sampled_from(uids), max_size=count))) if uids else set()
    return view


def _general_path(
    view: SelectedMailbox, uids: list[int], attributes: list[FetchAttribute]
) -> bytes:
    encode = fetch_command._item_encoder(view, attributes)
    messages = []
    for uid in uids:
        number = view.sequence_number(uid)
        assert number is not None
        messages.append(fetch_command._Message(uid, number, None, None))
    return responses.encoded_fetches((m.number, encode(m)) for m in messages)


@settings(max_examples=200, deadline=None)
@given(
    view=views(),
    names=st.lists(st.sampled_from(ITEMS), min_size=1, max_size=7),
    data=st.data(),
)
def test_columns_give_the_bytes_of_the_general_path(
    view: SelectedMailbox, names: list[str], data: st.DataObject
) -> None:
    every = list(view.uids)
    subset = sorted(data.draw(st.sets(st.sampled_from(every))) if every else set())
    attributes = [FetchAttribute(name) for name in names]
    assert fetch_columns.served_from_view(attributes)
    for uids in (every, subset):
        fast = b"".join(fetch_columns.encoded_chunks(view, view.indexes_of(uids), attributes))
        assert fast == _general_path(view, uids, attributes)


def test_chunks_cover_every_message_in_order() -> None:
    count = fetch_columns.CHUNK * 2 + 5
    view = SelectedMailbox(
        mailbox=Mailbox(
            id=1, user_id=1, name="INBOX", uidvalidity=1, uidnext=count + 1, highest_modseq=1
        ),
        readonly=False,
        uids=array("I", range(1, count + 1)),
        flags=[frozenset({"\\Seen"})] * count,
        modseqs=array("q", [1] * count),
        internal_dates=array("q", [0] * count),
        tz_offsets=array("i", [0] * count),
        sizes=array("q", [1] * count),
        known_modseq=1,
    )
    chunks = list(fetch_columns.encoded_chunks(view, range(count), [FetchAttribute("UID")]))
    assert len(chunks) == 3
    lines = b"".join(chunks).split(b"\r\n")[:-1]
    assert lines[0] == b"* 1 FETCH (UID 1)"
    assert lines[-1] == b"* %d FETCH (UID %d)" % (count, count)
    assert len(lines) == count


def test_items_with_content_take_the_general_path() -> None:
    assert not fetch_columns.served_from_view([FetchAttribute("UID"), FetchAttribute("ENVELOPE")])
    assert not fetch_columns.served_from_view([FetchAttribute("EMAILID")])


def test_flag_resync_over_a_socket(server: ServerThread) -> None:
    """Whole-mailbox and partial FETCHes of view items, \\Recent held by the session."""
    server.add_user("carol")
    client = server.raw()
    client.login("carol")
    for i in range(1, 6):
        flags = b"(\\Seen $Junk)" if i % 2 else b"()"
        message = b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)
        client.command(b"a%d" % i, b"APPEND INBOX %s {%d+}\r\n%s" % (flags, len(message), message))
    client.command(b"s", b"SELECT INBOX (CONDSTORE)")
    client.command(b"st", b"STORE 2 +FLAGS.SILENT (\\Flagged)")
    lines = client.command(b"f", b"UID FETCH 1:* (UID FLAGS RFC822.SIZE THREADID)")
    assert lines[:-1] == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen $Junk \\Recent) RFC822.SIZE 22 THREADID NIL)",
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) RFC822.SIZE 22 THREADID NIL)",
        b"* 3 FETCH (UID 3 FLAGS (\\Seen $Junk \\Recent) RFC822.SIZE 22 THREADID NIL)",
        b"* 4 FETCH (UID 4 FLAGS (\\Recent) RFC822.SIZE 22 THREADID NIL)",
        b"* 5 FETCH (UID 5 FLAGS (\\Seen $Junk \\Recent) RFC822.SIZE 22 THREADID NIL)",
    ]
    assert lines[-1].startswith(b"f OK")
    lines = client.command(b"g", b"FETCH 2,4 (FLAGS MODSEQ)")
    assert [line.split(b" MODSEQ")[0] for line in lines[:-1]] == [
        b"* 2 FETCH (FLAGS (\\Flagged \\Recent)",
        b"* 4 FETCH (FLAGS (\\Recent)",
    ]
    assert lines[-1].startswith(b"g OK")
    client.close()
