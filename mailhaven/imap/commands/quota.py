"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208 sections 4.1.1 to 4.1.3) with the
STORAGE and MESSAGE resources (sections 5.1 and 5.2).

Every account is exactly one quota root covering all its mailboxes.  To its own
sessions the root is named "" (as in the example of RFC 9208 section 4.2.2).
Users listed in ``[quota] administrators`` may also name any account's root by the
user name, and only they may change limits with SETQUOTA: ordinary users cannot
raise their own limits.  Limits are enforced by the storage layer, inside the
transaction that adds messages (see ``storage/sqlite_quota.py``).
"""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.mailbox_status import kibibytes
from mailhaven.imap.session import Session, no
from mailhaven.storage.interface import QuotaLimits, QuotaUsage, User

OWN_ROOT = b""
KIBIBYTE = 1024


def is_administrator(session: Session) -> bool:
    return session.require_user().name in session.config.quota.administrators


async def _account_of_root(session: Session, root: bytes) -> User:
    """The account a quota root name stands for; others' roots exist only for
    administrators (RFC 9208 section 8: usage of others is confidential)."""
    if root == OWN_ROOT:
        return session.require_user()
    if is_administrator(session):
        account = await session.storage.get_user(root.decode("utf-8", "replace"))
        if account is not None:
            return account
    raise no("No such quota root", b"NONEXISTENT")


def quota_response(root: bytes, usage: QuotaUsage) -> responses.Data:
    """``* QUOTA root (STORAGE used limit MESSAGE used limit)``: only limited
    resources are listed (RFC 9208 section 4.2.1); storage in KiB (section 5.1)."""
    triplets: list[bytes] = []
    if usage.limits.storage is not None:
        triplets.append(
            b"STORAGE %d %d" % (kibibytes(usage.storage), usage.limits.storage // KIBIBYTE)
        )
    if usage.limits.messages is not None:
        triplets.append(b"MESSAGE %d %d" % (usage.messages, usage.limits.messages))
    return responses.Data(b"QUOTA " + wire.astring(root) + b" " + wire.paren(triplets))


async def getquota(session: Session, command: c.GetQuota) -> Tagged:
    account = await _account_of_root(session, command.root)
    usage = await session.storage.quota(account.id)
    await session.send(quota_response(command.root, usage))
    return Tagged(command.tag, "OK", "GETQUOTA completed")


async def getquotaroot(session: Session, command: c.GetQuotaRoot) -> Tagged:
    """RFC 9208 section 4.1.2: the mailbox need not exist; every name of the
    user's namespace falls under the account's root."""
    name = session.decode_mailbox_name(command.mailbox)
    usage = await session.storage.quota(session.require_user().id)
    encoded = wire.astring(session.encode_mailbox_name(name), utf8=session.utf8)
    await session.send_all(
        [
            responses.Data(b"QUOTAROOT " + encoded + b" " + wire.astring(OWN_ROOT)),
            quota_response(OWN_ROOT, usage),
        ]
    )
    return Tagged(command.tag, "OK", "GETQUOTAROOT completed")


async def setquota(session: Session, command: c.SetQuota) -> Tagged:
    """RFC 9208 section 4.1.3: the listed limits replace all previous ones, so a
    resource not listed becomes unlimited."""
    if not is_administrator(session):
        raise no("Only administrators can change quota limits", b"NOPERM")
    account = await _account_of_root(session, command.root)
    limits = dict(command.limits)
    unknown = sorted(set(limits) - {"STORAGE", "MESSAGE"})
    if unknown:
        raise no(f"Cannot set a limit on {unknown[0]}; only STORAGE and MESSAGE", b"CANNOT")
    storage_kib = limits.get("STORAGE")
    new = QuotaLimits(
        storage=None if storage_kib is None else storage_kib * KIBIBYTE,
        messages=limits.get("MESSAGE"),
    )
    usage = await session.storage.set_quota(account.id, new)
    await session.send(quota_response(command.root, usage))
    return Tagged(command.tag, "OK", "SETQUOTA completed")
