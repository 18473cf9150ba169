"""Property tests for the codec: robustness, chunking independence, round trips."""

from __future__ import annotations

import contextlib
import datetime
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.codec import commands as c
from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.mailbox_names import decode_mailbox, encode_mailbox
from mailhaven.codec.parser import ASTRING_CHARS, ATOM_CHARS, TAG_CHARS, parse_command
from mailhaven.codec.protocol import (
    CommandReceived,
    CommandRejected,
    ContinuationNeeded,
    Event,
    Limits,
    RawLine,
    ServerProtocol,
)

SMALL_LIMITS = Limits(max_line_length=64, max_literal_size=32, max_nesting=4)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# --------------------------------------------------------------------------- a small encoder
# A client-side encoder for the subset of commands generated below, kept in the test
# so that the parser is checked against an independent writer of the grammar.


def encode_astring(value: bytes) -> bytes:
    if value and all(byte in ASTRING_CHARS for byte in value):
        return value
    if value.isascii() and not any(byte in value for byte in b"\r\n\0"):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(value) + value


def encode_text(value: str) -> bytes:
    return encode_astring(value.encode("utf-8"))


def encode_sequence_set(sequence: c.SequenceSet) -> bytes:
    if sequence.saved:
        return b"$"

    def number(value: int | None) -> bytes:
        return b"*" if value is None else b"%d" % value

    return b",".join(
        number(low) if low == high else number(low) + b":" + number(high)
        for low, high in sequence.ranges
    )


def encode_section(section: c.Section) -> bytes:
    parts = [b".".join(b"%d" % number for number in section.part)] if section.part else []
    if section.text:
        text = section.text.encode("ascii")
        if section.fields:
            text += b" (" + b" ".join(encode_text(field) for field in section.fields) + b")"
        parts.append(text)
    return b"[" + b".".join(parts) + b"]"


def encode_fetch_att(attribute: c.FetchAttribute) -> bytes:
    if attribute.section is None:
        return attribute.name.encode("ascii")
    name = "BODY" if attribute.name == "BODY[]" else attribute.name
    if attribute.peek:
        name += ".PEEK"
    partial = b"<%d.%d>" % attribute.partial if attribute.partial else b""
    return name.encode("ascii") + encode_section(attribute.section) + partial


def encode_date(value: datetime.date) -> bytes:
    return b"%d-%s-%04d" % (value.day, MONTHS[value.month - 1].encode(), value.year)


def encode_search_key(key: c.SearchKey) -> bytes:
    op, args = key.op, key.args
    if args is None:
        return op.encode("ascii")
    if op == "AND":
        assert isinstance(args, tuple)
        return b"(" + b" ".join(encode_search_key(item) for item in args) + b")"
    if op == "SEQSET":
        assert isinstance(args, c.SequenceSet)
        return encode_sequence_set(args)
    return op.encode("ascii") + b" " + encode_search_argument(args)


def encode_search_argument(args: object) -> bytes:
    if isinstance(args, c.SearchKey):
        return encode_search_key(args)
    if isinstance(args, c.SequenceSet):
        return encode_sequence_set(args)
    if isinstance(args, datetime.date):
        return encode_date(args)
    if isinstance(args, int):
        return b"%d" % args
    if isinstance(args, str):
        return encode_text(args)
    assert isinstance(args, tuple)
    return b" ".join(encode_search_argument(item) for item in args)


def encode_command(command: c.Command) -> bytes:
    tag = command.tag.encode("ascii")
    match command:
        case c.Login(username=username, password=password):
            return tag + b" LOGIN " + encode_astring(username) + b" " + encode_astring(password)
        case c.Select(mailbox=mailbox, readonly=readonly, condstore=condstore):
            name = b" EXAMINE " if readonly else b" SELECT "
            return tag + name + encode_astring(mailbox) + (b" (CONDSTORE)" if condstore else b"")
        case c.Fetch():
            line = tag + (b" UID" if command.uid else b"") + b" FETCH "
            line += encode_sequence_set(command.sequence) + b" ("
            line += b" ".join(encode_fetch_att(att) for att in command.attributes) + b")"
            if command.changed_since is not None:
                line += b" (CHANGEDSINCE %d%s)" % (
                    command.changed_since,
                    b" VANISHED" if command.vanished else b"",
                )
            return line
        case c.Store():
            line = tag + (b" UID" if command.uid else b"") + b" STORE "
            line += encode_sequence_set(command.sequence)
            if command.unchanged_since is not None:
                line += b" (UNCHANGEDSINCE %d)" % command.unchanged_since
            line += b" " + command.mode.encode("ascii") + b"FLAGS"
            line += b".SILENT" if command.silent else b""
            return line + b" (" + " ".join(command.flags).encode("ascii") + b")"
        case c.Search():
            line = tag + (b" UID" if command.uid else b"") + b" SEARCH"
            if command.return_options is not None:
                line += b" RETURN (" + " ".join(command.return_options).encode("ascii") + b")"
            if command.charset is not None:
                line += b" CHARSET " + command.charset.encode("ascii")
            assert isinstance(command.key.args, tuple)
            return line + b" " + b" ".join(encode_search_key(k) for k in command.key.args)
    raise AssertionError(f"no encoder for {command!r}")


