"""SORT and THREAD (RFC 5256) with SORT=DISPLAY (RFC 5957): the base subject
algorithm, the threading algorithms on their own, and the commands over a socket."""

from __future__ import annotations

import pytest

from mailhaven.imap.threading import ThreadMessage, encode_threads, ordered_subject, references
from mailhaven.mime import analyze
from mailhaven.mime.sortkeys import SortData, base_subject, message_ids
from tests.support import RawClient, ServerThread


@pytest.mark.parametrize(
    ("subject", "base", "is_reply"),
    [
        ("Hello", "Hello", False),
        ("Re: Hello", "Hello", True),
        ("RE:  re: Fwd:Hello", "Hello", True),
        ("Re[2]: Hello", "Hello", True),  # subj-refwd with a subj-blob before ":"
        ("[list] Re: Hello", "Hello", True),
        ("[list] Hello", "Hello", False),
        ("[list]", "[list]", False),  # removing the blob would leave nothing
        ("Hello (fwd)", "Hello", True),
        ("Hello (fwd) (FWD)  ", "Hello", True),
        ("[fwd: Re: Hello]", "Hello", True),
        ("[Fwd: [fwd: Hello (fwd)]]", "Hello", True),
        ("Fw: \tHello   world", "Hello world", True),
        ("Refund: now", "Refund: now", False),  # "re" must be followed by ":" or a blob
        ("", "", False),
    ],
)
def test_base_subject(subject, base, is_reply):
    assert base_subject(subject) == (base, is_reply)


def test_message_ids_are_normalised():
    # RFC 5256 section 3: quoting must not make equal ids differ.
    assert message_ids(b'<"01KF8JCEOCBS0045PS"@xxx.yyy.com>') == ["01KF8JCEOCBS0045PS@xxx.yyy.com"]
    assert message_ids(b"<a@b> (comment) <c@d>\r\n <no-at>") == ["a@b", "c@d"]


def sort_data_of(raw: bytes) -> SortData:
    data = analyze(raw).metadata.sort
    assert data is not None
    return data


def test_sort_data_uses_display_names_and_references():
    data = sort_data_of(
        b"From: =?utf-8?q?=C3=89mile?= <Emile@Example.org>\r\nTo: <x@y>\r\n"
        b"Subject: =?utf-8?q?Re=3A_Caf=C3=A9?=\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n"
    )
    assert data.from_mailbox == "emile"
    assert data.from_display == "e\u0301mile"  # decoded, decomposed, case-folded
    assert data.to_display == "x@y"  # no display name: mailbox@host (RFC 5957 3)
    assert data.base_subject == "cafe\u0301" and data.is_reply
    assert data.references == ("p@x",)  # only the first In-Reply-To id


def node(number: int, sent: float, subject: str = "s", mid: str | None = None, refs=()):
    base, is_reply = base_subject(subject)
    sort = SortData(base.lower(), is_reply, "", "", "", "", "", mid, tuple(refs))
    return ThreadMessage(number=number, position=number, sent=sent, sort=sort)


def test_thread_encoding_of_rfc_example():
    # RFC 5256 section 4: "(2)(3 6 (4 23)(44 7 96))"
    messages = [
        node(2, 1, "a", "2@x"),
        node(3, 2, "b", "3@x"),
        node(6, 3, "Re: b", "6@x", ["3@x"]),
        node(4, 4, "Re: b", "4@x", ["3@x", "6@x"]),
        node(23, 5, "Re: b", "23@x", ["4@x"]),
        node(44, 6, "Re: b", "44@x", ["6@x"]),
        node(7, 7, "Re: b", "7@x", ["44@x"]),
        node(96, 8, "Re: b", "96@x", ["7@x"]),
    ]
    assert encode_threads(references(messages)) == b"(2)(3 6 (4 23)(44 7 96))"


