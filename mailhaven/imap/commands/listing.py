"""LIST and LSUB (RFC 9051 section 6.3.9, RFC 3501 section 6.3.9), with CHILDREN
(RFC 3348), SPECIAL-USE (RFC 6154), LIST-EXTENDED (RFC 5258) and LIST-STATUS
(RFC 5819)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.mailbox_status import status_response
from mailhaven.imap.session import Session, bad
from mailhaven.storage.interface import Mailbox

SEPARATOR = "/"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A name LIST may return: an existing mailbox, a placeholder, or (with the
    SUBSCRIBED selection option) a subscription whose mailbox is gone."""

    name: str
    mailbox: Mailbox | None
    has_children: bool
    subscribed: bool


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """RFC 9051 6.3.9: ``*`` matches anything, ``%`` anything but the separator.
    INBOX is case-insensitive, so a leading "inbox" component is canonicalised."""
    head = pattern[:5]
    if head.upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in SEPARATOR + "%*"):
        pattern = "INBOX" + pattern[5:]
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(SEPARATOR)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _candidates(mailboxes: Iterable[Mailbox], subscribed: set[str], *, include_gone: bool):
    by_name = {m.name: m for m in mailboxes}
    names = set(by_name) | (subscribed if include_gone else set())
    ordered = sorted(names, key=lambda n: (n != "INBOX", n))
    for name in ordered:
        prefix = name + SEPARATOR
        yield Candidate(
            name=name,
            mailbox=by_name.get(name),
            has_children=any(other.startswith(prefix) for other in by_name),
            subscribed=name in subscribed,
        )


def attributes(candidate: Candidate, *, subscribed: bool, special_use: bool = True) -> list[str]:
    attrs: list[str] = []
    mailbox = candidate.mailbox
    if mailbox is None:
        attrs.append("\\NonExistent")
    elif not mailbox.selectable:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if candidate.has_children else "\\HasNoChildren")
    if subscribed and candidate.subscribed:
        attrs.append("\\Subscribed")
    if special_use and mailbox is not None:
        attrs.extend(mailbox.special_use)
    return attrs


async def list_command(session: Session, command: c.List) -> Tagged:
    user_id = session.require_user().id
    reference = session.decode_mailbox_name(command.reference) if command.reference else ""
    if command.patterns == (b"",) and not command.extended:
        # RFC 9051 6.3.9: an empty pattern asks for the delimiter and root.
        await session.send(responses.list_item("LIST", ["\\Noselect"], SEPARATOR, b""))
        return Tagged(command.tag, "OK", "LIST completed")
    select_subscribed = "SUBSCRIBED" in command.select_options
    return_subscribed = select_subscribed or "SUBSCRIBED" in command.return_options
    only_special = "SPECIAL-USE" in command.select_options
    if "RECURSIVEMATCH" in command.select_options and len(command.select_options) == 1:
        raise bad("RECURSIVEMATCH needs another selection option")
    regexes = [
        pattern_regex(reference + session.decode_mailbox_pattern(p)) for p in command.patterns
    ]
    storage = session.storage
    mailboxes = await storage.list_mailboxes(user_id)
    subscriptions = await storage.subscriptions(user_id)
    out: list[responses.Response] = []
    for candidate in _candidates(mailboxes, subscriptions, include_gone=select_subscribed):
        extended = b""
        if not any(r.fullmatch(candidate.name) for r in regexes):
            continue
        if select_subscribed and not candidate.subscribed:
            if "RECURSIVEMATCH" not in command.select_options or not _has_subscribed_child(
                candidate.name, subscriptions
            ):
                continue
            extended = b' ("CHILDINFO" ("SUBSCRIBED"))'
        if only_special and (candidate.mailbox is None or not candidate.mailbox.special_use):
            continue
        attrs = attributes(candidate, subscribed=return_subscribed)
        out.append(
            responses.list_item(
                "LIST",
                attrs,
                SEPARATOR,
                session.encode_mailbox_name(candidate.name),
                extended,
                utf8=session.utf8,
            )
        )
        mailbox = candidate.mailbox
        # RFC 5819 section 2: STATUS only for mailboxes matching the selection
        # options, not for a parent listed only for its CHILDINFO.
        if command.status_items and mailbox is not None and mailbox.selectable and not extended:
            out.append(
                await status_response(session, mailbox.id, mailbox.name, command.status_items)
            )
    await session.send_all(out)
    return Tagged(command.tag, "OK", "LIST completed")


def _has_subscribed_child(name: str, subscriptions: set[str]) -> bool:
    prefix = name + SEPARATOR
    return any(s.startswith(prefix) for s in subscriptions)


async def lsub(session: Session, command: c.Lsub) -> Tagged:
    """RFC 3501 6.3.9: subscribed names; a non-subscribed level that ``%`` matches
    above a subscribed name is returned with \\Noselect."""
    user_id = session.require_user().id
    reference = session.decode_mailbox_name(command.reference) if command.reference else ""
    regex = pattern_regex(reference + session.decode_mailbox_pattern(command.pattern))
    existing = {m.name: m for m in await session.storage.list_mailboxes(user_id)}
    subscriptions = await session.storage.subscriptions(user_id)
    found: dict[str, list[str]] = {}
    for name in subscriptions:
        if regex.fullmatch(name):
            mailbox = existing.get(name)
            found[name] = [] if mailbox is not None and mailbox.selectable else ["\\Noselect"]
            continue
        parts = name.split(SEPARATOR)
        for depth in range(len(parts) - 1, 0, -1):
            ancestor = SEPARATOR.join(parts[:depth])
            if regex.fullmatch(ancestor) and ancestor not in subscriptions:
                found.setdefault(ancestor, ["\\Noselect"])
                break
    await session.send_all(
        responses.list_item(
            "LSUB", attrs, SEPARATOR, session.encode_mailbox_name(name), utf8=session.utf8
        )
        for name, attrs in sorted(found.items())
    )
    return Tagged(command.tag, "OK", "LSUB completed")


async def list_response_for(session: Session, mailbox: Mailbox) -> responses.Data:
    """The LIST line for one mailbox (sent by SELECT under IMAP4rev2)."""
    names = [m.name for m in await session.storage.list_mailboxes(mailbox.user_id)]
    prefix = mailbox.name + SEPARATOR
    candidate = Candidate(
        mailbox.name, mailbox, any(n.startswith(prefix) for n in names), subscribed=False
    )
    return responses.list_item(
        "LIST",
        attributes(candidate, subscribed=False),
        SEPARATOR,
        session.encode_mailbox_name(mailbox.name),
        utf8=session.utf8,
    )