# --------------------------------------------------------------------------- strategies

tags = st.text(alphabet=TAG_CHARS.decode("ascii"), min_size=1, max_size=8)
atoms = st.text(alphabet=ATOM_CHARS.decode("ascii"), min_size=1, max_size=8)
astrings = st.binary(max_size=24).map(lambda value: value.replace(b"\0", b""))
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=16)
nz_numbers = st.integers(1, 2**32 - 1)
mod_sequences = st.integers(1, 2**63 - 1)
seq_numbers = st.none() | nz_numbers
sequence_sets = st.builds(
    c.SequenceSet, st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=4).map(tuple)
) | st.just(c.SequenceSet((), saved=True))
flags = st.builds(lambda backslash, atom: backslash + atom, st.sampled_from(["", "\\"]), atoms)
header_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12)
parts = st.lists(st.integers(1, 99), max_size=3).map(tuple)


@st.composite
def sections(draw: st.DrawFn) -> c.Section:
    part = draw(parts)
    choices = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    if part:
        choices.append("MIME")
    text = draw(st.sampled_from(choices))
    fields = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        fields = tuple(draw(st.lists(header_names, min_size=1, max_size=3)))
    return c.Section(part, text, fields)


partials = st.none() | st.tuples(st.integers(0, 2**63 - 1), st.integers(1, 2**63 - 1))
fetch_attributes = (
    st.sampled_from(
        ["ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY", "BODYSTRUCTURE", "UID"]
        + ["RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ", "EMAILID", "THREADID"]
    ).map(c.FetchAttribute)
    | st.builds(c.FetchAttribute, st.just("BODY[]"), sections(), partials, st.booleans())
    | st.builds(c.FetchAttribute, st.just("BINARY"), parts.map(c.Section), partials, st.booleans())
    | st.builds(c.FetchAttribute, st.just("BINARY.SIZE"), parts.map(c.Section))
)


@st.composite
def fetches(draw: st.DrawFn) -> c.Fetch:
    uid = draw(st.booleans())
    attributes = tuple(draw(st.lists(fetch_attributes, min_size=1, max_size=4)))
    if uid and not any(attribute.name == "UID" for attribute in attributes):
        attributes += (c.FetchAttribute("UID"),)
    changed_since = draw(st.none() | mod_sequences)
    vanished = uid and changed_since is not None and draw(st.booleans())
    return c.Fetch(draw(tags), draw(sequence_sets), attributes, uid, changed_since, vanished)


stores = st.builds(
    c.Store,
    tags,
    sequence_sets,
    st.sampled_from(["+", "-", ""]),
    st.lists(flags, max_size=4).map(tuple),
    st.booleans(),
    st.booleans(),
    st.none() | st.integers(0, 2**63 - 1),
)
dates = st.dates(min_value=datetime.date(1000, 1, 1))
simple_search_keys = st.one_of(
    st.sampled_from(["ALL", "ANSWERED", "DELETED", "NEW", "OLD", "RECENT", "UNSEEN"]).map(
        c.SearchKey
    ),
    st.builds(c.SearchKey, st.sampled_from(["BCC", "BODY", "FROM", "SUBJECT", "TEXT"]), texts),
    st.builds(c.SearchKey, st.sampled_from(["KEYWORD", "UNKEYWORD"]), atoms),
    st.builds(c.SearchKey, st.just("HEADER"), st.tuples(header_names, texts)),
    st.builds(c.SearchKey, st.sampled_from(["BEFORE", "ON", "SENTSINCE"]), dates),
    st.builds(c.SearchKey, st.sampled_from(["LARGER", "SMALLER"]), st.integers(0, 2**63 - 1)),
    st.builds(c.SearchKey, st.sampled_from(["OLDER", "YOUNGER"]), nz_numbers),
    st.builds(c.SearchKey, st.just("MODSEQ"), st.integers(0, 2**63 - 1)),
    st.builds(c.SearchKey, st.sampled_from(["UID", "SEQSET"]), sequence_sets),
)
search_keys = st.recursive(
    simple_search_keys,
    lambda children: st.one_of(
        st.builds(c.SearchKey, st.just("NOT"), children),
        st.builds(c.SearchKey, st.just("OR"), st.tuples(children, children)),
        st.builds(
            c.SearchKey, st.just("AND"), st.lists(children, min_size=1, max_size=3).map(tuple)
        ),
    ),
    max_leaves=6,
)
searches = st.builds(
    c.Search,
    tags,
    st.lists(search_keys, min_size=1, max_size=3).map(lambda keys: c.SearchKey("AND", tuple(keys))),
    st.booleans(),
    st.none() | st.sampled_from(["UTF-8", "US-ASCII"]),
    st.none() | st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"])).map(tuple),
)
logins = st.builds(c.Login, tags, astrings, astrings)
selects = st.builds(c.Select, tags, astrings, st.booleans(), st.booleans())
generated_commands = st.one_of(logins, selects, fetches(), stores, searches)


