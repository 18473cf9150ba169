"""Parsing of framed commands (RFC 9051 section 9 and the extensions it lists).

Most lines are the client examples of RFC 9051 section 6 and of the extension RFCs.
"""

from __future__ import annotations

import datetime

import pytest

from mailhaven.codec import commands as c
from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.parser import parse_command, read_tag_and_name

S = c.SequenceSet
K = c.SearchKey
F = c.FetchAttribute


def seq(*ranges: tuple[int | None, int | None]) -> c.SequenceSet:
    return c.SequenceSet(tuple(ranges))


def search(tag: str, *keys: c.SearchKey, **options: object) -> c.Search:
    return c.Search(tag, K("AND", keys), **options)  # type: ignore[arg-type]


def zone(hours: int, minutes: int = 0) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=hours, minutes=minutes))


# --------------------------------------------------------------------------- simple commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"abcd CAPABILITY", c.Capability("abcd")),
        (b"a002 noop", c.Noop("a002")),
        (b"A023 LOGOUT", c.Logout("A023")),
        (b"a001 STARTTLS", c.StartTLS("a001")),
        (b"A001 NAMESPACE", c.Namespace("A001")),
        (b"a047 IDLE", c.Idle("a047")),
        (b"FXXZ CHECK", c.Check("FXXZ")),
        (b"A341 CLOSE", c.Close("A341")),
        (b"A342 UNSELECT", c.Unselect("A342")),
        (b"A202 EXPUNGE", c.Expunge("A202")),
        (b"A003 UID EXPUNGE 3000:3002", c.Expunge("A003", seq((3000, 3002)))),
        (b"tag]1 NOOP", c.Noop("tag]1")),
    ],
)
def test_commands_without_arguments(line: bytes, command: c.Command) -> None:
    assert parse_command(line) == command


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"a001 LOGIN SMITH SESAME", c.Login("a001", b"SMITH", b"SESAME")),
        (b'a001 LOGIN "fred" "pass \\"word\\" \\\\"', c.Login("a001", b"fred", b'pass "word" \\')),
        (b"a001 LOGIN {4}\r\nfred {8+}\r\nfoo bar}", c.Login("a001", b"fred", b"foo bar}")),
        (b"a001 LOGIN {4}\nfred x", c.Login("a001", b"fred", b"x")),
        (b'a001 LOGIN "" ""', c.Login("a001", b"", b"")),
        (b"A001 AUTHENTICATE GSSAPI", c.Authenticate("A001", "GSSAPI")),
        (b"a AUTHENTICATE plain =", c.Authenticate("a", "PLAIN", b"")),
        (
            b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
            c.Authenticate("a", "PLAIN", b"test\x00test\x00test"),
        ),
        (b"t1 ENABLE CONDSTORE utf8=accept", c.Enable("t1", ("CONDSTORE", "UTF8=ACCEPT"))),
        (b"a ID NIL", c.Id("a")),
        (b"a ID ()", c.Id("a", ())),
        (
            b'a023 ID ("name" "sodr" "version" "19.34" "vendor" NIL)',
            c.Id("a023", (("name", "sodr"), ("version", "19.34"), ("vendor", None))),
        ),
    ],
)
def test_authentication_and_session_commands(line: bytes, command: c.Command) -> None:
    assert parse_command(line) == command


