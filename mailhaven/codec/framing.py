"""Framing: cut the client's byte stream into complete commands (sans-IO).

A command is a line, and for each line that ends in a literal marker -- ``{N}``
(synchronising), ``{N+}`` (non-synchronising, LITERAL+/LITERAL-, RFC 7888) or
``~{N}`` / ``~{N+}`` (literal8, RFC 3516, RFC 9051 section 4.3) -- the N literal
bytes followed by the continuation of the line, until a line without a marker.
Framing happens before parsing, so the parser always sees whole commands.

Output (:class:`CompleteCommand`) is the command's bytes exactly as sent, line
ends before literals included, with only the final line end (CRLF or bare LF)
stripped.  Both CRLF and bare LF end a line.

Limits and how they are answered:

- a line (excluding literals) longer than ``max_line_length``: refused as soon as
  the buffered part exceeds it; the rest of the line is discarded as it arrives.
  ``BAD [LIMIT]`` (RFC 5530 section 3).
- a literal larger than ``max_literal_size``, or a command whose total size would
  exceed ``max_command_size``: for APPEND, ``NO [TOOBIG]`` when the literal is
  synchronising (RFC 7889 section 4, RFC 4469 section 4) and ``BAD [TOOBIG]`` when
  it is not (RFC 7888 section 5); for any other command ``BAD [LIMIT]``.  A
  synchronising literal is refused without a continuation request, so the client
  does not send it; the N bytes of a non-synchronising one are skipped as they
  arrive, never buffered (RFC 7888 section 4, choice 1).

After a refusal the rest of the command is drained: its remaining lines are
discarded, non-synchronising literals in them are skipped, and a line ending in a
synchronising literal ends the command (the client got its tagged answer instead
of a continuation request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.parser import read_tag_and_name

DEFAULT_MAX_LINE_LENGTH = 65536
DEFAULT_MAX_LITERAL_SIZE = 64 * 1024 * 1024
_COMMAND_OVERHEAD = 1024 * 1024

# At most 20 digits: anything longer is not a number64 and is left to the parser.
_LITERAL_MARKER = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
# Enough of a discarded line's end to find a marker ("~{" + 20 digits + "+}" + CR).
_TAIL_KEPT = 32
_PREFIX_FOR_TAG = 256


@dataclass(frozen=True, slots=True)
class CompleteCommand:
    """A complete command: lines and literals as sent, final line end stripped."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class CompleteRawLine:
    """A line read after :meth:`CommandFramer.expect_raw_line`, without its line end."""

    line: bytes


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """The client waits for ``+`` before sending a synchronising literal."""


@dataclass(frozen=True, slots=True)
class FramingError:
    """The command (or raw line) was refused; see the module docstring."""

    error: ProtocolError


Frame = CompleteCommand | CompleteRawLine | ContinuationRequest | FramingError


class _State(Enum):
    LINE = auto()  # reading a line of a command (or a raw line)
    LITERAL = auto()  # copying literal bytes into the command
    SKIP_LITERAL = auto()  # dropping the bytes of a refused non-synchronising literal
    DISCARD_LINE = auto()  # dropping the rest of a refused line, remembering its end


class _Progress(Enum):
    NEED_DATA = auto()
    CONTINUE = auto()


@dataclass(frozen=True, slots=True)
class _Marker:
    size: int
    synchronising: bool


def _strip_line_end(line: bytes) -> bytes:
    line = line.removesuffix(b"\n")
    return line.removesuffix(b"\r")


def _literal_marker(content: bytes) -> _Marker | None:
    match = _LITERAL_MARKER.search(content)
    if match is None:
        return None
    return _Marker(int(match.group(2)), synchronising=match.group(3) != b"+")


