"""Framing of commands and literals (RFC 9051 section 4.3, RFC 7888, RFC 3516)."""

from __future__ import annotations

import pytest

from mailhaven.codec import commands as c
from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.framing import (
    CommandFramer,
    CompleteCommand,
    CompleteRawLine,
    ContinuationRequest,
    Frame,
    FramingError,
)
from mailhaven.codec.protocol import (
    CommandReceived,
    CommandRejected,
    ContinuationNeeded,
    Event,
    Limits,
    RawLine,
    ServerProtocol,
)


def frames(framer: CommandFramer, data: bytes = b"") -> list[Frame]:
    framer.feed(data)
    out = []
    while (frame := framer.next_frame()) is not None:
        out.append(frame)
    return out


def events(protocol: ServerProtocol, data: bytes) -> list[Event]:
    protocol.receive_data(data)
    out = []
    while (event := protocol.next_event()) is not None:
        out.append(event)
    return out


def byte_at_a_time(framer: CommandFramer, data: bytes) -> list[Frame]:
    out: list[Frame] = []
    for byte in data:
        out += frames(framer, bytes([byte]))
    return out


def rejection(frame: Frame) -> ProtocolError:
    assert isinstance(frame, FramingError)
    return frame.error


# --------------------------------------------------------------------------- lines


def test_line_with_crlf_is_a_command_without_its_line_end() -> None:
    assert frames(CommandFramer(), b"a1 NOOP\r\n") == [CompleteCommand(b"a1 NOOP")]


def test_bare_lf_ends_a_line_too() -> None:
    assert frames(CommandFramer(), b"a1 NOOP\n") == [CompleteCommand(b"a1 NOOP")]


def test_incomplete_line_waits_for_more_data() -> None:
    framer = CommandFramer()
    assert frames(framer, b"a1 NO") == []
    assert frames(framer, b"OP\r") == []
    assert frames(framer, b"\n") == [CompleteCommand(b"a1 NOOP")]


def test_pipelined_commands_come_out_in_order() -> None:
    data = b"a1 NOOP\r\na2 CAPABILITY\r\na3 LOGIN {1+}\r\nx y\r\na4 LOGOUT\r\n"
    assert frames(CommandFramer(), data) == [
        CompleteCommand(b"a1 NOOP"),
        CompleteCommand(b"a2 CAPABILITY"),
        CompleteCommand(b"a3 LOGIN {1+}\r\nx y"),
        CompleteCommand(b"a4 LOGOUT"),
    ]


# --------------------------------------------------------------------------- literals


def test_synchronising_literal_asks_for_continuation_then_completes() -> None:
    framer = CommandFramer()
    assert frames(framer, b"a LOGIN {5}\r\n") == [ContinuationRequest()]
    assert frames(framer, b"fred ") == []
    assert frames(framer, b"{6}\r\n") == [ContinuationRequest()]
    assert frames(framer, b"secret\r\n") == [CompleteCommand(b"a LOGIN {5}\r\nfred {6}\r\nsecret")]


def test_non_synchronising_literal_needs_no_continuation() -> None:
    data = b"a LOGIN {4+}\r\nfred {6+}\r\nsecret\r\n"
    assert frames(CommandFramer(), data) == [
        CompleteCommand(b"a LOGIN {4+}\r\nfred {6+}\r\nsecret")
    ]


def test_binary_literal_is_framed_like_a_literal() -> None:
    data = b"a APPEND box ~{3}\r\n\x00\r\n\r\n"
    assert frames(CommandFramer(), data) == [
        ContinuationRequest(),
        CompleteCommand(b"a APPEND box ~{3}\r\n\x00\r\n"),
    ]


def test_literal_bytes_are_not_scanned_for_line_ends_or_markers() -> None:
    data = b"a APPEND box {9+}\r\nx {2}\r\nyz\r\n"
    assert frames(CommandFramer(), data) == [CompleteCommand(data.removesuffix(b"\r\n"))]


def test_empty_literal_still_needs_a_continuation() -> None:
    assert frames(CommandFramer(), b'a LOGIN {0}\r\n ""\r\n') == [
        ContinuationRequest(),
        CompleteCommand(b'a LOGIN {0}\r\n ""'),
    ]


def test_literal_marker_with_bare_lf() -> None:
    assert frames(CommandFramer(), b"a LOGIN {1+}\nu p\n") == [
        CompleteCommand(b"a LOGIN {1+}\nu p")
    ]


def test_byte_at_a_time_gives_the_same_frames() -> None:
    data = (
        b"a1 LOGIN {5}\r\nsmith {6+}\r\nsesame\r\n"
        b"a2 APPEND box (\\Seen) ~{4}\r\n\x00\x01\r\n\r\n"
        b"a3 NOOP\n"
    )
    assert byte_at_a_time(CommandFramer(), data) == frames(CommandFramer(), data)
    assert len(frames(CommandFramer(), data)) == 5