# --------------------------------------------------------------------------- mailboxes


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"A142 SELECT INBOX", c.Select("A142", b"INBOX")),
        (b'A932 EXAMINE "blurdybloop"', c.Select("A932", b"blurdybloop", readonly=True)),
        (b"A142 SELECT inbox (CONDSTORE)", c.Select("A142", b"inbox", condstore=True)),
        (
            b"A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
            c.Select(
                "A02",
                b"INBOX",
                qresync=(67890007, 90060115194045000, seq((41, 211), (214, 541)), None),
            ),
        ),
        (
            b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
            b"(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976:29979)))",
            c.Select(
                "B04",
                b"INBOX",
                qresync=(
                    67890007,
                    90060115194045000,
                    seq((1, 29997)),
                    (
                        seq((5000, 5000), (7500, 7500), (9000, 9000), (9990, 9999)),
                        seq(
                            (15000, 15000),
                            (22500, 22500),
                            (27000, 27000),
                            (29970, 29970),
                            (29973, 29973),
                            (29976, 29979),
                        ),
                    ),
                ),
            ),
        ),
        (
            b"A1 SELECT INBOX (QRESYNC (1 2 (3 4)) CONDSTORE)",
            c.Select(
                "A1", b"INBOX", condstore=True, qresync=(1, 2, None, (seq((3, 3)), seq((4, 4))))
            ),
        ),
        (b"A003 CREATE owatagusiam/", c.Create("A003", b"owatagusiam/")),
        (
            b"t1 CREATE MySpecialArchive (USE (\\Archive \\Drafts))",
            c.Create("t1", b"MySpecialArchive", ("\\Archive", "\\Drafts")),
        ),
        (b"A683 DELETE blurdybloop", c.Delete("A683", b"blurdybloop")),
        (b"A683 RENAME blurdybloop sarasoop", c.Rename("A683", b"blurdybloop", b"sarasoop")),
        (b"A002 SUBSCRIBE #news.comp.mail.mime", c.Subscribe("A002", b"#news.comp.mail.mime")),
        (b"A002 UNSUBSCRIBE #news.comp.mail.mime", c.Unsubscribe("A002", b"#news.comp.mail.mime")),
        (
            b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
            c.Status("A042", b"blurdybloop", ("UIDNEXT", "MESSAGES")),
        ),
        (
            b"A1 STATUS INBOX (highestmodseq size deleted-storage appendlimit mailboxid)",
            c.Status(
                "A1",
                b"INBOX",
                ("HIGHESTMODSEQ", "SIZE", "DELETED-STORAGE", "APPENDLIMIT", "MAILBOXID"),
            ),
        ),
        (b'A101 LIST "" ""', c.List("A101", b"", (b"",))),
        (b'A102 LIST #news.comp.mail.misc ""', c.List("A102", b"#news.comp.mail.misc", (b"",))),
        (b"A202 LIST ~/Mail/ %", c.List("A202", b"~/Mail/", (b"%",))),
        (b'A1 LIST "" foo*bar]%', c.List("A1", b"", (b"foo*bar]%",))),
        (
            b'A01 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
            c.List("A01", b"", (b"%",), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN",), (), True),
        ),
        (
            b'A02 LIST "" ("INBOX" "Drafts" "Sent/%")',
            c.List("A02", b"", (b"INBOX", b"Drafts", b"Sent/%"), extended=True),
        ),
        (
            b'A03 LIST () "" % RETURN (SUBSCRIBED SUBSCRIBED SPECIAL-USE)',
            c.List("A03", b"", (b"%",), (), ("SUBSCRIBED", "SPECIAL-USE"), (), True),
        ),
        (
            b'A04 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
            c.List("A04", b"", (b"%",), (), ("STATUS",), ("MESSAGES", "UNSEEN"), True),
        ),
        (
            b'A05 LIST (SPECIAL-USE REMOTE) "" *',
            c.List("A05", b"", (b"*",), ("SPECIAL-USE", "REMOTE"), (), (), True),
        ),
        (b'A06 LIST "" % RETURN ()', c.List("A06", b"", (b"%",), extended=True)),
        (b'A002 LSUB "#news." "comp.mail.*"', c.Lsub("A002", b"#news.", b"comp.mail.*")),
        (b'A1 LSUB "" %', c.Lsub("A1", b"", b"%")),
    ],
)
def test_mailbox_commands(line: bytes, command: c.Command) -> None:
    assert parse_command(line) == command


# --------------------------------------------------------------------------- append

MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello\r\n"
)


def test_append_rfc_example() -> None:
    line = (
        b'A003 APPEND saved-messages (\\Seen) "05-Jul-1994 02:10:20 -0700" {%d}\r\n' % len(MESSAGE)
        + MESSAGE
    )
    assert parse_command(line) == c.Append(
        "A003",
        b"saved-messages",
        (
            c.AppendMessage(
                MESSAGE,
                ("\\Seen",),
                datetime.datetime(1994, 7, 5, 2, 10, 20, tzinfo=zone(-7)),
            ),
        ),
    )


