"""Examples of the RFCs of extensions the core server already advertised, checked
over a socket: SEARCHRES (RFC 5182), ESEARCH (RFC 4731), LIST-EXTENDED (RFC
5258), LIST-STATUS (RFC 5819), MULTIAPPEND (RFC 3502), APPENDLIMIT (RFC 7889),
ENABLE (RFC 5161), ID (RFC 2971), UNSELECT (RFC 3691), WITHIN (RFC 5032)."""

from __future__ import annotations

import itertools

import pytest

from tests.support import RawClient, ServerThread


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = ServerThread(tmp_path_factory.mktemp("extensions")).start()
    running.add_user("alice")
    yield running
    running.stop()


def mail(n: int) -> bytes:
    return b"Subject: m%d\r\nFrom: a@b\r\n\r\nbody %d\r\n" % (n, n)


_box_numbers = itertools.count(1)


@pytest.fixture
def five(client):
    """A fresh mailbox of five messages, selected."""
    # Not id(client): the server lives for the whole module and ids are reused, so a
    # later test could get an earlier test's mailbox, messages and all.
    name = b"Box%d" % next(_box_numbers)
    client.command(b"C", b"CREATE " + name)
    for n in range(1, 6):
        client.command(b"A", b"APPEND %s {%d+}\r\n%s" % (name, len(mail(n)), mail(n)))
    client.command(b"S", b"SELECT " + name)
    client.box_name = name  # type: ignore[attr-defined]
    return client


def data(client: RawClient, command: bytes) -> list[bytes]:
    lines = client.command(b"T", command)
    assert lines[-1].startswith(b"T OK"), lines
    return lines[:-1]


def test_searchres_save_with_min_and_max_keeps_only_those(five):
    # RFC 5182 section 2.4, example 10.
    assert data(five, b"SEARCH RETURN (SAVE MIN) 2:4") == [b'* ESEARCH (TAG "T") MIN 2']
    assert data(five, b"FETCH $ (UID)") == [b"* 2 FETCH (UID 2)"]
    assert data(five, b"SEARCH RETURN (MAX SAVE MIN) 2:4") == [b'* ESEARCH (TAG "T") MIN 2 MAX 4']
    assert data(five, b"FETCH $ (UID)") == [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)"]
    data(five, b"SEARCH RETURN (MAX SAVE MIN COUNT) 2:4")
    assert len(data(five, b"FETCH $ (UID)")) == 3
    assert data(five, b"SEARCH RETURN (SAVE) 1,3") == []


def test_searchres_dollar_in_commands_and_failure_rules(five):
    data(five, b"SEARCH RETURN (SAVE) 1,3")
    assert data(five, b"SEARCH $ 2:4") == [b"* SEARCH 3"]
    assert data(five, b"UID SEARCH UID $") == [b"* SEARCH 1 3"]
    assert data(five, b"SEARCH OR $ 5") == [b"* SEARCH 1 3 5"]  # example 4
    assert data(five, b"STORE $ +FLAGS.SILENT (\\Flagged)") == []
    assert data(five, b"SEARCH FLAGGED") == [b"* SEARCH 1 3"]
    copied = five.command(b"T", b"COPY $ Archive")[-1]
    assert copied.startswith(b"T OK [COPYUID ") and b" 1,3 " in copied
    # A BAD SEARCH leaves "$" alone (section 2.1) ...
    assert five.command(b"T", b"SEARCH RETURN (SAVE) NOSUCHKEY")[-1].startswith(b"T BAD")
    assert data(five, b"UID FETCH $ (UID)") == [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)"]
    # ... an empty result empties it, and "$" stays a valid empty set.
    data(five, b"SEARCH RETURN (SAVE) SUBJECT nothing")
    assert data(five, b"FETCH $ (UID)") == []
    # SELECT resets it.
    data(five, b"SEARCH RETURN (SAVE) 2")
    five.command(b"S", b"SELECT INBOX")
    assert data(five, b"FETCH $ (UID)") == []