# --------------------------------------------------------------------------- line limit


def test_line_too_long_is_refused_before_its_end_arrives() -> None:
    framer = CommandFramer(max_line_length=20)
    [frame] = frames(framer, b"t1 SEARCH " + b"X" * 30)
    assert rejection(frame) == ProtocolError("Line too long", tag="t1", code=b"LIMIT")
    # The rest of that line is discarded as it arrives, then framing resumes.
    assert frames(framer, b"Y" * 1000) == []
    assert frames(framer, b"YYY\r\nt2 NOOP\r\n") == [CompleteCommand(b"t2 NOOP")]


def test_line_exactly_at_the_limit_is_accepted() -> None:
    line = b"t1 NOOP" + b" " * 13
    assert frames(CommandFramer(max_line_length=20), line + b"\r\n") == [CompleteCommand(line)]
    assert frames(CommandFramer(max_line_length=20), line + b"\n") == [CompleteCommand(line)]


def test_line_one_over_the_limit_is_refused_whatever_the_chunking() -> None:
    data = b"t1 NOOP" + b" " * 14 + b"\r\nt2 NOOP\r\n"
    expected = [
        FramingError(ProtocolError("Line too long", tag="t1", code=b"LIMIT")),
        CompleteCommand(b"t2 NOOP"),
    ]
    assert frames(CommandFramer(max_line_length=20), data) == expected
    assert byte_at_a_time(CommandFramer(max_line_length=20), data) == expected


def test_line_too_long_without_a_readable_tag_has_no_tag() -> None:
    [frame] = frames(CommandFramer(max_line_length=10), b"(((((((((((((((")
    assert rejection(frame).tag is None


def test_overlong_line_announcing_a_non_synchronising_literal_skips_it() -> None:
    framer = CommandFramer(max_line_length=20)
    data = b"t1 LOGIN " + b"u" * 30 + b" {12+}\r\nt9 NOOP\r\nxx\r\nt2 NOOP\r\n"
    result = frames(framer, data)
    assert rejection(result[0]).tag == "t1"
    # "t9 NOOP\r\nxx" was literal data of the refused command, not a command.
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


def test_continuation_line_after_a_literal_is_limited_too() -> None:
    framer = CommandFramer(max_line_length=20)
    result = frames(framer, b"t1 LOGIN {1+}\r\nx " + b"p" * 40 + b"\r\nt2 NOOP\r\n")
    assert rejection(result[0]) == ProtocolError("Line too long", tag="t1", code=b"LIMIT")
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


# --------------------------------------------------------------------------- literal limit


def test_synchronising_literal_too_large_is_refused_without_continuation() -> None:
    framer = CommandFramer(max_literal_size=100)
    [frame] = frames(framer, b"t1 LOGIN {101}\r\n")
    assert rejection(frame) == ProtocolError("Literal too large", tag="t1", code=b"LIMIT")
    # The client does not send the literal; its next line is a new command.
    assert frames(framer, b"t2 NOOP\r\n") == [CompleteCommand(b"t2 NOOP")]


def test_synchronising_append_literal_too_large_is_no_toobig() -> None:
    [frame] = frames(CommandFramer(max_literal_size=100), b"t1 append INBOX {101}\r\n")
    assert rejection(frame) == ProtocolError(
        "Message too large", tag="t1", code=b"TOOBIG", status="NO"
    )


def test_non_synchronising_append_literal_too_large_is_bad_toobig_and_skipped() -> None:
    framer = CommandFramer(max_literal_size=100)
    [frame] = frames(framer, b"t1 APPEND INBOX {5000+}\r\n")
    assert rejection(frame) == ProtocolError(
        "Message too large", tag="t1", code=b"TOOBIG", status="BAD"
    )
    # The 5000 bytes look like commands but are skipped as they arrive.
    for _ in range(50):
        assert frames(framer, b"t9 NOOP\r\n" + b"x" * 91) == []
    assert frames(framer, b" (more args) {3+}\r\nabc\r\nt2 NOOP\r\n") == [
        CompleteCommand(b"t2 NOOP")
    ]


def test_drained_command_ends_at_a_synchronising_literal() -> None:
    framer = CommandFramer(max_literal_size=10)
    result = frames(framer, b"t1 APPEND a {20+}\r\n" + b"m" * 20 + b" {4}\r\nt2 NOOP\r\n")
    assert rejection(result[0]).tag == "t1"
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


def test_total_command_size_is_limited() -> None:
    framer = CommandFramer(max_literal_size=100, max_command_size=150)
    data = b"t1 APPEND a {90+}\r\n" + b"m" * 90 + b" {90+}\r\n" + b"n" * 90 + b"\r\nt2 NOOP\r\n"
    result = frames(framer, data)
    assert rejection(result[0]) == ProtocolError(
        "Message too large", tag="t1", code=b"TOOBIG", status="BAD"
    )
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