def test_append_with_space_padded_day_and_no_flags() -> None:
    line = b'A1 APPEND INBOX " 5-jul-2024 23:59:59 +0530" {1+}\r\nx'
    [message] = parse_command(line).messages  # type: ignore[union-attr]
    assert message.internal_date == datetime.datetime(2024, 7, 5, 23, 59, 59, tzinfo=zone(5, 30))
    assert message.flags == ()


def test_multiappend_with_binary_literal() -> None:
    line = b"A003 APPEND Drafts (\\Draft $MDNSent) {3}\r\nabc () ~{4+}\r\n\x00\r\n\xff {0}\r\n"
    assert parse_command(line) == c.Append(
        "A003",
        b"Drafts",
        (
            c.AppendMessage(b"abc", ("\\Draft", "$MDNSent")),
            c.AppendMessage(b"\x00\r\n\xff", binary=True),
            c.AppendMessage(b""),
        ),
    )


def test_append_utf8_data_extension() -> None:
    line = b"A1 APPEND INBOX (\\Seen) UTF8 (~{3}\r\n\xc3\xa9x)"
    assert parse_command(line) == c.Append(
        "A1", b"INBOX", (c.AppendMessage(b"\xc3\xa9x", ("\\Seen",), binary=True),)
    )


# --------------------------------------------------------------------------- fetch