def test_references_dummies_loops_and_subject_merging():
    # Two replies to a message that is not there: a dummy holds them at the top.
    orphans = [node(1, 1, "Re: x", "1@x", ["gone@x"]), node(2, 2, "Re: x", "2@x", ["gone@x"])]
    assert encode_threads(references(orphans)) == b"((1)(2))"
    # A single child of a dummy is promoted to the top level.
    assert encode_threads(references(orphans[:1])) == b"(1)"
    # References that would make a loop are ignored.
    loop = [node(1, 1, "a", "1@x", ["2@x"]), node(2, 2, "b", "2@x", ["1@x"])]
    assert encode_threads(references(loop)) == b"(2 1)"
    # Same base subject without references: the reply goes under the original,
    # two originals get a dummy parent (RFC 5256 section 3 step 5.C).
    by_subject = [node(1, 1, "Lunch"), node(2, 2, "Re: Lunch"), node(3, 3, "Other")]
    assert encode_threads(references(by_subject)) == b"(1 2)(3)"
    twins = [node(1, 1, "Lunch"), node(2, 2, "Lunch")]
    assert encode_threads(references(twins)) == b"((1)(2))"
    # Duplicate Message-IDs: only the first message keeps it.
    duplicates = [node(1, 1, "a", "d@x"), node(2, 2, "b", "d@x"), node(3, 3, "c", "3@x", ["d@x"])]
    assert encode_threads(references(duplicates)) == b"(1 3)(2)"


def test_long_reply_chain_does_not_recurse():
    chain = [node(1, 1, "a", "m1@x")]
    chain += [node(n, n, "Re: a", f"m{n}@x", [f"m{n - 1}@x"]) for n in range(2, 3001)]
    encoded = encode_threads(references(chain))
    assert encoded == b"(" + b" ".join(b"%d" % n for n in range(1, 3001)) + b")"


def test_ordered_subject_groups_by_base_subject():
    messages = [node(1, 5, "Re: b"), node(2, 1, "b"), node(3, 3, "a"), node(4, 9, "b"), node(5, 4)]
    # b: 2 (first), 1, 4; a: 3; s: 5.  Threads by the date of their first message.
    assert encode_threads(ordered_subject(messages)) == b"(2 (1)(4))(3)(5)"


# --------------------------------------------------------------------------- over a socket

MESSAGES = [
    b"From: Zed <aaron@b.example>\r\nTo: c@x\r\nSubject: Re: Hello\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <2@x>\r\n"
    b"In-Reply-To: <1@x>\r\n\r\nr\r\n",
    b"From: Amy <amy@b.example>\r\nTo: b@x\r\nSubject: Hello\r\n"
    b"Date: Sun, 31 Dec 2023 23:00:00 -0200\r\nMessage-ID: <1@x>\r\n\r\nhi\r\n",
    b"From: bob@b.example\r\nTo: a@x\r\nSubject: [list] apples\r\n"
    b"Date: Tue, 02 Jan 2024 00:00:00 +0000\r\nMessage-ID: <3@x>\r\n\r\napples\r\n",
    b"From: carl@b.example\r\nSubject: Fwd: Hello\r\nMessage-ID: <4@x>\r\n"
    b"References: <1@x> <2@x>\r\n\r\nfwd\r\n",
    b"From: =?utf-8?q?=C3=89mile?= <e@b.example>\r\nCc: d@x\r\nSubject: apples (fwd)\r\n"
    b"Date: Wed, 03 Jan 2024 00:00:00 +0000\r\nMessage-ID: <5@x>\r\n\r\nmore apples, longer\r\n",
]
# Message 4 has no Date: its internal date (5 Jan 2024) is its sent date.
INTERNAL_DATES = [b'"01-Jan-2024 10:00:00 +0000"'] * 3 + [b'"05-Jan-2024 00:00:00 +0000"'] * 2


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory):
    """A mailbox whose UIDs are sequence numbers + 1 (the first message is gone)."""
    server = ServerThread(tmp_path_factory.mktemp("sort")).start()
    server.add_user("alice")
    client = server.raw()
    client.login("alice")
    client.command(b"A0", b"APPEND INBOX (\\Deleted) {5+}\r\nx: y\r\n")
    for n, (raw, date) in enumerate(zip(MESSAGES, INTERNAL_DATES, strict=True)):
        client.command(b"A%d" % (n + 1), b"APPEND INBOX %s {%d+}\r\n%s" % (date, len(raw), raw))
    client.command(b"S", b"SELECT INBOX")
    client.command(b"E", b"EXPUNGE")
    yield client
    client.close()
    server.stop()