class CommandFramer:
    """Incremental framer: :meth:`feed` bytes, then call :meth:`next_frame` until None."""

    def __init__(
        self,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_literal_size: int = DEFAULT_MAX_LITERAL_SIZE,
        max_command_size: int | None = None,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.max_command_size = (
            max_literal_size + _COMMAND_OVERHEAD if max_command_size is None else max_command_size
        )
        self._buffer = bytearray()  # received, not yet framed
        self._scanned = 0  # bytes of _buffer already searched for LF in state LINE
        self._command = bytearray()  # the command framed so far
        self._state = _State.LINE
        self._literal_remaining = 0
        self._tail = b""  # end of the line being discarded
        self._raw_line_requested = False
        self._discarding_raw_line = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def take_unframed(self) -> bytes:
        """Remove and return the bytes received after the last complete frame; used
        when the transport changes under the stream (COMPRESS, RFC 4978 section 3)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return data

    def expect_raw_line(self) -> None:
        """Deliver the next line that starts a command as a CompleteRawLine, without
        looking for literals (AUTHENTICATE responses, IDLE's DONE)."""
        self._raw_line_requested = True

    def next_frame(self) -> Frame | None:
        """The next frame, or None when more data is needed."""
        steps = {
            _State.LINE: self._frame_line,
            _State.LITERAL: self._copy_literal,
            _State.SKIP_LITERAL: self._skip_literal,
            _State.DISCARD_LINE: self._discard_line,
        }
        while True:
            result = steps[self._state]()
            if result is _Progress.NEED_DATA:
                return None
            if result is not _Progress.CONTINUE:
                return result

    # ------------------------------------------------------------------ states

    def _frame_line(self) -> Frame | _Progress:
        raw_line = self._raw_line_requested and not self._command
        allowed = min(self.max_line_length, self.max_command_size - len(self._command))
        window_end = allowed + 2  # the content plus CR LF
        newline = self._buffer.find(b"\n", self._scanned, window_end)
        if newline < 0:
            if len(self._buffer) < window_end:
                self._scanned = len(self._buffer)
                return _Progress.NEED_DATA
            error = self._line_too_long(raw_line, self._buffer)
            self._tail = bytes(self._buffer[max(0, window_end - _TAIL_KEPT) : window_end])
            del self._buffer[:window_end]
            self._scanned = 0
            self._discarding_raw_line = raw_line
            self._state = _State.DISCARD_LINE
            return FramingError(error)
        segment = bytes(self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        self._scanned = 0
        content = _strip_line_end(segment)
        if len(content) > allowed:
            error = self._line_too_long(raw_line, segment)
            if not raw_line:
                self._drain_after_line(content[-_TAIL_KEPT:])
            return FramingError(error)
        if raw_line:
            self._raw_line_requested = False
            return CompleteRawLine(content)
        marker = _literal_marker(content)
        if marker is None:
            self._command += content
            command = bytes(self._command)
            self._command.clear()
            return CompleteCommand(command)
        self._command += segment
        return self._start_literal(marker)

    def _start_literal(self, marker: _Marker) -> Frame | _Progress:
        too_large = (
            marker.size > self.max_literal_size
            or len(self._command) + marker.size > self.max_command_size
        )
        if too_large:
            error = self._literal_too_large(marker)
            self._command.clear()
            self._drain_after_marker(marker)
            return FramingError(error)
        self._literal_remaining = marker.size
        self._state = _State.LITERAL
        return ContinuationRequest() if marker.synchronising else _Progress.CONTINUE

    def _copy_literal(self) -> _Progress:
        taken = min(self._literal_remaining, len(self._buffer))
        self._command += self._buffer[:taken]
        del self._buffer[:taken]
        self._literal_remaining -= taken
        if self._literal_remaining:
            return _Progress.NEED_DATA
        self._state = _State.LINE
        return _Progress.CONTINUE

    def _skip_literal(self) -> _Progress:
        skipped = min(self._literal_remaining, len(self._buffer))
        del self._buffer[:skipped]
        self._literal_remaining -= skipped
        if self._literal_remaining:
            return _Progress.NEED_DATA
        self._tail = b""
        self._discarding_raw_line = False
        self._state = _State.DISCARD_LINE
        return _Progress.CONTINUE

    def _discard_line(self) -> _Progress:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            self._tail = (self._tail + self._buffer)[-_TAIL_KEPT:]
            self._buffer.clear()
            return _Progress.NEED_DATA
        line_end = _strip_line_end(self._tail + self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        self._tail = b""
        if self._discarding_raw_line:
            self._raw_line_requested = False
            self._state = _State.LINE
        else:
            self._drain_after_line(line_end)
        return _Progress.CONTINUE

    # ------------------------------------------------------------------ draining

    def _drain_after_line(self, line_end: bytes) -> None:
        """A refused command's line has ended: drain any literal it announced."""
        self._command.clear()
        marker = _literal_marker(line_end)
        if marker is None:
            self._state = _State.LINE
        else:
            self._drain_after_marker(marker)

    def _drain_after_marker(self, marker: _Marker) -> None:
        if marker.synchronising:
            self._state = _State.LINE  # no continuation request: the client stops here
        else:
            self._literal_remaining = marker.size
            self._state = _State.SKIP_LITERAL

    # ------------------------------------------------------------------ errors

    def _command_start(self, line: bytes | bytearray) -> bytes:
        """The first line of the command: framed already, or *line* being framed."""
        start = self._command or line
        return bytes(start[:_PREFIX_FOR_TAG]).split(b"\n", 1)[0].removesuffix(b"\r")

    def _line_too_long(self, raw_line: bool, line: bytes | bytearray) -> ProtocolError:
        tag = None if raw_line else read_tag_and_name(self._command_start(line))[0]
        if not raw_line and len(self._command) + self.max_line_length > self.max_command_size:
            return ProtocolError("Command too large", tag=tag, code=b"LIMIT")
        return ProtocolError("Line too long", tag=tag, code=b"LIMIT")

    def _literal_too_large(self, marker: _Marker) -> ProtocolError:
        tag, name = read_tag_and_name(self._command_start(self._command))
        if name != "APPEND":
            return ProtocolError("Literal too large", tag=tag, code=b"LIMIT")
        status = "NO" if marker.synchronising else "BAD"
        return ProtocolError("Message too large", tag=tag, code=b"TOOBIG", status=status)