@pytest.mark.parametrize(
    ("line", "attributes"),
    [
        (b"A1 FETCH 1 FAST", (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"))),
        (b"A1 FETCH 1 all", (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"))),
        (
            b"A1 FETCH 1 FULL",
            (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"), F("BODY")),
        ),
        (b"A1 FETCH 1 body", (F("BODY"),)),
        (b"A1 FETCH 1 (BODYSTRUCTURE uid modseq)", (F("BODYSTRUCTURE"), F("UID"), F("MODSEQ"))),
        (
            b"A1 FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE)",
            (F("RFC822"), F("RFC822.HEADER"), F("RFC822.TEXT"), F("RFC822.SIZE")),
        ),
        (
            b"A1 FETCH 1 (SAVEDATE EMAILID THREADID PREVIEW)",
            (F("SAVEDATE"), F("EMAILID"), F("THREADID"), F("PREVIEW")),
        ),
        (b"A1 FETCH 1 BODY[]", (F("BODY[]", c.Section()),)),
        (b"A1 FETCH 1 BODY.PEEK[]<0.1024>", (F("BODY[]", c.Section(), (0, 1024), peek=True),)),
        (b"A1 FETCH 1 BODY[TEXT]", (F("BODY[]", c.Section(text="TEXT")),)),
        (b"A1 FETCH 1 BODY[header]", (F("BODY[]", c.Section(text="HEADER")),)),
        (b"A1 FETCH 1 BODY[1.2.3]", (F("BODY[]", c.Section((1, 2, 3))),)),
        (b"A1 FETCH 1 BODY[4.2.MIME]", (F("BODY[]", c.Section((4, 2), "MIME")),)),
        (b"A1 FETCH 1 BODY[3.HEADER]", (F("BODY[]", c.Section((3,), "HEADER")),)),
        (
            b"A1 FETCH 1 BODY[HEADER.FIELDS (DATE from)]",
            (F("BODY[]", c.Section(text="HEADER.FIELDS", fields=("DATE", "FROM"))),),
        ),
        (
            b'A1 FETCH 1 BODY.PEEK[2.HEADER.FIELDS.NOT ("X-Foo" {5}\r\nX-Bar)]<10.20>',
            (
                F(
                    "BODY[]",
                    c.Section((2,), "HEADER.FIELDS.NOT", ("X-FOO", "X-BAR")),
                    (10, 20),
                    peek=True,
                ),
            ),
        ),
        (b"A1 FETCH 1 BINARY[]", (F("BINARY", c.Section()),)),
        (b"A1 FETCH 1 BINARY.PEEK[1.2]<0.5>", (F("BINARY", c.Section((1, 2)), (0, 5), True),)),
        (b"A1 FETCH 1 BINARY.SIZE[3]", (F("BINARY.SIZE", c.Section((3,))),)),
    ],
)
def test_fetch_attributes(line: bytes, attributes: tuple[c.FetchAttribute, ...]) -> None:
    command = parse_command(line)
    assert isinstance(command, c.Fetch)
    assert command.attributes == attributes


def test_fetch_rfc_example() -> None:
    assert parse_command(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])") == c.Fetch(
        "A654",
        seq((2, 4)),
        (F("FLAGS"), F("BODY[]", c.Section(text="HEADER.FIELDS", fields=("DATE", "FROM")))),
    )


def test_uid_fetch_adds_uid_and_takes_modifiers() -> None:
    command = parse_command(b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert command == c.Fetch(
        "s100",
        seq((300, 500)),
        (F("FLAGS"), F("UID")),
        uid=True,
        changed_since=12345,
        vanished=True,
    )


def test_uid_fetch_keeps_an_explicit_uid_once() -> None:
    command = parse_command(b"a UID FETCH 1:* (UID FLAGS)")
    assert isinstance(command, c.Fetch)
    assert command.attributes == (F("UID"), F("FLAGS"))


def test_fetch_sequence_sets() -> None:
    command = parse_command(b"a FETCH 2,4:7,9,12:*,*:3,* FLAGS")
    assert isinstance(command, c.Fetch)
    assert command.sequence == seq((2, 2), (4, 7), (9, 9), (12, None), (None, 3), (None, None))
    assert parse_command(b"a FETCH $ FLAGS").sequence == S((), saved=True)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- store / copy / move


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (
            b"A003 STORE 2:4 +FLAGS (\\Deleted)",
            c.Store("A003", seq((2, 4)), "+", ("\\Deleted",)),
        ),
        (
            b"A003 STORE 1 -flags.silent \\Seen $Junk",
            c.Store("A003", seq((1, 1)), "-", ("\\Seen", "$Junk"), silent=True),
        ),
        (b"A003 STORE 1 FLAGS ()", c.Store("A003", seq((1, 1)), "", ())),
        (
            b"d105 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
            c.Store(
                "d105",
                seq((7, 7), (5, 5), (9, 9)),
                "+",
                ("\\Deleted",),
                silent=True,
                uid=True,
                unchanged_since=320162338,
            ),
        ),
        (
            b"A1 STORE $ (UNCHANGEDSINCE 0) FLAGS x",
            c.Store("A1", S((), True), "", ("x",), unchanged_since=0),
        ),
        (b"A003 COPY 2:4 MEETING", c.Copy("A003", seq((2, 4)), b"MEETING")),
        (b'A004 UID COPY 1:* "Other box"', c.Copy("A004", seq((1, None)), b"Other box", uid=True)),
        (b"a MOVE 1:3 Trash", c.Move("a", seq((1, 3)), b"Trash")),
        (b"a uid move 42 Trash", c.Move("a", seq((42, 42)), b"Trash", uid=True)),
    ],
)
def test_store_copy_move(line: bytes, command: c.Command) -> None:
    assert parse_command(line) == command


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (
            b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
            search(
                "A282",
                K("FLAGGED"),
                K("SINCE", datetime.date(1994, 2, 1)),
                K("NOT", K("FROM", "Smith")),
            ),
        ),
        (
            b'A283 SEARCH TEXT "string not in mailbox"',
            search("A283", K("TEXT", "string not in mailbox")),
        ),
        (
            b"A284 SEARCH CHARSET UTF-8 TEXT {12}\r\n" + "быстро".encode(),
            search("A284", K("TEXT", "быстро"), charset="UTF-8"),
        ),
        (
            b"A285 SEARCH OR (SMALLER 10000 LARGER 100) uid 1:5,$ ",
            None,
        ),
        (
            b"A301 SEARCH RETURN () FLAGGED",
            search("A301", K("FLAGGED"), return_options=()),
        ),
        (
            b"A282 SEARCH RETURN (MIN COUNT save) FLAGGED since 1-feb-1994",
            search(
                "A282",
                K("FLAGGED"),
                K("SINCE", datetime.date(1994, 2, 1)),
                return_options=("MIN", "COUNT", "SAVE"),
            ),
        ),
        (
            b'A1 UID SEARCH CHARSET "us-ascii" $ 1:10 UID 5:*',
            search(
                "A1",
                K("SEQSET", S((), saved=True)),
                K("SEQSET", seq((1, 10))),
                K("UID", seq((5, None))),
                uid=True,
                charset="US-ASCII",
            ),
        ),
        (
            b"a SEARCH OR SEEN (DELETED UNDRAFT) HEADER Message-ID <x@y>",
            search(
                "a",
                K("OR", (K("SEEN"), K("AND", (K("DELETED"), K("UNDRAFT"))))),
                K("HEADER", ("MESSAGE-ID", "<x@y>")),
            ),
        ),
        (
            b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
            search("a", K("MODSEQ", 620162338)),
        ),
        (b"a SEARCH MODSEQ 0", search("a", K("MODSEQ", 0))),
        (b"a SEARCH OLDER 3600 YOUNGER 60", search("a", K("OLDER", 3600), K("YOUNGER", 60))),
        (
            b"a SEARCH KEYWORD $Forwarded UNKEYWORD foo",
            search("a", K("KEYWORD", "$Forwarded"), K("UNKEYWORD", "foo")),
        ),
        (
            b'a SEARCH SENTBEFORE "7-Mar-2020" SENTON 07-Mar-2020 SENTSINCE 1-Jan-2000',
            search(
                "a",
                K("SENTBEFORE", datetime.date(2020, 3, 7)),
                K("SENTON", datetime.date(2020, 3, 7)),
                K("SENTSINCE", datetime.date(2000, 1, 1)),
            ),
        ),
        (
            b"a SEARCH BEFORE 1-Jan-2020 ON 2-Jan-2020 LARGER 9223372036854775807",
            search(
                "a",
                K("BEFORE", datetime.date(2020, 1, 1)),
                K("ON", datetime.date(2020, 1, 2)),
                K("LARGER", 2**63 - 1),
            ),
        ),
    ],
)
def test_search(line: bytes, command: c.Search | None) -> None:
    if command is None:  # the trailing space makes this line invalid
        with pytest.raises(ProtocolError):
            parse_command(line)
    else:
        assert parse_command(line) == command


