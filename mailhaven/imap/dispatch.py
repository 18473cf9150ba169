"""The command table: which handler runs each command, in which states it is legal
(RFC 9051 section 6), and whether it works on sequence numbers.

Like Dovecot's command table, each entry records whether the command *uses*
sequence numbers: after FETCH, STORE and SEARCH (but not their UID forms) no EXPUNGE
may be sent, because the client may have pipelined more commands that rely on the
numbers it knows (RFC 9051 section 7.5.1, RFC 3501 section 7.4.1).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mailhaven.codec import commands as c
from mailhaven.codec.responses import Tagged
from mailhaven.imap import condstore
from mailhaven.imap.commands import (
    any_state,
    append,
    authentication,
    compress,
    copy_move,
    fetch,
    idle,
    listing,
    mailboxes,
    quota,
    search,
    selected_state,
    sort_thread,
    store,
)
from mailhaven.imap.session import CommandFailed, Session, State
from mailhaven.storage.interface import MailboxNotFound

Handler = Callable[[Session, Any], Awaitable[Tagged | None]]

ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTHENTICATED = frozenset({State.NOT_AUTHENTICATED})
AUTHENTICATED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    states: frozenset[State]
    uses_sequence_numbers: bool = False


COMMANDS: dict[type, CommandSpec] = {
    c.Capability: CommandSpec("CAPABILITY", any_state.capability, ANY),
    c.Noop: CommandSpec("NOOP", any_state.noop, ANY),
    c.Logout: CommandSpec("LOGOUT", any_state.logout, ANY),
    c.Id: CommandSpec("ID", any_state.id_command, ANY),
    c.StartTLS: CommandSpec("STARTTLS", authentication.starttls, NOT_AUTHENTICATED),
    c.Login: CommandSpec("LOGIN", authentication.login, NOT_AUTHENTICATED),
    c.Authenticate: CommandSpec("AUTHENTICATE", authentication.authenticate, NOT_AUTHENTICATED),
    c.Enable: CommandSpec("ENABLE", any_state.enable, AUTHENTICATED),
    c.Select: CommandSpec("SELECT", mailboxes.select, AUTHENTICATED),
    c.Create: CommandSpec("CREATE", mailboxes.create, AUTHENTICATED),
    c.Delete: CommandSpec("DELETE", mailboxes.delete, AUTHENTICATED),
    c.Rename: CommandSpec("RENAME", mailboxes.rename, AUTHENTICATED),
    c.Subscribe: CommandSpec("SUBSCRIBE", mailboxes.subscribe, AUTHENTICATED),
    c.Unsubscribe: CommandSpec("UNSUBSCRIBE", mailboxes.unsubscribe, AUTHENTICATED),
    c.Namespace: CommandSpec("NAMESPACE", mailboxes.namespace, AUTHENTICATED),
    c.Status: CommandSpec("STATUS", mailboxes.status, AUTHENTICATED),
    c.List: CommandSpec("LIST", listing.list_command, AUTHENTICATED),
    c.Lsub: CommandSpec("LSUB", listing.lsub, AUTHENTICATED),
    c.Append: CommandSpec("APPEND", append.append, AUTHENTICATED),
    c.Idle: CommandSpec("IDLE", idle.idle, AUTHENTICATED),
    c.Check: CommandSpec("CHECK", selected_state.check, SELECTED),
    c.Close: CommandSpec("CLOSE", selected_state.close, SELECTED),
    c.Unselect: CommandSpec("UNSELECT", selected_state.unselect, SELECTED),
    c.Expunge: CommandSpec("EXPUNGE", selected_state.expunge, SELECTED),
    c.Search: CommandSpec("SEARCH", search.search, SELECTED, uses_sequence_numbers=True),
    c.Fetch: CommandSpec("FETCH", fetch.fetch, SELECTED, uses_sequence_numbers=True),
    c.Store: CommandSpec("STORE", store.store, SELECTED, uses_sequence_numbers=True),
    c.Copy: CommandSpec("COPY", copy_move.copy, SELECTED),
    c.Move: CommandSpec("MOVE", copy_move.move, SELECTED),
    c.Compress: CommandSpec("COMPRESS", compress.compress, AUTHENTICATED),
    c.GetQuota: CommandSpec("GETQUOTA", quota.getquota, AUTHENTICATED),
    c.GetQuotaRoot: CommandSpec("GETQUOTAROOT", quota.getquotaroot, AUTHENTICATED),
    c.SetQuota: CommandSpec("SETQUOTA", quota.setquota, AUTHENTICATED),
    c.Sort: CommandSpec("SORT", sort_thread.sort, SELECTED, uses_sequence_numbers=True),
    c.Thread: CommandSpec("THREAD", sort_thread.thread, SELECTED, uses_sequence_numbers=True),
}


async def execute(session: Session, command: c.Command) -> None:
    """Run one command and send its untagged updates and tagged completion."""
    spec = COMMANDS[type(command)]
    if session.state not in spec.states:
        await session.send(Tagged(command.tag, "BAD", _wrong_state_text(spec, session.state)))
        return
    try:
        tagged = await spec.handler(session, command)
    except CommandFailed as failure:
        tagged = Tagged(command.tag, failure.status, failure.text, failure.code)
    except (ConnectionError, ssl.SSLError):
        raise  # the connection is gone (a failed STARTTLS handshake): nobody to answer
    except MailboxNotFound:
        # Typically the selected mailbox, deleted by another session meanwhile.
        tagged = Tagged(command.tag, "NO", "The mailbox no longer exists", b"NONEXISTENT")
    except Exception:
        session.log.exception("command %s failed", spec.name)
        tagged = Tagged(command.tag, "NO", "Internal server error, logged", b"SERVERBUG")
    if tagged is None:  # the handler already completed the command (STARTTLS, LOGOUT)
        return
    if tagged.status != "OK":
        code = f" [{tagged.code.decode('ascii', 'replace')}]" if tagged.code else ""
        session.log.info(
            "command %s failed: %s%s %s client=%s",
            spec.name,
            tagged.status,
            code,
            tagged.text,
            session.channel.peer_address,
        )
    if session.state is State.SELECTED:
        uses_numbers = spec.uses_sequence_numbers and not getattr(command, "uid", False)
        await session.send_updates(allow_expunge=not uses_numbers)
        tagged = await condstore.after_updates(session, tagged)
    await session.send(tagged)


def _wrong_state_text(spec: CommandSpec, state: State) -> str:
    if state is State.NOT_AUTHENTICATED:
        return f"{spec.name} is only valid after logging in"
    if spec.states == SELECTED:
        return f"{spec.name} needs a selected mailbox"
    return f"{spec.name} is not valid in the {state.value} state"
