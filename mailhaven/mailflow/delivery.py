"""Local delivery: which account and folder a recipient address means, and the
trace headers a delivered message gets.

Recipient rules (the order matters: the most specific name wins):

1. an account named by the full address (``alice@example.com``);
2. the same without an address extension (``alice+lists@example.com`` delivers
   to account ``alice@example.com``, folder ``lists``);
3. for an address in a served domain (``[lmtp] domains``) or without a domain,
   the account named by the local part, with or without its extension.

An extension names the folder to file into when such a folder exists; otherwise
the message goes to INBOX, so a typo never bounces mail.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mailhaven.codec.mailbox_names import canonical_mailbox
from mailhaven.mailflow.messages import prepare
from mailhaven.storage.interface import CopyResult, NewMessage, Storage, User

INBOX = "INBOX"
EXTENSION_SEPARATOR = "+"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    user: User
    folder: str  # an existing mailbox name, INBOX when the extension names none


def _split_address(address: str) -> tuple[str, str | None]:
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return domain, None  # a bare "alice": rpartition put it in the last slot
    return local, domain.lower()


def _candidates(address: str, domains: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """(account name, extension) pairs to try, most specific first."""
    local, domain = _split_address(address)
    base, plus, extension = local.partition(EXTENSION_SEPARATOR)
    detail = extension if plus and base else None
    candidates: list[tuple[str, str | None]] = []
    if domain is not None:
        candidates.append((f"{local}@{domain}", None))
        if detail is not None:
            candidates.append((f"{base}@{domain}", detail))
    if domain is None or domain in domains:
        candidates.append((local, None))
        if detail is not None:
            candidates.append((base, detail))
    return candidates


async def resolve_recipient(
    storage: Storage, address: str, domains: tuple[str, ...]
) -> Recipient | None:
    """The account and folder *address* delivers to; None for an unknown user."""
    for name, detail in _candidates(address, domains):
        user = await storage.get_user(name)
        if user is None or user.disabled:
            continue
        return Recipient(address, user, await _folder_for(storage, user, detail))
    return None


async def _folder_for(storage: Storage, user: User, detail: str | None) -> str:
    if not detail:
        return INBOX
    name = canonical_mailbox(detail)
    mailbox = await storage.get_mailbox(user.id, name)
    return name if mailbox is not None and mailbox.selectable else INBOX


def with_trace_headers(raw: bytes, return_path: str, delivered_to: str) -> bytes:
    """Prepend Return-Path (RFC 5321 section 4.4: added at final delivery) and
    Delivered-To (the Postfix/Dovecot convention naming the final recipient)."""
    reverse_path = return_path.strip().strip("<>")
    header = f"Return-Path: <{reverse_path}>\r\nDelivered-To: {delivered_to}\r\n"
    return header.encode("utf-8") + raw


async def deliver(storage: Storage, recipient: Recipient, raw: bytes) -> CopyResult:
    """Store *raw* in the recipient's folder, or INBOX when the folder went away since
    the recipient was resolved; durable when this returns.  UserNotFound when the
    account was deleted or disabled meanwhile.  The MIME analysis and the transaction
    are one hand-off to the storage (the folder is looked up in the transaction)."""
    return await storage.append_to(
        recipient.user.id,
        recipient.folder,
        functools.partial(_prepare_one, raw),
        fallback=INBOX,
        account_must_be_enabled=True,
    )


def _prepare_one(raw: bytes) -> list[NewMessage]:
    return [prepare(raw)]
