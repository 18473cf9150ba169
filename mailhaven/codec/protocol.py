"""The sans-IO IMAP server protocol engine (in the style of h11).

The server feeds received bytes to :meth:`ServerProtocol.receive_data` and pulls
events with :meth:`ServerProtocol.next_event` until it returns None.  Nothing here
touches sockets or an event loop; the engine only frames
(:mod:`mailhaven.codec.framing`) and parses (:mod:`mailhaven.codec.parser`).

How rejections should be answered (``CommandRejected.error``):

- ``error.tag`` set: ``tag <status> [code] text``; None: ``* BAD text``.
- line too long / nesting too deep / literal too large outside APPEND:
  ``BAD [LIMIT]`` (RFC 5530 section 3).
- literal too large in APPEND: ``NO [TOOBIG]`` for a synchronising literal
  (RFC 7889 section 4), ``BAD [TOOBIG]`` for a non-synchronising one (RFC 7888
  section 5).
- unsupported SEARCH charset: ``NO [BADCHARSET (UTF-8 US-ASCII)]`` (RFC 9051 6.4.4).
- anything else that does not follow the grammar: ``BAD``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhaven.codec.commands import Command
from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.framing import (
    CommandFramer,
    CompleteCommand,
    CompleteRawLine,
    ContinuationRequest,
    FramingError,
)
from mailhaven.codec.parser import parse_command


@dataclass(frozen=True)
class Limits:
    max_line_length: int = 65536
    max_literal_size: int = 64 * 1024 * 1024
    max_nesting: int = 32  # depth of parenthesised lists / search keys


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A complete, parsed command."""

    command: Command


@dataclass(frozen=True, slots=True)
class RawLine:
    """A line (without its line end) read after :meth:`ServerProtocol.expect_raw_line`."""

    line: bytes


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """The client waits for ``+ Ready for literal`` before sending a synchronising
    literal (RFC 9051 section 4.3); emitted once per accepted synchronising literal."""


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """A command that could not be framed or parsed; see the module docstring."""

    error: ProtocolError


Event = CommandReceived | RawLine | ContinuationNeeded | CommandRejected


class ServerProtocol:
    """Turns the client's byte stream into :data:`Event` values, in order."""

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008 - frozen, shared safely
        self.limits = limits
        # Set by the server after ENABLE UTF8=ACCEPT / IMAP4rev2: admits UTF-8 in
        # quoted strings (RFC 6855 section 3, RFC 9051 section 9 QUOTED-CHAR).
        self.utf8 = False
        self._framer = CommandFramer(
            max_line_length=limits.max_line_length,
            max_literal_size=limits.max_literal_size,
        )

    def receive_data(self, data: bytes) -> None:
        self._framer.feed(data)

    def take_unframed(self) -> bytes:
        """Bytes received but not yet framed, removed from the engine: after
        COMPRESS they are compressed data the server must inflate first."""
        return self._framer.take_unframed()

    def expect_raw_line(self) -> None:
        """Deliver the next line as a RawLine, without literal processing: the
        server calls this before reading AUTHENTICATE responses or IDLE's DONE."""
        self._framer.expect_raw_line()

    def next_event(self) -> Event | None:
        """The next event, or None when more data is needed.

        Framing is lazy (done here, not in receive_data), so a call to
        expect_raw_line after an event applies to data already received.
        """
        frame = self._framer.next_frame()
        match frame:
            case None:
                return None
            case CompleteCommand(raw):
                return self._parse(raw)
            case CompleteRawLine(line):
                return RawLine(line)
            case ContinuationRequest():
                return ContinuationNeeded()
            case FramingError(error):
                return CommandRejected(error)

    def _parse(self, raw: bytes) -> CommandReceived | CommandRejected:
        try:
            command = parse_command(raw, utf8=self.utf8, max_nesting=self.limits.max_nesting)
        except ProtocolError as error:
            return CommandRejected(error)
        return CommandReceived(command)