# --------------------------------------------------------------------------- helpers


def drain(protocol: ServerProtocol, raw_line_after: set[int] | None = None) -> list[Event]:
    out: list[Event] = []
    while (event := protocol.next_event()) is not None:
        out.append(event)
        if raw_line_after is not None and len(out) in raw_line_after:
            protocol.expect_raw_line()
    return out


def feed_in_chunks(data: bytes, cuts: list[int]) -> list[Event]:
    protocol = ServerProtocol()
    out: list[Event] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        protocol.receive_data(data[start:cut])
        out += drain(protocol)
        start = cut
    return out


# --------------------------------------------------------------------------- properties

IMAP_WORDS = [
    b"a1",
    b" ",
    b"\r\n",
    b"\n",
    b"{3}\r\n",
    b"{5+}\r\n",
    b"~{2}\r\n",
    b"{99999}\r\n",
    b"(",
    b")",
    b'"',
    b"\\",
    b"UID",
    b"FETCH",
    b"SEARCH",
    b"APPEND",
    b"LIST",
    b"NOT",
    b"OR",
    b"BODY[",
    b"]",
    b"1:*",
    b"$",
    b"<0.5>",
    b"HEADER.FIELDS",
    b"&",
    b"\xc3\xa9",
    b"\x00",
]
garbage = st.binary(max_size=300) | st.lists(st.sampled_from(IMAP_WORDS), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(garbage, st.lists(st.integers(0, 300), max_size=8), st.sets(st.integers(1, 10)))
def test_garbage_only_produces_events(data: bytes, cuts: list[int], raw_after: set[int]) -> None:
    protocol = ServerProtocol(SMALL_LIMITS)
    protocol.utf8 = bool(cuts) and cuts[0] % 2 == 0
    start = 0
    events: list[Event] = []
    for cut in sorted(set(cuts)) + [len(data)]:
        protocol.receive_data(data[start:cut])
        events += drain(protocol, raw_after)
        start = max(start, cut)
    for event in events:
        assert isinstance(event, CommandReceived | RawLine | ContinuationNeeded | CommandRejected)
        if isinstance(event, CommandRejected):
            assert isinstance(event.error, ProtocolError)
            assert event.error.status in ("BAD", "NO")


@settings(max_examples=150, deadline=None)
@given(garbage, st.booleans())
def test_parser_raises_only_protocol_errors(data: bytes, utf8: bool) -> None:
    with contextlib.suppress(ProtocolError):
        assert parse_command(data, utf8=utf8, max_nesting=4).tag


@settings(max_examples=150, deadline=None)
@given(
    st.lists(generated_commands, min_size=1, max_size=5),
    st.lists(st.booleans(), min_size=5, max_size=5),
    st.lists(st.integers(0, 2000), max_size=20),
)
def test_chunking_does_not_change_events(
    commands: list[c.Command], non_synchronising: list[bool], cuts: list[int]
) -> None:
    pieces = []
    for command, plus in zip(commands, non_synchronising, strict=False):
        encoded = encode_command(command)
        if plus:
            encoded = re.sub(rb"\{(\d+)\}\r\n", rb"{\1+}\r\n", encoded)
        pieces.append(encoded + b"\r\n")
    data = b"".join(pieces)
    whole = feed_in_chunks(data, [])
    assert feed_in_chunks(data, cuts) == whole
    assert [event.command for event in whole if isinstance(event, CommandReceived)] == commands
    literal_count = sum(
        len(re.findall(rb"\{\d+\}\r\n", piece)) for piece in pieces
    )  # only synchronising ones match
    assert sum(isinstance(event, ContinuationNeeded) for event in whole) == literal_count


@settings(max_examples=300, deadline=None)
@given(generated_commands, st.booleans())
def test_parse_of_encode_round_trips(command: c.Command, utf8: bool) -> None:
    assert parse_command(encode_command(command), utf8=utf8) == command


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_mailbox_names_round_trip_in_both_encodings(name: str) -> None:
    for utf8 in (False, True):
        encoded = encode_mailbox(name, utf8)
        assert decode_mailbox(encoded, utf8) == name
    assert encode_mailbox(name, False).isascii()
