"""Chains the steps: DNS, TCP, TLS, greeting and CAPABILITY, authentication, mailbox.
Stops at the first step that fails; later steps are reported as skipped."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from mailhaven.diagnose.auth import check_auth
from mailhaven.diagnose.greeting import check_capabilities
from mailhaven.diagnose.mailbox import check_mailboxes
from mailhaven.diagnose.report import Report, Status, StepResult
from mailhaven.diagnose.resolve import SrvLookup, check_dns, lookup_srv
from mailhaven.diagnose.tcp import check_tcp
from mailhaven.diagnose.tls_probe import IMPLICIT, STARTTLS, Endpoint, check_tls

IMAPS_PORT = 993  # RFC 8314 section 7.3
IMAP_PORT = 143
STEPS = ("dns", "tcp", "tls", "imap", "auth", "mailbox")


class Mode(enum.Enum):
    TLS = "tls"
    STARTTLS = "starttls"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class CheckOptions:
    host: str
    port: int | None = None
    mode: Mode = Mode.AUTO
    user: str | None = None
    password: str | None = None
    cafile: Path | None = None
    timeout: float = 10.0


def _ports(options: CheckOptions) -> tuple[list[int], set[int]]:
    """(ports to try, ports usable in the chosen mode)."""
    if options.port is not None:
        return [options.port], {options.port}
    wanted = {Mode.TLS: {IMAPS_PORT}, Mode.STARTTLS: {IMAP_PORT}}
    return [IMAPS_PORT, IMAP_PORT], wanted.get(options.mode, {IMAPS_PORT, IMAP_PORT})


def _tls_mode(options: CheckOptions, port: int) -> tuple[str, bool]:
    """(mode to try first, whether to detect the port's protocol)."""
    if options.mode is Mode.TLS:
        return IMPLICIT, False
    if options.mode is Mode.STARTTLS:
        return STARTTLS, False
    if port == IMAP_PORT:
        return STARTTLS, False
    return IMPLICIT, True


def run_check(options: CheckOptions, srv_lookup: SrvLookup = lookup_srv) -> Report:
    report = Report(options.host, secret=options.password)
    try:
        _run_steps(options, report, srv_lookup)
    finally:
        done = {step.name for step in report.steps}
        for name in STEPS:
            if name not in done:
                reason = "an earlier step failed" if report.failed else "not requested"
                report.add(StepResult(name, Status.SKIP, reason, code="skipped"))
    return report


def _run_steps(options: CheckOptions, report: Report, srv_lookup: SrvLookup) -> None:
    step, addresses = check_dns(options.host, srv_lookup)
    if report.add(step).status is Status.FAIL:
        return
    ports, usable = _ports(options)
    step, chosen = check_tcp(options.host, addresses, ports, usable, options.timeout)
    if report.add(step).status is Status.FAIL or chosen is None:
        return
    endpoint = Endpoint(options.host, chosen.address, chosen.port, options.timeout)
    mode, detect = _tls_mode(options, chosen.port)
    step, established = check_tls(endpoint, mode, options.cafile, detect=detect)
    if report.add(step).status is Status.FAIL or established is None:
        return
    link = established.link
    try:
        step, capabilities = check_capabilities(
            link,
            established.greeting,
            established.cleartext_capabilities,
            will_login=options.user is not None,
        )
        if report.add(step).status is Status.FAIL or options.user is None:
            return
        step = check_auth(link, capabilities, options.user, options.password or "")
        if report.add(step).status is Status.FAIL:
            return
        report.add(check_mailboxes(link))
    finally:
        link.close()
