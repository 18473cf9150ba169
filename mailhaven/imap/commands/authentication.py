"""STARTTLS, LOGIN and AUTHENTICATE (RFC 9051 sections 6.2.1-6.2.3, SASL PLAIN
RFC 4616, SASL-IR RFC 4959).

A wrong user name and a wrong password get the same answer and take the same time
(a dummy hash verification runs for unknown users).  The RFC 5530 codes tell a
person what to fix: AUTHENTICATIONFAILED, AUTHORIZATIONFAILED (IMAP access
disabled), PRIVACYREQUIRED (TLS needed first).
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from mailhaven import passwords
from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.capabilities import capability_code, password_login_allowed
from mailhaven.imap.session import Session, State, bad, no
from mailhaven.storage.interface import StorageError

TLS_REQUIRED = (
    "Password login is disabled until the connection is encrypted: "
    "use STARTTLS on this port or implicit TLS (port 993)"
)


async def starttls(session: Session, command: c.StartTLS) -> None:
    """RFC 9051 section 6.2.1: answer OK, then negotiate TLS; the client must
    ask for CAPABILITY again afterwards."""
    if session.channel.secure:
        raise bad("TLS is already active")
    if not session.channel.tls_available:
        raise no("TLS is not configured on this listener")
    await session.send(Tagged(command.tag, "OK", "Begin TLS negotiation now"))
    await session.channel.start_tls()


async def login(session: Session, command: c.Login) -> Tagged:
    if not password_login_allowed(session):
        raise no(TLS_REQUIRED, b"PRIVACYREQUIRED")
    username = command.username.decode("utf-8", "replace")
    await _authenticate_password(session, username, command.password)
    return Tagged(command.tag, "OK", "Logged in", capability_code(session))


async def authenticate(session: Session, command: c.Authenticate) -> Tagged:
    if command.mechanism != "PLAIN":
        raise no(f"Unsupported authentication mechanism {command.mechanism}", b"CANNOT")
    if not password_login_allowed(session):
        raise no(TLS_REQUIRED, b"PRIVACYREQUIRED")
    response = command.initial_response
    if response is None:
        response = await _sasl_response(session)
    authzid, authcid, password = _parse_plain(response)
    if authzid and authzid != authcid:
        raise no("Logging in as another user is not allowed", b"AUTHORIZATIONFAILED")
    await _authenticate_password(session, authcid.decode("utf-8", "replace"), password)
    return Tagged(command.tag, "OK", "Logged in", capability_code(session))


async def _sasl_response(session: Session) -> bytes:
    """One SASL client response: a base64 line, or "*" to cancel (RFC 9051 6.2.2)."""
    await session.send(responses.Continuation(b""))
    line = await session.channel.read_raw_line()
    if line is None:
        raise bad("Connection closed during authentication")
    if line.strip() == b"*":
        raise bad("Authentication cancelled")
    try:
        return base64.b64decode(line.strip(), validate=True)
    except binascii.Error:
        raise bad("Invalid base64 in authentication response") from None


def _parse_plain(message: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 4616 section 2: [authzid] NUL authcid NUL passwd."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise bad("Malformed PLAIN authentication message")
    return parts[0], parts[1], parts[2]


async def _authenticate_password(session: Session, username: str, password: bytes) -> None:
    peer = session.channel.peer_address
    secret = password.decode("utf-8", "replace")
    user = await session.storage.get_user(username)
    loop = asyncio.get_running_loop()
    if user is None:
        await loop.run_in_executor(None, passwords.verify_dummy, secret)
        ok = False
    else:
        ok = await loop.run_in_executor(None, passwords.verify_password, user.password_hash, secret)
    if not ok or user is None:
        session.log.info("login failed user=%r client=%s reason=bad-credentials", username, peer)
        raise no("Invalid user name or password", b"AUTHENTICATIONFAILED")
    if user.disabled:
        session.log.info("login failed user=%r client=%s reason=account-disabled", username, peer)
        raise no("This account is disabled", b"AUTHORIZATIONFAILED")
    if not user.imap_enabled:
        session.log.info("login failed user=%r client=%s reason=imap-disabled", username, peer)
        raise no("IMAP access is disabled for this account", b"AUTHORIZATIONFAILED")
    session.user = user
    session.state = State.AUTHENTICATED
    session.log.info("login user=%r client=%s", username, peer)
    if passwords.needs_rehash(user.password_hash):
        await _upgrade_hash(session, user.name, secret)


async def _upgrade_hash(session: Session, username: str, secret: str) -> None:
    """Replace an imported or outdated hash by a current argon2id one, now that the
    password is known to be right (the login itself does not depend on this)."""
    loop = asyncio.get_running_loop()
    new_hash = await loop.run_in_executor(None, passwords.hash_password, secret)
    try:
        await session.storage.set_password(username, new_hash)
    except StorageError as error:  # the old hash still works; try again next login
        session.log.warning("password hash of user=%r not upgraded: %s", username, error)
        return
    session.log.info("password hash of user=%r upgraded to argon2id", username)