def single(client: RawClient, command: bytes) -> bytes:
    lines = client.command(b"T", command)
    assert lines[-1].startswith(b"T OK"), lines
    (data,) = [line for line in lines if line.startswith((b"* SORT", b"* THREAD"))]
    return data


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (b"(SUBJECT)", b"* SORT 3 5 1 2 4"),
        (b"(SUBJECT DATE)", b"* SORT 3 5 2 1 4"),
        (b"(DATE)", b"* SORT 2 1 3 5 4"),  # 2 is 1 Jan 01:00 UTC, compared in UTC
        (b"(REVERSE DATE)", b"* SORT 4 5 3 1 2"),
        (b"(ARRIVAL)", b"* SORT 1 2 3 4 5"),
        (b"(REVERSE ARRIVAL SUBJECT)", b"* SORT 5 4 3 1 2"),
        (b"(FROM)", b"* SORT 1 2 3 4 5"),
        (b"(DISPLAYFROM)", b"* SORT 2 3 4 5 1"),
        (b"(TO)", b"* SORT 4 5 3 2 1"),  # no To: sorts first; then a, b, c
        (b"(DISPLAYTO)", b"* SORT 4 5 3 2 1"),
        (b"(CC SIZE)", b"* SORT 4 2 3 1 5"),  # sizes 141 116 122 94 157; only 5 has Cc
        (b"(REVERSE SIZE)", b"* SORT 5 1 3 2 4"),
    ],
)
def test_sort_keys(mailbox, criteria, expected):
    assert single(mailbox, b"SORT " + criteria + b" UTF-8 ALL") == expected


def test_sort_with_search_criteria_and_uid_sort(mailbox):
    assert single(mailbox, b"SORT (SUBJECT) US-ASCII FROM b.example NOT 5") == b"* SORT 3 1 2 4"
    assert single(mailbox, b"UID SORT (SUBJECT DATE) UTF-8 ALL") == b"* SORT 4 6 3 2 5"
    assert single(mailbox, b"SORT (SUBJECT) UTF-8 SUBJECT nothing") == b"* SORT"


def test_thread_algorithms(mailbox):
    assert single(mailbox, b"THREAD REFERENCES UTF-8 ALL") == b"* THREAD (2 1 4)(3 5)"
    assert single(mailbox, b"UID THREAD REFERENCES UTF-8 ALL") == b"* THREAD (3 2 5)(4 6)"
    assert single(mailbox, b"THREAD ORDEREDSUBJECT UTF-8 ALL") == b"* THREAD (2 (1)(4))(3 5)"
    assert single(mailbox, b"THREAD ORDEREDSUBJECT US-ASCII TEXT gewp") == b"* THREAD"


def test_sort_and_thread_errors(mailbox):
    refused = mailbox.command(b"T", b"SORT (SUBJECT) ISO-8859-1 ALL")[-1]
    assert refused.startswith(b"T NO [BADCHARSET")
    assert mailbox.command(b"T", b"SORT (COLOUR) UTF-8 ALL")[-1].startswith(b"T BAD")
    assert mailbox.command(b"T", b"SORT SUBJECT UTF-8 ALL")[-1].startswith(b"T BAD")
    assert mailbox.command(b"T", b"THREAD REFS UTF-8 ALL")[-1].startswith(b"T BAD")
    assert mailbox.command(b"T", b"THREAD REFERENCES ALL")[-1].startswith(b"T NO [BADCHARSET")


def test_capabilities_advertise_sort_and_thread(mailbox):
    capabilities = set(mailbox.command(b"C", b"CAPABILITY")[0].split())
    assert {
        b"SORT",
        b"SORT=DISPLAY",
        b"THREAD=REFERENCES",
        b"THREAD=ORDEREDSUBJECT",
    } <= capabilities
