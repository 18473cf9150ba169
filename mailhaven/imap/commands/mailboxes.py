"""Mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, NAMESPACE and STATUS (RFC 9051 sections 6.3.2-6.3.8, 6.3.10-6.3.11;
RFC 6154 section 3 CREATE USE; RFC 8438 STATUS SIZE)."""

from __future__ import annotations

from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap import condstore
from mailhaven.imap.commands.listing import list_response_for
from mailhaven.imap.mailbox_status import mailbox_id_value, status_response
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.imap.session import CommandFailed, Session, bad, no, untagged_ok
from mailhaven.storage.interface import MailboxExists, MailboxHasChildren, MailboxNotFound

SEPARATOR = "/"
MAX_NAME_LENGTH = 512  # characters of the full name
MAX_DEPTH = 32  # hierarchy levels
SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


async def select(session: Session, command: c.Select) -> Tagged:
    """SELECT and EXAMINE: deselect first, so a failed SELECT leaves none selected.

    RFC 7162: (CONDSTORE) enables CONDSTORE (section 3.1.8), (QRESYNC (...)) needs
    ENABLE QRESYNC first (section 3.2.5); [CLOSED] marks where the old mailbox's
    responses end (section 3.2.11)."""
    if command.qresync is not None and "QRESYNC" not in session.enabled:
        raise bad("The QRESYNC parameter needs ENABLE QRESYNC first")
    if session.selected is not None:
        session.leave_selected()
        # Held, like the responses below, for the tagged response's write: a SELECT is
        # then one write, whatever its outcome.
        closed = untagged_ok("Previous mailbox is now closed", b"CLOSED")
        await session.send_encoded(closed.encode())
    if command.condstore or command.qresync is not None:
        await condstore.enable_condstore(session)
    name = session.decode_mailbox_name(command.mailbox)
    mailbox = await session.find_mailbox(name)
    view = await SelectedMailbox.open(session.storage, mailbox, readonly=command.readonly)
    session.enter_selected(view)
    out: list[responses.Response] = [view.flags_response(), responses.exists(view.exists)]
    if not session.rev2:
        out.append(responses.recent(len(view.recent)))
        first_unseen = view.first_unseen()
        if first_unseen is not None:
            out.append(untagged_ok(f"First unseen is {first_unseen}", b"UNSEEN %d" % first_unseen))
    if command.readonly:
        out.append(untagged_ok("No permanent flags in read-only mode", b"PERMANENTFLAGS ()"))
    else:
        out.append(untagged_ok("Flags permitted", view.permanent_flags_code()))
    out.append(untagged_ok("UIDs valid", b"UIDVALIDITY %d" % mailbox.uidvalidity))
    out.append(untagged_ok("Predicted next UID", b"UIDNEXT %d" % view.uidnext))
    if view.condstore:
        out.append(condstore.highest_modseq_response(view))
    # RFC 8474 section 4.2
    out.append(untagged_ok("Ok", b"MAILBOXID " + mailbox_id_value(mailbox.object_id)))
    if session.rev2:
        out.append(await list_response_for(session, mailbox))
    await session.send_encoded(b"".join(response.encode() for response in out))
    if command.qresync is not None:
        await condstore.resynchronise(session, view, command.qresync)
    if command.readonly:
        return Tagged(command.tag, "OK", "EXAMINE completed", b"READ-ONLY")
    return Tagged(command.tag, "OK", "SELECT completed", b"READ-WRITE")


def check_new_name(name: str) -> str:
    """The name to create, or NO with a reason (RFC 9051 6.3.4: a trailing
    separator only declares the intent to create inferiors)."""
    if name.endswith(SEPARATOR) and len(name) > 1:
        name = name.rstrip(SEPARATOR)
    parts = name.split(SEPARATOR)
    if not name or any(part == "" for part in parts):
        raise no("Mailbox names cannot be empty or contain empty levels", b"CANNOT")
    if len(name) > MAX_NAME_LENGTH or len(parts) > MAX_DEPTH:
        raise no("Mailbox name is too long or too deeply nested", b"LIMIT")
    # isprintable also refuses C1 controls, line/paragraph separators and invisible
    # format characters, which could hide one name behind another in a client.
    if not all(ch.isprintable() for ch in name) or "*" in name or "%" in name:
        raise no("Mailbox names cannot contain control characters, '*' or '%'", b"CANNOT")
    if name[0] in "~#." or any(part in (".", "..") for part in parts):
        raise no("Mailbox names cannot start with '~', '#' or '.', nor contain '..'", b"CANNOT")
    return name