def test_esearch_examples(five):
    # RFC 4731 section 3.1.
    assert data(five, b"UID SEARCH RETURN (MIN COUNT) 2:4") == [
        b'* ESEARCH (TAG "T") UID MIN 2 COUNT 3'
    ]
    assert data(five, b"SEARCH RETURN () 1:2,4") == [b'* ESEARCH (TAG "T") ALL 1:2,4']
    assert data(five, b"SEARCH RETURN (MIN MAX) 9") == [b'* ESEARCH (TAG "T")']
    assert data(five, b"SEARCH RETURN (COUNT) 9") == [b'* ESEARCH (TAG "T") COUNT 0']


def test_within(five):
    # RFC 5032: all five were appended just now.
    assert data(five, b"SEARCH YOUNGER 3600") == [b"* SEARCH 1 2 3 4 5"]
    assert data(five, b"SEARCH OLDER 3600") == [b"* SEARCH"]
    assert five.command(b"T", b"SEARCH OLDER 0")[-1].startswith(b"T BAD")


def test_list_extended_and_list_status_examples(client):
    for command in (b"CREATE Fruit/Apple", b"CREATE Fruit/Banana", b"SUBSCRIBE Fruit/Banana"):
        assert client.command(b"C", command)[-1].startswith(b"C OK")
    client.command(b"C", b"CREATE Gone")
    client.command(b"C", b"SUBSCRIBE Gone")
    client.command(b"C", b"DELETE Gone")
    subscribed = data(client, b'LIST (SUBSCRIBED) "" "*"')
    assert b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" Gone' in subscribed
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Banana' in subscribed
    # RFC 5258 section 5, example 7: CHILDINFO for a parent of a subscribed name.
    recursive = data(client, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fr%"')
    assert recursive == [b'* LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))']
    # RFC 5819 section 2: no STATUS for a mailbox that does not match the selection.
    with_status = data(
        client, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fr%" RETURN (STATUS (MESSAGES))'
    )
    assert with_status == recursive
    assert data(client, b'LIST "" ("INBOX" "Fruit/A*") RETURN (STATUS (MESSAGES UIDNEXT))') == [
        b'* LIST (\\HasNoChildren) "/" INBOX',
        b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1)",
        b'* LIST (\\HasNoChildren) "/" Fruit/Apple',
        b"* STATUS Fruit/Apple (MESSAGES 0 UIDNEXT 1)",
    ]
    assert data(client, b'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)')[0] == (
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive'
    )


def test_multiappend_is_all_or_nothing_and_trycreate(client):
    client.command(b"C", b"CREATE Multi")
    good, bad = mail(1), b""
    lines = client.command(b"M", b"APPEND Multi {%d+}\r\n%s {0+}\r\n" % (len(good), good) + bad)
    assert lines[-1].startswith(b"M NO"), lines
    assert data(client, b"STATUS Multi (MESSAGES)") == [b"* STATUS Multi (MESSAGES 0)"]
    two = b"APPEND Multi (\\Seen) {%d+}\r\n%s {%d+}\r\n%s" % (len(good), good, len(good), good)
    assert client.command(b"M", two)[-1].startswith(b"M OK [APPENDUID ")
    missing = client.command(b"M", b"APPEND Nowhere {%d+}\r\n%s" % (len(good), good))[-1]
    assert missing.startswith(b"M NO [TRYCREATE]")


def test_appendlimit_capability_and_status(server, client):
    limit = server.config.limits.max_literal_size
    assert b"APPENDLIMIT=%d" % limit in client.command(b"C", b"CAPABILITY")[0].split()
    assert data(client, b"STATUS INBOX (APPENDLIMIT)") == [
        b"* STATUS INBOX (APPENDLIMIT %d)" % limit
    ]


def test_enable_id_and_unselect(five):
    assert data(five, b"ENABLE X-UNKNOWN") == [b"* ENABLED"]  # RFC 5161: unknown ignored
    (identity,) = data(five, b'ID ("name" "sodr" "version" "19.34")')
    assert identity.startswith(b'* ID ("name" "Mailhaven"')
    five.command(b"D", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert data(five, b"UNSELECT") == []  # RFC 3691: no EXPUNGE responses ...
    assert five.command(b"F", b"FETCH 1 UID")[-1].startswith(b"F BAD")  # ... and deselected
    name = five.box_name
    assert data(five, b"STATUS %s (MESSAGES DELETED)" % name) == [
        b"* STATUS %s (MESSAGES 5 DELETED 1)" % name
    ]