@pytest.mark.parametrize(
    "key",
    [
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
    ],
)
def test_search_keys_without_arguments(key: str) -> None:
    assert parse_command(b"a SEARCH " + key.lower().encode()) == search("a", K(key))


@pytest.mark.parametrize("key", ["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"])
def test_search_string_keys(key: str) -> None:
    assert parse_command(b"a SEARCH %s {3}\r\nx y" % key.encode()) == search("a", K(key, "x y"))


def test_search_or_of_parenthesised_lists() -> None:
    assert parse_command(b"a SEARCH OR (SMALLER 10000 LARGER 100) UID 1:5,9") == search(
        "a",
        K(
            "OR",
            (
                K("AND", (K("SMALLER", 10000), K("LARGER", 100))),
                K("UID", seq((1, 5), (9, 9))),
            ),
        ),
    )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        (b"", None),
        (b"+tag NOOP", None),
        (b" a NOOP", None),
        (b"a*b NOOP", None),
        (b"a", "a"),
        (b"a ", "a"),
        (b"a  NOOP", "a"),
        (b"a NOOP ", "a"),
        (b"a\tNOOP", None),
        (b"a FROB", "a"),
        (b"a LOGIN fred", "a"),
        (b"a LOGIN fred  pass", "a"),
        (b"a LOGIN fred {5}\r\npas", "a"),
        (b"a LOGIN fred ~{4}\r\npass", "a"),
        (b"a LOGIN fred {4}\r\np\x00ss", "a"),
        (b'a LOGIN "fred pass', "a"),
        (b'a LOGIN "fr\\ed" pass', "a"),
        (b'a LOGIN "fr\xc3\xa9d" pass', "a"),
        (b"a LOGIN fr(ed pass", "a"),
        (b"a SELECT", "a"),
        (b"a SELECT INBOX ()", "a"),
        (b"a SELECT INBOX (FOO)", "a"),
        (b"a SELECT INBOX (QRESYNC (0 1))", "a"),
        (b"a SELECT INBOX (QRESYNC (1 0))", "a"),
        (b"a SELECT INBOX (QRESYNC (1 2 1:*))", "a"),
        (b"a SELECT INBOX (QRESYNC (1 2 1:5 ))", "a"),
        (b"a CREATE box (USE (Drafts))", "a"),
        (b"a CREATE box (FOO)", "a"),
        (b"a STATUS box ()", "a"),
        (b"a STATUS box (MESSAGES BOGUS)", "a"),
        (b'a LIST (RECURSIVEMATCH) "" %', "a"),
        (b'a LIST (REMOTE RECURSIVEMATCH) "" %', "a"),
        (b'a LIST (FOO) "" %', "a"),
        (b'a LIST "" % RETURN (FOO)', "a"),
        (b'a LIST "" % (CHILDREN)', "a"),
        (b'a LIST "" ()', "a"),
        (b"a APPEND box", "a"),
        (b"a APPEND box (\\Seen)", "a"),
        (b"a APPEND box (\\*) {1+}\r\nx", "a"),
        (b'a APPEND box "31-Feb-2020 00:00:00 +0000" {1+}\r\nx', "a"),
        (b'a APPEND box "1-Feb-2020 00:00:00 +0000" {1+}\r\nx', "a"),
        (b'a APPEND box "01-Foo-2020 00:00:00 +0000" {1+}\r\nx', "a"),
        (b'a APPEND box "01-Feb-2020 24:00:00 +0000" {1+}\r\nx', "a"),
        (b'a APPEND box "01-Feb-2020 00:00:00 +0060" {1+}\r\nx', "a"),
        (b'a APPEND box "01-Feb-2020 00:00:00 +9959" {1+}\r\nx', "a"),
        (b"a APPEND box UTF8 ({1+}\r\nx)", "a"),
        (b"a APPEND box {1+}\r\nx extra", "a"),
        (b"a AUTHENTICATE", "a"),
        (b"a AUTHENTICATE PLAIN abc", "a"),
        (b"a AUTHENTICATE PLAIN ab=c", "a"),
        (b"a AUTHENTICATE PLAIN ====", "a"),
        (b"a ENABLE", "a"),
        (b'a ID ("name")', "a"),
        (b"a FETCH", "a"),
        (b"a FETCH 1", "a"),
        (b"a FETCH 0 FLAGS", "a"),
        (b"a FETCH 01 FLAGS", "a"),
        (b"a FETCH 4294967296 FLAGS", "a"),
        (b"a FETCH 1, FLAGS", "a"),
        (b"a FETCH 1:2:3 FLAGS", "a"),
        (b"a FETCH $,1 FLAGS", "a"),
        (b"a FETCH 1 ()", "a"),
        (b"a FETCH 1 (ALL)", "a"),
        (b"a FETCH 1 BOGUS", "a"),
        (b"a FETCH 1 BODY.PEEK", "a"),
        (b"a FETCH 1 BODY[0]", "a"),
        (b"a FETCH 1 BODY[MIME]", "a"),
        (b"a FETCH 1 BODY[1.BOGUS]", "a"),
        (b"a FETCH 1 BODY[HEADER.FIELDS]", "a"),
        (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a"),
        (b"a FETCH 1 BODY[]<0.0>", "a"),
        (b"a FETCH 1 BODY[]<0>", "a"),
        (b"a FETCH 1 BINARY[TEXT]", "a"),
        (b"a FETCH 1 BINARY.SIZE", "a"),
        (b"a FETCH 1 FLAGS (VANISHED)", "a"),
        (b"a UID FETCH 1 FLAGS (VANISHED)", "a"),
        (b"a FETCH 1 FLAGS (CHANGEDSINCE 0)", "a"),
        (b"a FETCH 1 FLAGS (FOO)", "a"),
        (b"a STORE 1 FLAGS", "a"),
        (b"a STORE 1 FLAGS (\\*)", "a"),
        (b"a STORE 1 *FLAGS (x)", "a"),
        (b"a STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS (x)", "a"),
        (b"a COPY 1", "a"),
        (b"a UID", "a"),
        (b"a UID NOOP", "a"),
        (b"a UID EXPUNGE", "a"),
        (b"a SEARCH", "a"),
        (b"a SEARCH ()", "a"),
        (b"a SEARCH BOGUS", "a"),
        (b"a SEARCH FROM", "a"),
        (b"a SEARCH ON 32-Jan-2020", "a"),
        (b"a SEARCH ON 1-Jan-20", "a"),
        (b"a SEARCH KEYWORD \\Seen", "a"),
        (b"a SEARCH OLDER 0", "a"),
        (b"a SEARCH LARGER 9223372036854775808", "a"),
        (b'a SEARCH MODSEQ "/foo" all 1', "a"),
        (b'a SEARCH MODSEQ "/flags/x" nobody 1', "a"),
        (b"a SEARCH RETURN (PARTIAL) ALL", "a"),
        (b"a SEARCH (ALL", "a"),
        (b"a SEARCH OR ALL", "a"),
        (b"a SEARCH \xff", "a"),
        (b"a NOOP\r\nb NOOP", "a"),
    ],
)
def test_syntax_errors_are_bad_with_the_tag(line: bytes, tag: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_command(line)
    assert caught.value.tag == tag
    assert caught.value.status == "BAD"


def test_unknown_charset_is_no_badcharset() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_command(b"A1 SEARCH CHARSET KOI8-R FROM x")
    assert (caught.value.tag, caught.value.status, caught.value.code) == (
        "A1",
        "NO",
        b"BADCHARSET (UTF-8 US-ASCII)",
    )


def test_nesting_is_limited() -> None:
    deep = b"a SEARCH " + b"(" * 5 + b"ALL" + b")" * 5
    assert parse_command(deep, max_nesting=5).key.args[0].op == "AND"  # type: ignore[union-attr]
    with pytest.raises(ProtocolError) as caught:
        parse_command(deep, max_nesting=4)
    assert (caught.value.tag, caught.value.code) == ("a", b"LIMIT")
    not_chain = b"a SEARCH " + b"NOT " * 100 + b"ALL"
    with pytest.raises(ProtocolError) as caught:
        parse_command(not_chain)
    assert caught.value.code == b"LIMIT"


def test_utf8_quoted_strings_need_utf8_mode_and_valid_utf8() -> None:
    line = 'a SEARCH SUBJECT "café"'.encode()
    with pytest.raises(ProtocolError):
        parse_command(line)
    assert parse_command(line, utf8=True) == search("a", K("SUBJECT", "café"))
    with pytest.raises(ProtocolError):
        parse_command(b'a SEARCH SUBJECT "caf\xe9"', utf8=True)


def test_search_strings_decode_leniently() -> None:
    command = parse_command(b"a SEARCH SUBJECT {4}\r\ncaf\xe9")
    assert command == search("a", K("SUBJECT", "caf\ufffd"))


def test_mailbox_names_stay_raw_bytes() -> None:
    assert parse_command(b"a SELECT {3}\r\n\xc3\xa9x") == c.Select("a", b"\xc3\xa9x")
    assert parse_command(b"a SELECT Entw&APw-rfe") == c.Select("a", b"Entw&APw-rfe")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a1 NOOP", ("a1", "NOOP")),
        (b"a1 uid fetch", ("a1", "UID")),
        (b"a1", ("a1", None)),
        (b"a1 ", ("a1", None)),
        (b"a1(", (None, None)),
        (b"+ x", (None, None)),
        (b"", (None, None)),
    ],
)
def test_read_tag_and_name(line: bytes, expected: tuple[str | None, str | None]) -> None:
    assert read_tag_and_name(line) == expected
