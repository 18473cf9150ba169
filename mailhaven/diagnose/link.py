"""A blocking client connection that can switch to TLS in the middle (STARTTLS).

TLS runs over memory BIOs rather than ``ssl.wrap_socket`` so the check sees the raw
bytes the server sent during a failed handshake: ``* OK`` there means the port speaks
cleartext IMAP, which is the most common TLS-versus-STARTTLS mix-up.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass, field

SNIFF_BYTES = 80  # how much of the server's first bytes to keep for protocol detection
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}$")
_RESPONSE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])? ?(.*)$", re.IGNORECASE)


class ConnectionLost(Exception):
    """The server closed the connection."""


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """``tag status [code] text`` (RFC 9051 section 7.1); code is the atom in brackets."""

    tag: str
    status: str
    code: str
    code_arguments: str
    text: str

    @property
    def line(self) -> str:
        bracket = f" [{self.code}{' ' if self.code_arguments else ''}{self.code_arguments}]"
        return f"{self.tag} {self.status}{bracket if self.code else ''} {self.text}".rstrip()


def parse_status(line: bytes) -> StatusResponse | None:
    """Parse a status response line; None if the line is something else."""
    match = _RESPONSE.match(line)
    if match is None:
        return None
    tag, status, code, text = match.groups()
    code_atom, _, arguments = (code or b"").partition(b" ")
    return StatusResponse(
        tag=tag.decode("ascii", "replace"),
        status=status.decode("ascii").upper(),
        code=code_atom.decode("ascii", "replace").upper(),
        code_arguments=arguments.decode("utf-8", "replace"),
        text=text.decode("utf-8", "replace"),
    )


@dataclass
class CommandResult:
    untagged: list[bytes] = field(default_factory=list)
    tagged: StatusResponse | None = None
    elapsed_ms: float = 0.0


class Link:
    """One connection to the server, plain or TLS, read line by line."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self.first_bytes = b""  # the first raw bytes received since connect or start_tls
        self._buffer = b""
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tag_counter = 0

    @property
    def tls(self) -> ssl.SSLObject | None:
        return self._tls

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------- TLS

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> ssl.SSLObject:
        """Run the TLS handshake; ssl errors propagate after the alert is sent."""
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self.first_bytes = b""
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    self._incoming.write(self._receive_raw())
        finally:
            self._flush()  # the Finished message, or the alert explaining a failure
        self._tls = tls
        return tls

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def _receive_raw(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionLost("the server closed the connection")
        if len(self.first_bytes) < SNIFF_BYTES:
            self.first_bytes += data[: SNIFF_BYTES - len(self.first_bytes)]
        return data

    # ------------------------------------------------------------- bytes

    def send(self, data: bytes) -> None:
        if self._tls is None:
            self.sock.sendall(data)
            return
        self._tls.write(data)
        self._flush()

    def _receive(self) -> bytes:
        if self._tls is None:
            return self._receive_raw()
        while True:
            try:
                data = self._tls.read(65536)
            except ssl.SSLWantReadError:
                self._incoming.write(self._receive_raw())
                continue
            except ssl.SSLZeroReturnError:
                raise ConnectionLost("the server closed the TLS session") from None
            if not data:
                raise ConnectionLost("the server closed the connection")
            return data

    def read_line(self) -> bytes:
        """One line without CRLF; a literal at the end of a line is read into it."""
        line = self._read_raw_line()
        while (literal := _LITERAL_AT_END.search(line)) is not None:
            line += b"\r\n" + self._read_exactly(int(literal.group(1))) + self._read_raw_line()
        return line

    def _read_raw_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._buffer += self._receive()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._receive()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    # ------------------------------------------------------------- IMAP

    def next_tag(self) -> str:
        self._tag_counter += 1
        return f"C{self._tag_counter}"

    def command(self, text: bytes, tag: str | None = None) -> CommandResult:
        """Send one command line and collect the responses up to its tagged status."""
        tag = tag or self.next_tag()
        started = time.perf_counter()
        self.send(tag.encode("ascii") + b" " + text + b"\r\n")
        return self.collect(tag, started)

    def collect(self, tag: str, started: float) -> CommandResult:
        result = CommandResult()
        while True:
            line = self.read_line()
            status = parse_status(line)
            if status is not None and status.tag == tag:
                result.tagged = status
                result.elapsed_ms = (time.perf_counter() - started) * 1000
                return result
            result.untagged.append(line)
            if status is not None and status.tag == "*" and status.status == "BYE":
                raise ConnectionLost(f"the server said BYE: {status.text}")
