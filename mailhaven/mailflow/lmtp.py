"""The LMTP listener (RFC 2033), on aiosmtpd's protocol, in the server's event loop.

Running in the server's loop (not aiosmtpd's ``Controller`` thread) means each
delivery's commit publishes to the storage's ChangeHub on the loop that serves
IMAP, so IDLE clients see the new message at once.

Replies (RFC 2033 section 4.2, status codes RFC 3463):

* RCPT for an unknown user: ``550 5.1.1``; the MTA bounces at once.
* After DATA, a recipient whose quota the message would exceed: ``552 5.2.2``.
* after DATA, one reply per accepted recipient, in RCPT order: ``250 2.0.0`` once
  the message is committed to disk for that recipient, ``451 4.3.0`` when storing
  failed (the MTA retries later), ``550 5.1.1`` if the account vanished meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, Envelope, Session

from mailhaven.config import Config
from mailhaven.mailflow.delivery import (
    Recipient,
    deliver,
    resolve_recipient,
    with_trace_headers,
)
from mailhaven.mailflow.lmtp_data import read_mail_data
from mailhaven.storage.interface import OverQuota, Storage, UserNotFound

log = logging.getLogger("mailhaven.lmtp")

UNKNOWN_USER = "550 5.1.1 {address}: no such user here"
ACCEPTED_RECIPIENT = "250 2.1.5 {address}: recipient ok"
DELIVERED = "250 2.0.0 {address}: delivered"
OVER_QUOTA = "552 5.2.2 {address}: mailbox is full"
TEMPORARY_FAILURE = "451 4.3.0 {address}: temporary failure storing the message, try again later"
IDLE_TIMEOUT_SECONDS = 300  # RFC 5321 section 4.5.3.2.7: server timeout of 5 minutes


# RFC 5321 section 4.1.2: a Path of a Dot-string local part and a domain of dotted
# labels, with parameters after one space; anything else is left to aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?: ([^ ].*))?",
    re.ASCII | re.DOTALL,
)


class MailhavenLMTP(LMTP):
    """aiosmtpd's LMTP with long lines allowed: real mail has lines far over the
    1000 octets of RFC 5321 section 4.5.3.1.6, and refusing them would bounce it."""

    line_length_limit = 1024 * 1024

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address and parameters of MAIL FROM / RCPT TO.  aiosmtpd (1.4) parses
        every path with the email package's header parser and defines a class on each
        call, about 140 µs per command; the plain ``<local@domain>`` form of nearly all
        mail is read here with a pattern instead, to the same result."""
        match = _PLAIN_PATH.fullmatch(arg)
        if match is None:
            return super()._getaddr(arg)
        address, parameters = match.group(1), match.group(2) or ""
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, parameters

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's method name)
        """aiosmtpd's DATA with the data read in a few chunks (mailflow.lmtp_data)
        rather than line by line; the checks, replies and the handler's hook are
        aiosmtpd's.  Text decoding (``decode_data``) and handlers without a DATA hook
        are left to aiosmtpd."""
        if self._decode_data or "DATA" not in self._handle_hooks:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_mail_data(
                self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit
            )
        except asyncio.CancelledError:  # the connection was lost during DATA
            self._writer.close()
            raise
        if data.error is not None:
            await self.push(data.error)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = data.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class DeliveryHandler:
    """aiosmtpd handler hooks: check recipients at RCPT, store at DATA."""

    def __init__(self, storage: Storage, domains: tuple[str, ...]) -> None:
        self._storage = storage
        self._domains = domains
        # What RCPT resolved, in the order of envelope.rcpt_tos, so DATA need not
        # look every recipient up again (the transaction still checks the account).
        self._resolved: weakref.WeakKeyDictionary[Envelope, list[Recipient]] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: LMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        recipient = await resolve_recipient(self._storage, address, self._domains)
        if recipient is None:
            log.info("lmtp rcpt refused to=%r reason=unknown-user", address)
            return UNKNOWN_USER.format(address=address)
        envelope.rcpt_tos.append(address)
        self._resolved.setdefault(envelope, []).append(recipient)
        return ACCEPTED_RECIPIENT.format(address=address)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: LMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        sender = envelope.mail_from or ""
        recipients = self._resolved.pop(envelope, [])
        replies = [await self._deliver_one(sender, recipient, content) for recipient in recipients]
        return "\r\n".join(replies)

    async def _deliver_one(self, sender: str, recipient: Recipient, content: bytes) -> str:
        address = recipient.address
        raw = with_trace_headers(content, sender, address)
        try:
            result = await deliver(self._storage, recipient, raw)
        except UserNotFound:  # deleted or disabled since RCPT
            log.info("lmtp delivery refused to=%r reason=unknown-user", address)
            return UNKNOWN_USER.format(address=address)
        except OverQuota:
            # RFC 3463 5.2.2: permanent for this message; the MTA bounces it.
            log.info("lmtp delivery refused to=%r reason=over-quota", address)
            return OVER_QUOTA.format(address=address)
        except Exception:  # any failure must make the MTA retry, never lose the mail
            log.exception("lmtp delivery failed to=%r", address)
            return TEMPORARY_FAILURE.format(address=address)
        log.info(
            "lmtp delivered from=%r to=%r user=%r folder=%r uid=%d size=%d",
            sender,
            address,
            recipient.user.name,
            recipient.folder,
            result.destination_uids[0],
            len(raw),
        )
        return DELIVERED.format(address=address)


