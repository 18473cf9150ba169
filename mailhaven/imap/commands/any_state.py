"""Commands valid in any state: CAPABILITY, NOOP, LOGOUT, ID (RFC 9051 section 6.1,
RFC 2971) and ENABLE (RFC 5161, authenticated state)."""

from __future__ import annotations

from mailhaven import __version__
from mailhaven.codec import commands as c
from mailhaven.codec import responses, wire
from mailhaven.codec.responses import Tagged
from mailhaven.imap.capabilities import capabilities
from mailhaven.imap.condstore import enable_condstore, enable_qresync
from mailhaven.imap.session import Session

# RFC 5161 section 3.1: ENABLE only acts on extensions that need it.
ENABLEABLE = frozenset({"IMAP4REV2", "CONDSTORE", "QRESYNC"})


async def capability(session: Session, command: c.Capability) -> Tagged:
    await session.send(responses.capability(capabilities(session)))
    return Tagged(command.tag, "OK", "CAPABILITY completed")


async def noop(session: Session, command: c.Noop) -> Tagged:
    """RFC 9051 section 6.1.2: the updates are sent by the dispatcher."""
    return Tagged(command.tag, "OK", "NOOP completed")


async def logout(session: Session, command: c.Logout) -> Tagged | None:
    """RFC 9051 section 6.1.3: BYE, then the tagged OK, then the server closes."""
    session.close()
    await session.send(responses.Untagged("BYE", "Mailhaven logging out"))
    await session.send(Tagged(command.tag, "OK", "LOGOUT completed"))
    return None


async def id_command(session: Session, command: c.Id) -> Tagged:
    """RFC 2971 section 3.1: log what the client says about itself, answer ours."""
    if command.params:
        session.log.info(
            "client id %s", " ".join(f"{name}={value!r}" for name, value in command.params)
        )
    fields = [("name", "Mailhaven"), ("version", __version__)]
    payload = b"ID " + wire.paren(
        wire.string(key) + b" " + wire.string(value) for key, value in fields
    )
    await session.send(responses.Data(payload))
    return Tagged(command.tag, "OK", "ID completed")


async def enable(session: Session, command: c.Enable) -> Tagged:
    """RFC 5161 section 3.1: ENABLED lists only what was newly enabled.  QRESYNC
    implies CONDSTORE (RFC 7162 section 3.2.3)."""
    newly = list(
        dict.fromkeys(
            name
            for name in command.capabilities
            if name in ENABLEABLE and name not in session.enabled
        )
    )
    if "IMAP4REV2" in newly:
        session.enabled.add("IMAP4REV2")
    session.channel.set_utf8(session.utf8)
    await session.send(responses.enabled("IMAP4rev2" if n == "IMAP4REV2" else n for n in newly))
    if "QRESYNC" in newly:
        await enable_qresync(session)
    elif "CONDSTORE" in newly:
        await enable_condstore(session)
    return Tagged(command.tag, "OK", "ENABLE completed")
