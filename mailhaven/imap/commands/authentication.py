"""STARTTLS, LOGIN and AUTHENTICATE (RFC 9051 sections 6.2.1-6.2.3; SASL-IR RFC 4959;
mechanisms PLAIN RFC 4616, LOGIN draft-murchison-sasl-login, SCRAM-SHA-256 RFC 7677,
OAUTHBEARER RFC 7628).

A wrong user name and a wrong password get the same answer and take the same time
(a dummy hash verification runs for unknown users).  The RFC 5530 codes tell a
person what to fix: AUTHENTICATIONFAILED, AUTHORIZATIONFAILED (account or IMAP access
disabled), PRIVACYREQUIRED (TLS needed first), UNAVAILABLE (address temporarily
blocked), LIMIT (too many connections to the account).  Every login attempt passes
the brute-force gate (:mod:`mailhaven.security.lockout`) and ends in one
``mailhaven.auth`` log line (see docs/security.md for the fail2ban filter).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import NoReturn

from mailhaven import passwords
from mailhaven.codec import commands as c
from mailhaven.codec import responses
from mailhaven.codec.responses import Tagged
from mailhaven.imap.capabilities import capability_code, password_login_allowed, sasl_mechanisms
from mailhaven.imap.session import CommandFailed, Session, State, bad, no
from mailhaven.logs import SessionLogger
from mailhaven.security import app_passwords, oauth, scram
from mailhaven.storage.interface import StorageError, User

TLS_REQUIRED = (
    "Password login is disabled until the connection is encrypted: "
    "use STARTTLS on this port or implicit TLS (port 993)"
)
BAD_CREDENTIALS = "Invalid user name or password"


async def starttls(session: Session, command: c.StartTLS) -> None:
    """RFC 9051 section 6.2.1: answer OK, then negotiate TLS; the client must
    ask for CAPABILITY again afterwards."""
    if session.channel.secure:
        raise bad("TLS is already active")
    if not session.channel.tls_available:
        raise no("TLS is not configured on this listener", b"CANNOT")
    await session.send(Tagged(command.tag, "OK", "Begin TLS negotiation now"))
    await session.channel.start_tls()


async def login(session: Session, command: c.Login) -> Tagged:
    username = command.username.decode("utf-8", "replace")
    if not password_login_allowed(session):
        _log_failure(session, "LOGIN", username, "privacy-required")
        raise no(TLS_REQUIRED, b"PRIVACYREQUIRED")
    await _password_login(session, "LOGIN", username, command.password)
    return Tagged(command.tag, "OK", "Logged in", capability_code(session))


async def authenticate(session: Session, command: c.Authenticate) -> Tagged:
    mechanism = command.mechanism.upper()
    if mechanism not in sasl_mechanisms(session):
        raise no(f"Unsupported authentication mechanism {command.mechanism}", b"CANNOT")
    if not password_login_allowed(session):
        _log_failure(session, mechanism, "", "privacy-required")
        raise no(TLS_REQUIRED, b"PRIVACYREQUIRED")
    handler = {
        "PLAIN": _authenticate_plain,
        "LOGIN": _authenticate_login,
        "SCRAM-SHA-256": _authenticate_scram,
        "OAUTHBEARER": _authenticate_oauthbearer,
    }[mechanism]
    await handler(session, command.initial_response)
    return Tagged(command.tag, "OK", "Logged in", capability_code(session))


# ---------------------------------------------------------------------- mechanisms


async def _authenticate_plain(session: Session, initial: bytes | None) -> None:
    """RFC 4616 section 2: [authzid] NUL authcid NUL passwd."""
    message = initial if initial is not None else await _sasl_response(session)
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise bad("Malformed PLAIN authentication message")
    authzid, authcid, password = parts
    username = authcid.decode("utf-8", "replace")
    if authzid and authzid != authcid:
        _log_failure(session, "PLAIN", username, "authzid-mismatch")
        raise no("Logging in as another user is not allowed", b"AUTHORIZATIONFAILED")
    await _password_login(session, "PLAIN", username, password)


async def _authenticate_login(session: Session, initial: bytes | None) -> None:
    """The LOGIN mechanism (draft-murchison-sasl-login): user name, then password,
    each asked for with a base64 prompt."""
    user = initial if initial is not None else await _sasl_response(session, b"Username:")
    password = await _sasl_response(session, b"Password:")
    await _password_login(session, "LOGIN", user.decode("utf-8", "replace"), password)


async def _authenticate_scram(session: Session, initial: bytes | None) -> None:
    """RFC 5802 section 5 over IMAP (RFC 9051 6.2.2): client-first, server-first,
    client-final, server-final as a challenge answered by an empty response."""
    mechanism = scram.MECHANISM
    message = initial if initial is not None else await _sasl_response(session)
    try:
        client_first = scram.parse_client_first(message)
    except scram.ScramError as error:
        raise bad(f"SCRAM: {error}") from None
    username = client_first.username
    if client_first.authzid and client_first.authzid != username:
        _log_failure(session, mechanism, username, "authzid-mismatch")
        raise no("Logging in as another user is not allowed", b"AUTHORIZATIONFAILED")
    user = await session.storage.get_user(username)
    await _refuse_if_blocked(session, mechanism, username, user)
    keys = await _scram_keys(session, user, username)
    exchange = scram.ServerExchange(client_first, keys)
    try:
        server_final = exchange.final(await _sasl_response(session, exchange.first()))
    except scram.ScramError as error:
        raise bad(f"SCRAM: {error}") from None
    if server_final is None or user is None:
        await _fail(session, mechanism, username, "bad-credentials")
    assert user is not None and server_final is not None
    await _sasl_response(session, server_final)  # the client's empty acknowledgement
    await _complete_login(session, mechanism, user)


async def _scram_keys(session: Session, user: User | None, username: str) -> scram.ScramKeys:
    stored = None if user is None else await session.storage.scram_credentials(user.id)
    if stored is None:
        return scram.fake_keys(username)
    try:
        return scram.ScramKeys.decode(stored)
    except scram.ScramError:
        session.log.warning("unreadable SCRAM keys user=%r", username)
        return scram.fake_keys(username)


async def _authenticate_oauthbearer(session: Session, initial: bytes | None) -> None:
    """RFC 7628 section 3.2: on an invalid token the server sends an error challenge,
    the client answers with a single %x01, then the server says NO."""
    validator = session.context.oauth_validator
    assert validator is not None, "OAUTHBEARER is only offered with a validator"
    message = initial if initial is not None else await _sasl_response(session)
    try:
        request = oauth.parse_initial_response(message)
    except oauth.OAuthError as error:
        raise bad(f"OAUTHBEARER: {error}") from None
    claimed = request.authzid or ""
    await _refuse_if_blocked(session, "OAUTHBEARER", claimed, None)
    granted = await oauth.validate(validator, request)
    user = None if granted is None else await session.storage.get_user(granted)
    if user is None or (request.authzid and request.authzid != granted):
        await _sasl_response(session, oauth.INVALID_TOKEN_ERROR)
        await _fail(session, "OAUTHBEARER", claimed or granted or "", "invalid-token")
    assert user is not None
    await _complete_login(session, "OAUTHBEARER", user)


# ---------------------------------------------------------------------- shared steps


async def _sasl_response(session: Session, challenge: bytes = b"") -> bytes:
    """Send one challenge and read the client's response: a base64 line, or "*" to
    cancel (RFC 9051 section 6.2.2)."""
    await session.send(responses.Continuation(base64.b64encode(challenge)))
    line = await session.channel.read_raw_line()
    if line is None:
        raise bad("Connection closed during authentication")
    if line.strip() == b"*":
        raise bad("Authentication cancelled")
    try:
        return base64.b64decode(line.strip(), validate=True)
    except binascii.Error:
        raise bad("Invalid base64 in authentication response") from None


async def _password_login(session: Session, mechanism: str, username: str, password: bytes) -> None:
    """Check a user name and password (the main password or an app password)."""
    user = await session.storage.get_user(username)
    await _refuse_if_blocked(session, mechanism, username, user)
    secret = password.decode("utf-8", "replace")
    if not await _password_matches(session, user, secret):
        await _fail(session, mechanism, username, "bad-credentials")
    assert user is not None
    await _complete_login(session, mechanism, user)
    if passwords.needs_rehash(user.password_hash):
        await _upgrade_hash(session, user, secret)


async def _upgrade_hash(session: Session, user: User, secret: str) -> None:
    """Replace an imported or outdated hash by a current argon2id one (with fresh
    SCRAM keys) once the main password is known to be right; the login itself does
    not depend on this.  An app password never replaces the main one."""
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, passwords.verify_password, user.password_hash, secret):
        return
    new_hash = await loop.run_in_executor(None, passwords.hash_password, secret)
    try:
        await session.storage.set_password(user.name, new_hash)
        credentials = scram.credentials_for(secret)
        if credentials is not None:
            await session.storage.set_scram_credentials(user.name, credentials)
    except StorageError as error:  # the old hash still works; try again next login
        session.log.warning("password hash not upgraded user=%r error=%r", user.name, str(error))
        return
    session.log.info("password hash upgraded user=%r scheme=argon2id", user.name)


async def _password_matches(session: Session, user: User | None, secret: str) -> bool:
    loop = asyncio.get_running_loop()
    if user is None:
        # The same work as for a real account: one argon2 verification.
        await loop.run_in_executor(None, passwords.verify_dummy, secret)
        return False
    if await loop.run_in_executor(None, passwords.verify_password, user.password_hash, secret):
        return True
    stored = await session.storage.app_password_digests(user.id)
    return app_passwords.matching_label(secret, stored) is not None


async def _refuse_if_blocked(
    session: Session, mechanism: str, username: str, user: User | None
) -> None:
    refusal = await session.context.lockout.check(session.channel.peer_host, username, user)
    if refusal is not None:
        _log_failure(session, mechanism, username, refusal.reason)
        raise no(refusal.text, refusal.code)


async def _fail(session: Session, mechanism: str, username: str, reason: str) -> NoReturn:
    """Count the failure, wait the penalty, log, and end the command with NO."""
    ip = session.channel.peer_host
    outcome = await session.context.lockout.failed(ip, username)
    _log_failure(session, mechanism, username, reason)
    for block in outcome.new_blocks:
        auth_log(session).warning(
            "login block",
            kind=block.kind,
            key=block.key,
            seconds=round(block.until - block.created),
        )
    raise CommandFailed("NO", BAD_CREDENTIALS, b"AUTHENTICATIONFAILED")


async def _complete_login(session: Session, mechanism: str, user: User) -> None:
    """The credentials are right: apply the account's switches and limits."""
    if user.disabled:
        _log_failure(session, mechanism, user.name, "account-disabled")
        raise no("This account is disabled", b"AUTHORIZATIONFAILED")
    if not user.imap_enabled:
        _log_failure(session, mechanism, user.name, "imap-disabled")
        raise no("IMAP access is disabled for this account", b"AUTHORIZATIONFAILED")
    if not session.context.connections.admit_login(user.id):
        _log_failure(session, mechanism, user.name, "too-many-connections")
        raise no("Too many connections to this account, close some and retry", b"LIMIT")
    await session.context.lockout.succeeded(session.channel.peer_host, user)
    session.user = user
    session.state = State.AUTHENTICATED
    auth_log(session).info(
        "login ok", ip=session.channel.peer_host, user=user.name, mechanism=mechanism
    )


def auth_log(session: Session) -> SessionLogger:
    """The ``mailhaven.auth`` logger, with the session's id."""
    return SessionLogger(logging.getLogger("mailhaven.auth"), session.log.extra)


def _log_failure(session: Session, mechanism: str, username: str, reason: str) -> None:
    # ip comes first and user names are quoted and escaped by the formatter, so the
    # fail2ban pattern in docs/security.md cannot be fooled by a crafted user name.
    auth_log(session).info(
        "login failed",
        ip=session.channel.peer_host,
        user=username,
        mechanism=mechanism,
        reason=reason,
    )
