"""Step 5: authentication.  AUTHENTICATE PLAIN (RFC 4616, with SASL-IR RFC 4959 when
offered) or LOGIN, and a failure explained by its RFC 5530 response code.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from mailhaven.diagnose.greeting import auth_mechanisms
from mailhaven.diagnose.link import CommandResult, ConnectionLost, Link, StatusResponse
from mailhaven.diagnose.report import Status, StepResult


@dataclass(frozen=True, slots=True)
class Diagnosis:
    meaning: str
    fix: str


# RFC 5530 section 3, the codes a login can fail with, as a person would say it.
LOGIN_FAILURES: dict[str, Diagnosis] = {
    "AUTHENTICATIONFAILED": Diagnosis(
        "the user name or the password is wrong",
        "check the user name (often the full e-mail address) and the password; "
        "reset the password if unsure",
    ),
    "AUTHORIZATIONFAILED": Diagnosis(
        "the password is right, but this account may not use IMAP "
        "(IMAP access is disabled, or the account is disabled)",
        "enable IMAP access in the account's settings, or ask the administrator to",
    ),
    "UNAVAILABLE": Diagnosis(
        "the server refuses logins for now (too many failed attempts from your address, "
        "or a temporary problem on the server)",
        "wait before trying again (the server's message may say how long), and correct "
        "the password in every device that keeps retrying with an old one",
    ),
    "EXPIRED": Diagnosis(
        "the password or the account has expired",
        "set a new password (through the provider's web site or the administrator)",
    ),
    "PRIVACYREQUIRED": Diagnosis(
        "the server only accepts a password over an encrypted connection",
        "use implicit TLS on port 993 or STARTTLS on port 143",
    ),
    "CONTACTADMIN": Diagnosis(
        "the account needs the administrator's attention", "contact the administrator"
    ),
    "LIMIT": Diagnosis(
        "a limit was reached (too many connections for this account?)",
        "close other mail clients or sessions of this account and try again",
    ),
    "INUSE": Diagnosis(
        "the account is in use elsewhere in a way that blocks this login",
        "close other sessions of this account and try again",
    ),
    "SERVERBUG": Diagnosis(
        "the server failed internally", "report it to the server's administrator"
    ),
    "CANNOT": Diagnosis(
        "the server cannot use this login method", "choose another authentication method"
    ),
}
_NO_CODE = Diagnosis(
    "the server refused the login without an RFC 5530 response code; most often the "
    "password is wrong",
    "check the user name and password; if they are right, ask the administrator whether "
    "IMAP is enabled for the account",
)
# Providers that require app passwords say so only in the text.
_APP_PASSWORD_HINTS = ("application-specific password", "app password", "app-specific password")


def diagnose_login_failure(response: StatusResponse) -> Diagnosis:
    diagnosis = LOGIN_FAILURES.get(response.code, _NO_CODE)
    if any(hint in response.text.lower() for hint in _APP_PASSWORD_HINTS):
        return Diagnosis(
            diagnosis.meaning,
            "this provider wants an app password for mail clients: create one in the "
            "account's security settings and use it instead of the normal password",
        )
    return diagnosis


def _quoted(value: str) -> bytes | None:
    """An IMAP quoted string, or None when only a literal can carry *value*."""
    if any(character in value for character in "\r\n\0") or not value.isascii():
        return None
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


def _login(link: Link, user: str, password: str) -> CommandResult:
    user_arg, password_arg = _quoted(user), _quoted(password)
    if user_arg is not None and password_arg is not None:
        return link.command(b"LOGIN " + user_arg + b" " + password_arg)
    # A literal (RFC 9051 section 4.3), sent after the server's continuation.
    tag = link.next_tag()
    started = time.perf_counter()
    user_bytes, password_bytes = user.encode(), password.encode()
    link.send(f"{tag} LOGIN {{{len(user_bytes)}}}\r\n".encode())
    if not _continued(link):
        return link.collect(tag, started)
    link.send(user_bytes + f" {{{len(password_bytes)}}}\r\n".encode())
    if not _continued(link):
        return link.collect(tag, started)
    link.send(password_bytes + b"\r\n")
    return link.collect(tag, started)


def _continued(link: Link) -> bool:
    return link.read_line().startswith(b"+")


def _authenticate_plain(
    link: Link, user: str, password: str, initial_response: bool
) -> CommandResult:
    message = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    if initial_response:
        return link.command(b"AUTHENTICATE PLAIN " + message)
    tag = link.next_tag()
    started = time.perf_counter()
    link.send(tag.encode() + b" AUTHENTICATE PLAIN\r\n")
    if not _continued(link):
        return link.collect(tag, started)
    link.send(message + b"\r\n")
    return link.collect(tag, started)


def choose_method(capabilities: list[str]) -> str | None:
    """SASL PLAIN when offered (it carries UTF-8 and is what current servers expect),
    else LOGIN unless the server disabled it."""
    upper = {name.upper() for name in capabilities}
    if "AUTH=PLAIN" in upper:
        return "AUTHENTICATE PLAIN"
    return None if "LOGINDISABLED" in upper else "LOGIN"


def check_auth(link: Link, capabilities: list[str], user: str, password: str) -> StepResult:
    method = choose_method(capabilities)
    if method is None:
        offered = ", ".join(auth_mechanisms(capabilities)) or "none"
        return StepResult(
            "auth",
            Status.FAIL,
            f"the server offers no password mechanism this check can use (offered: {offered})",
            code="no-usable-mechanism",
            fix="the server wants another mechanism (e.g. OAuth2); use a client that supports it",
        )
    sasl_ir = "SASL-IR" in {name.upper() for name in capabilities}
    try:
        if method == "LOGIN":
            result = _login(link, user, password)
        else:
            result = _authenticate_plain(link, user, password, sasl_ir)
    except ConnectionLost as error:
        return StepResult(
            "auth",
            Status.FAIL,
            f"{method}: {error}",
            code="connection-lost",
            fix="the server dropped the connection during login; ask its administrator",
        )
    tagged = result.tagged
    assert tagged is not None
    step = _outcome(method, user, tagged)
    step.elapsed_ms = result.elapsed_ms
    return step


def _outcome(method: str, user: str, tagged: StatusResponse) -> StepResult:
    if tagged.status == "OK":
        step = StepResult("auth", Status.OK, f"logged in as {user} with {method}")
        step.details["method"] = method
        return step
    diagnosis = diagnose_login_failure(tagged)
    step = StepResult(
        "auth",
        Status.FAIL,
        f"{method} failed: {diagnosis.meaning} (server said: {tagged.line.split(' ', 1)[1]})",
        code=tagged.code or f"no-code-{tagged.status.lower()}",
        fix=diagnosis.fix,
    )
    step.details.update(method=method, response_code=tagged.code, server_text=tagged.text)
    return step
