"""One IMAP session: its state (RFC 9051 section 3), what it has enabled, and the
glue between typed commands, their handlers and the selected-mailbox view.

The session does no socket I/O itself: it talks to its connection through the
small :class:`Channel` protocol, so handlers can be driven by the asyncio server
or by tests alike.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mailhaven.codec import responses
from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.mailbox_names import canonical_mailbox, decode_mailbox, encode_mailbox
from mailhaven.codec.responses import Response
from mailhaven.config import Config
from mailhaven.imap.idle_fanout import IdleFanOut
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.security.connections import ConnectionRegistry
from mailhaven.security.lockout import Lockout
from mailhaven.security.oauth import Validator, load_validator
from mailhaven.storage.interface import Mailbox, Storage, User

HOLD_BYTES = 65536  # FETCH output held back for the next write (see Session.send_encoded)


class State(enum.Enum):
    """RFC 9051 section 3: the four connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Channel(Protocol):
    """What a session needs from its connection."""

    @property
    def secure(self) -> bool: ...

    @property
    def peer_is_loopback(self) -> bool: ...

    @property
    def tls_available(self) -> bool: ...

    @property
    def peer_address(self) -> str: ...

    @property
    def peer_host(self) -> str:
        """The client's IP address alone (brute-force accounting, auth log)."""

    async def write(self, data: bytes) -> None: ...

    @property
    def writable_now(self) -> bool:
        """True when everything written so far has been taken by the socket."""

    def write_nowait(self, data: bytes) -> None:
        """Write a small response without waiting (only when :attr:`writable_now`)."""

    async def read_raw_line(self, timeout: float | None = None) -> bytes | None:
        """The next line without CRLF (AUTHENTICATE responses, IDLE's DONE);
        None on end of stream or timeout."""

    async def start_tls(self) -> None: ...

    def set_utf8(self, enabled: bool) -> None: ...

    @property
    def compressing(self) -> bool: ...

    def start_compression(self) -> None:
        """Compress everything after the response just written (RFC 4978)."""


class CommandFailed(Exception):
    """Raised by a handler to end its command with NO or BAD."""

    def __init__(self, status: str, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: bytes | None = None) -> CommandFailed:
    return CommandFailed("NO", text, code)


def bad(text: str, code: bytes | None = None) -> CommandFailed:
    return CommandFailed("BAD", text, code)


@dataclass
class ServerContext:
    """What every session of one server process shares."""

    storage: Storage
    config: Config
    lockout: Lockout = field(init=False)
    connections: ConnectionRegistry = field(init=False)
    oauth_validator: Validator | None = field(init=False)
    idle_fan_out: IdleFanOut = field(init=False)

    def __post_init__(self) -> None:
        self.idle_fan_out = IdleFanOut(self.storage)
        self.lockout = Lockout(self.storage, self.config.lockout)
        self.connections = ConnectionRegistry(self.config.limits)
        self.oauth_validator = load_validator(self.config.auth.oauth_validator)


class Session:
    """State and helpers shared by the command handlers of one connection."""

    def __init__(self, context: ServerContext, channel: Channel, log: logging.LoggerAdapter):
        self.context = context
        self.storage = context.storage
        self.config = context.config
        self.channel = channel
        self.log = log
        self.state = State.NOT_AUTHENTICATED
        self.user: User | None = None
        self.selected: SelectedMailbox | None = None
        self.enabled: set[str] = set()
        self.saved_search: list[int] | None = None  # SEARCHRES "$" (RFC 5182), as UIDs
        self.bad_in_a_row = 0
        self._held = b""  # see send_encoded

    # ------------------------------------------------------------- protocol mode

    @property
    def rev2(self) -> bool:
        """True once the client did ENABLE IMAP4rev2 (RFC 9051 section 6.3.1)."""
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8 (IMAP4rev2 or UTF8=ACCEPT)."""
        return self.rev2 or "UTF8=ACCEPT" in self.enabled

    def decode_mailbox_name(self, raw: bytes) -> str:
        """The canonical Unicode name of a mailbox argument (RFC 3501 5.1.3)."""
        try:
            name = decode_mailbox(raw, self.utf8)
        except ProtocolError as error:
            raise bad(f"Invalid mailbox name: {error.text}") from None
        return canonical_mailbox(name)

    def decode_mailbox_pattern(self, raw: bytes) -> str:
        """A LIST/LSUB pattern: decoded like a name, but INBOX is matched later."""
        try:
            return decode_mailbox(raw, self.utf8)
        except ProtocolError as error:
            raise bad(f"Invalid mailbox pattern: {error.text}") from None

    def encode_mailbox_name(self, name: str) -> bytes:
        return encode_mailbox(name, self.utf8)

    # ------------------------------------------------------------- output

    async def send(self, response: Response) -> None:
        await self.channel.write(self._take_held() + response.encode())

    async def send_all(self, items: Iterable[Response]) -> None:
        data = b"".join(item.encode() for item in items)
        if data:
            await self.channel.write(self._take_held() + data)

    async def send_encoded(self, data: bytes) -> None:
        """Write responses encoded in bulk (see ``responses.encoded_fetches``).  Less
        than ``HOLD_BYTES`` wait for the next write, at the latest the tagged response
        that ends every command: a typical FETCH then reaches the client in one write
        instead of two, each of which wakes the client."""
        self._held += data
        if len(self._held) >= HOLD_BYTES:
            await self.channel.write(self._take_held())

    def can_send_now(self) -> bool:
        """True when :meth:`send_now` may be used: no output is waiting, here or in
        the connection."""
        return not self._held and self.channel.writable_now

    def send_now(self, items: Iterable[Response]) -> None:
        """Send small responses without waiting; only when :meth:`can_send_now`."""
        data = b"".join(item.encode() for item in items)
        if data:
            self.channel.write_nowait(data)

    def _take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    async def send_updates(self, *, allow_expunge: bool) -> None:
        """Refresh the selected mailbox and send what other sessions changed."""
        if self.selected is None:
            return
        await self.selected.refresh(self.storage)
        await self.send_all(self.selected.drain_updates(allow_expunge=allow_expunge))

    # ------------------------------------------------------------- helpers

    def require_user(self) -> User:
        if self.user is None:  # the state table makes this unreachable
            raise bad("Not authenticated")
        return self.user

    def require_selected(self) -> SelectedMailbox:
        if self.selected is None:
            raise bad("No mailbox selected")
        return self.selected

    async def find_mailbox(self, name: str, *, for_write: bool = False) -> Mailbox:
        """Look up a selectable mailbox of this user or fail with the RFC 5530
        NONEXISTENT code (TRYCREATE when *for_write*, RFC 9051 7.1)."""
        mailbox = await self.storage.get_mailbox(self.require_user().id, name)
        if mailbox is None or not mailbox.selectable:
            code = b"TRYCREATE" if for_write else b"NONEXISTENT"
            raise no(f"Mailbox {name!r} does not exist", code)
        return mailbox

    def leave_selected(self) -> None:
        self.selected = None
        self.saved_search = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def enter_selected(self, view: SelectedMailbox) -> None:
        self.leave_selected()
        self.selected = view
        self.state = State.SELECTED
        view.condstore = "CONDSTORE" in self.enabled
        view.qresync = "QRESYNC" in self.enabled

    def close(self) -> None:
        self.leave_selected()
        self.state = State.LOGOUT


def untagged_ok(text: str, code: bytes | None = None) -> responses.Untagged:
    return responses.Untagged("OK", text, code)
