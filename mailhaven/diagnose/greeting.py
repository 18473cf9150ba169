"""Step 4: the IMAP greeting and CAPABILITY (RFC 9051 sections 7.1 and 6.1.1).

Reports IMAP4rev1/IMAP4rev2, STARTTLS, LOGINDISABLED and the AUTH= mechanisms, and
warns when the server would take a password before TLS (RFC 9051 section 11.1 says it
must not: it advertises LOGINDISABLED until the connection is encrypted).
"""

from __future__ import annotations

import time

from mailhaven.diagnose.link import ConnectionLost, Link, StatusResponse, parse_status
from mailhaven.diagnose.report import Status, StepResult


class NotImap(Exception):
    """The server's first line is not an IMAP greeting (another service's port)."""


def parse_greeting(line: bytes) -> StatusResponse:
    """RFC 9051 section 7.1: ``* OK``, ``* PREAUTH`` or ``* BYE``."""
    status = parse_status(line)
    if status is None or status.tag != "*" or status.status not in ("OK", "PREAUTH", "BYE"):
        raise NotImap(line.decode("utf-8", "replace"))
    return status


def capabilities_of(link: Link, greeting: StatusResponse | None) -> list[str]:
    """The capabilities from the greeting's code, or else from a CAPABILITY command."""
    if greeting is not None and greeting.code == "CAPABILITY":
        return greeting.code_arguments.split()
    result = link.command(b"CAPABILITY")
    for line in result.untagged:
        if line.upper().startswith(b"* CAPABILITY "):
            return line[len(b"* CAPABILITY ") :].decode("ascii", "replace").split()
    return []


def auth_mechanisms(capabilities: list[str]) -> list[str]:
    return [name[5:].upper() for name in capabilities if name.upper().startswith("AUTH=")]


def check_capabilities(
    link: Link,
    greeting: StatusResponse | None,
    cleartext_capabilities: list[str],
    *,
    will_login: bool,
) -> tuple[StepResult, list[str]]:
    """Read the greeting (unless STARTTLS did already) and the capabilities over TLS."""
    started = time.perf_counter()
    try:
        if greeting is None:
            greeting = parse_greeting(link.read_line())
        if greeting.status == "BYE":
            return _refused(greeting), []
        # After STARTTLS the client must ask again (RFC 9051 section 6.2.1).
        capabilities = capabilities_of(link, None if cleartext_capabilities else greeting)
    except TimeoutError:
        return _failure("no-greeting", "the server sent no greeting after the TLS handshake"), []
    except ConnectionLost as error:
        return _failure("connection-lost", str(error)), []
    except NotImap as error:
        return _failure("not-imap", f"the server's greeting is not IMAP: {str(error)[:60]!r}"), []
    elapsed = (time.perf_counter() - started) * 1000
    step = _assess(greeting, capabilities, cleartext_capabilities, will_login)
    step.elapsed_ms = elapsed
    return step, capabilities


def _assess(
    greeting: StatusResponse,
    capabilities: list[str],
    cleartext_capabilities: list[str],
    will_login: bool,
) -> StepResult:
    upper = {name.upper() for name in capabilities}
    versions = [name for name in ("IMAP4rev1", "IMAP4rev2") if name.upper() in upper]
    mechanisms = auth_mechanisms(capabilities)
    summary = (
        f"greeting {greeting.status} {greeting.text!r}; {' + '.join(versions) or 'no IMAP4'}; "
        f"mechanisms: {', '.join(mechanisms) or 'LOGIN command only'}"
        f"{'; LOGINDISABLED' if 'LOGINDISABLED' in upper else ''}"
    )
    step = StepResult("imap", Status.OK, summary)
    step.details.update(
        greeting=greeting.line,
        capabilities=capabilities,
        imap4rev1="IMAP4REV1" in upper,
        imap4rev2="IMAP4REV2" in upper,
        mechanisms=mechanisms,
        login_disabled="LOGINDISABLED" in upper,
        cleartext_capabilities=cleartext_capabilities,
    )
    cleartext = {name.upper() for name in cleartext_capabilities}
    if not versions:
        step.status, step.code = Status.FAIL, "not-imap4"
        step.fix = "the server advertises neither IMAP4rev1 nor IMAP4rev2; it is not usable"
    elif will_login and "LOGINDISABLED" in upper and not mechanisms:
        step.status, step.code = Status.FAIL, "login-disabled"
        step.fix = "the server refuses password login even over TLS; ask its administrator"
    elif cleartext and "LOGINDISABLED" not in cleartext:
        step.status, step.code = Status.WARN, "cleartext-login-offered"
        step.fix = (
            "the server accepts passwords before STARTTLS: a client set to 'no encryption' "
            "would send the password in cleartext; advertise LOGINDISABLED until TLS is active"
        )
    return step


def _refused(greeting: StatusResponse) -> StepResult:
    return StepResult(
        "imap",
        Status.FAIL,
        f"the server refused the connection: {greeting.text}",
        code="greeting-bye",
        fix="the server is overloaded or blocks your address; try later or ask its administrator",
    )


def _failure(code: str, summary: str) -> StepResult:
    return StepResult(
        "imap",
        Status.FAIL,
        summary,
        code=code,
        fix="the server is misbehaving or overloaded; ask its administrator",
    )