@dataclass
class LmtpListener:
    """The listening socket and the connections it accepted."""

    server: asyncio.Server
    description: str
    _protocols: weakref.WeakSet[LMTP] = field(default_factory=weakref.WeakSet)

    @property
    def port(self) -> int | None:
        """The TCP port (useful when configured as 0); None on a unix socket."""
        name: Any = self.server.sockets[0].getsockname()
        return name[1] if isinstance(name, tuple) else None

    async def close(self) -> None:
        self.server.close()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        await self.server.wait_closed()


async def start_lmtp(
    storage: Storage, config: Config, prebound: socket.socket | None = None
) -> LmtpListener:
    """Listen on ``config.lmtp_listen`` (HOST:PORT or a unix socket path), or on the
    socket a supervisor bound there for its worker processes (*prebound*)."""
    # aiosmtpd logs every connection at INFO; the delivery lines above say more.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = DeliveryHandler(storage, config.lmtp_domains)
    loop = asyncio.get_running_loop()
    protocols: weakref.WeakSet[LMTP] = weakref.WeakSet()

    def new_protocol() -> LMTP:
        protocol = MailhavenLMTP(
            handler,
            data_size_limit=config.limits.max_literal_size,
            enable_SMTPUTF8=True,
            ident="Mailhaven LMTP",
            timeout=IDLE_TIMEOUT_SECONDS,
            loop=loop,
        )
        protocols.add(protocol)
        return protocol

    address = config.lmtp_listen
    assert address is not None, "the caller starts LMTP only when it is configured"
    if prebound is not None and prebound.family == socket.AF_UNIX:
        server = await loop.create_unix_server(new_protocol, sock=prebound)
    elif prebound is not None:
        server = await loop.create_server(new_protocol, sock=prebound)
    elif isinstance(address, Path):
        server = await loop.create_unix_server(new_protocol, str(address))
    else:
        server = await loop.create_server(new_protocol, address[0], address[1])
    if isinstance(address, Path):
        description = f"unix:{address}"
    else:
        host, port = server.sockets[0].getsockname()[:2]
        description = f"{host}:{port}"
    # A supervisor already announced the socket it bound, once for all its workers.
    log.log(logging.DEBUG if prebound else logging.INFO, "listening lmtp on %s", description)
    return LmtpListener(server, description, protocols)