def _already_exists(name: str) -> CommandFailed:
    return no(f"Mailbox {name!r} already exists", b"ALREADYEXISTS")


def _nonexistent(name: str) -> CommandFailed:
    return no(f"Mailbox {name!r} does not exist", b"NONEXISTENT")


async def create(session: Session, command: c.Create) -> Tagged:
    name = check_new_name(session.decode_mailbox_name(command.mailbox))
    if name == "INBOX":
        raise no("INBOX always exists", b"ALREADYEXISTS")
    unknown = [use for use in command.special_use if use not in SPECIAL_USES]
    if unknown:
        raise no(f"Unsupported special-use attribute {unknown[0]}", b"USEATTR")
    try:
        created = await session.storage.create_mailbox(
            session.require_user().id, name, tuple(command.special_use)
        )
    except MailboxExists:
        raise _already_exists(name) from None
    # RFC 8474 section 4.1
    code = b"MAILBOXID " + mailbox_id_value(created.object_id)
    return Tagged(command.tag, "OK", "CREATE completed", code)


async def delete(session: Session, command: c.Delete) -> Tagged:
    name = session.decode_mailbox_name(command.mailbox)
    if name == "INBOX":
        raise no("INBOX cannot be deleted", b"CANNOT")
    if session.selected is not None and session.selected.mailbox.name == name:
        session.leave_selected()
    try:
        await session.storage.delete_mailbox(session.require_user().id, name)
    except MailboxNotFound:
        raise _nonexistent(name) from None
    except MailboxHasChildren:
        raise no(f"Mailbox {name!r} has inferior mailboxes", b"INUSE") from None
    return Tagged(command.tag, "OK", "DELETE completed")


async def rename(session: Session, command: c.Rename) -> Tagged:
    old = session.decode_mailbox_name(command.old)
    new = check_new_name(session.decode_mailbox_name(command.new))
    if new == "INBOX" or new.startswith(old + SEPARATOR):
        raise no(f"Cannot rename {old!r} to {new!r}", b"CANNOT")
    try:
        await session.storage.rename_mailbox(session.require_user().id, old, new)
    except MailboxNotFound:
        raise _nonexistent(old) from None
    except MailboxExists:
        raise _already_exists(new) from None
    return Tagged(command.tag, "OK", "RENAME completed")


async def subscribe(session: Session, command: c.Subscribe) -> Tagged:
    name = session.decode_mailbox_name(command.mailbox)
    await session.find_mailbox(name)
    await session.storage.subscribe(session.require_user().id, name)
    return Tagged(command.tag, "OK", "SUBSCRIBE completed")


async def unsubscribe(session: Session, command: c.Unsubscribe) -> Tagged:
    """RFC 9051 6.3.8: a name that no longer exists can still be unsubscribed."""
    name = session.decode_mailbox_name(command.mailbox)
    user_id = session.require_user().id
    if name not in await session.storage.subscriptions(user_id):
        raise no(f"Not subscribed to {name!r}", b"NONEXISTENT")
    await session.storage.unsubscribe(user_id, name)
    return Tagged(command.tag, "OK", "UNSUBSCRIBE completed")


async def namespace(session: Session, command: c.Namespace) -> Tagged:
    """RFC 2342 / RFC 9051 6.3.10: one personal namespace, no prefix."""
    await session.send(responses.Data(b'NAMESPACE (("" "/")) NIL NIL'))
    return Tagged(command.tag, "OK", "NAMESPACE completed")


async def status(session: Session, command: c.Status) -> Tagged:
    name = session.decode_mailbox_name(command.mailbox)
    mailbox = await session.find_mailbox(name)
    await session.send(await status_response(session, mailbox.id, name, command.items))
    if "HIGHESTMODSEQ" in command.items:
        await condstore.enable_condstore(session)  # RFC 7162 section 3.1
    return Tagged(command.tag, "OK", "STATUS completed")