def test_command_too_large_by_its_lines() -> None:
    framer = CommandFramer(max_line_length=100, max_literal_size=50, max_command_size=120)
    data = b"t1 LOGIN {50+}\r\n" + b"u" * 50 + b" " + b"p" * 90 + b"\r\nt2 NOOP\r\n"
    result = frames(framer, data)
    assert rejection(result[0]) == ProtocolError("Command too large", tag="t1", code=b"LIMIT")
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


# --------------------------------------------------------------------------- raw lines


def test_raw_line_ignores_literal_markers() -> None:
    framer = CommandFramer()
    framer.expect_raw_line()
    assert frames(framer, b"dGVzdA== {5}\r\nt2 NOOP {1+}\r\nx\r\n") == [
        CompleteRawLine(b"dGVzdA== {5}"),
        CompleteCommand(b"t2 NOOP {1+}\r\nx"),
    ]


def test_raw_line_too_long_has_no_tag_and_is_discarded() -> None:
    framer = CommandFramer(max_line_length=10)
    framer.expect_raw_line()
    result = frames(framer, b"t1 " + b"A" * 40 + b" {3+}\r\nt2 NOOP\r\n")
    assert rejection(result[0]) == ProtocolError("Line too long", code=b"LIMIT")
    assert result[1:] == [CompleteCommand(b"t2 NOOP")]


# --------------------------------------------------------------------------- protocol


def test_protocol_parses_framed_commands_and_reports_continuations() -> None:
    protocol = ServerProtocol()
    assert events(protocol, b"a1 LOGIN {5}\r\n") == [ContinuationNeeded()]
    assert events(protocol, b"smith sesame\r\na2 SELECT inbox\r\n") == [
        CommandReceived(c.Login("a1", b"smith", b"sesame")),
        CommandReceived(c.Select("a2", b"inbox")),
    ]


def test_protocol_rejects_with_the_tag_when_it_was_read() -> None:
    [event] = events(ServerProtocol(), b"a1 FROB\r\n")
    assert event == CommandRejected(ProtocolError("Unknown command FROB", tag="a1"))


def test_protocol_delivers_raw_line_for_idle_done() -> None:
    protocol = ServerProtocol()
    # DONE arrives in the same packet as IDLE: framing is lazy, so the server can
    # still ask for a raw line after seeing the IDLE command.
    protocol.receive_data(b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n")
    assert protocol.next_event() == CommandReceived(c.Idle("a1"))
    protocol.expect_raw_line()
    assert events(protocol, b"") == [RawLine(b"DONE"), CommandReceived(c.Noop("a2"))]


def test_protocol_applies_its_limits() -> None:
    protocol = ServerProtocol(Limits(max_line_length=30, max_literal_size=10, max_nesting=2))
    result = events(
        protocol,
        b"t1 LOGIN {11}\r\n"
        b"t2 SEARCH NOT NOT NOT ALL\r\n"
        b"t3 SEARCH NOT NOT ALL\r\n"
        b"t4 NOOP                                \r\n",
    )
    assert result == [
        CommandRejected(ProtocolError("Literal too large", tag="t1", code=b"LIMIT")),
        CommandRejected(ProtocolError("Too deeply nested", tag="t2", code=b"LIMIT")),
        CommandReceived(
            c.Search(
                "t3",
                c.SearchKey("AND", (c.SearchKey("NOT", c.SearchKey("NOT", c.SearchKey("ALL"))),)),
            )
        ),
        CommandRejected(ProtocolError("Line too long", tag="t4", code=b"LIMIT")),
    ]


def test_protocol_utf8_mode_admits_utf8_quoted_strings() -> None:
    protocol = ServerProtocol()
    line = 'a1 SELECT "Données"\r\n'.encode()
    [rejected] = events(protocol, line)
    assert isinstance(rejected, CommandRejected) and rejected.error.tag == "a1"
    protocol.utf8 = True
    assert events(protocol, line) == [CommandReceived(c.Select("a1", "Données".encode()))]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_protocol_events_do_not_depend_on_chunking(size: int) -> None:
    data = (
        b"a1 LOGIN {5}\r\nsmith sesame\r\n"
        b"a2 APPEND box {200+}\r\n" + b"x" * 200 + b"\r\n"
        b"a3 FETCH 1:* (FLAGS BODY.PEEK[HEADER])\r\n"
        b"a4 UID STORE 1 +FLAGS (\\Seen)\n"
        b"garbage\r\n"
    )
    limits = Limits(max_literal_size=100)
    whole = events(ServerProtocol(limits), data)
    protocol = ServerProtocol(limits)
    chunked: list[Event] = []
    for start in range(0, len(data), size):
        chunked += events(protocol, data[start : start + size])
    assert chunked == whole
    assert [type(event) for event in whole] == [
        ContinuationNeeded,
        CommandReceived,
        CommandRejected,
        CommandReceived,
        CommandReceived,
        CommandRejected,
    ]
