"""Step 6: after login, LIST, SELECT INBOX and a small FETCH with their round-trip
times (RFC 9051 sections 6.3.9, 6.3.2, 6.4.5), to spot a slow or broken server."""

from __future__ import annotations

import contextlib
import re

from mailhaven.diagnose.auth import LOGIN_FAILURES
from mailhaven.diagnose.link import CommandResult, ConnectionLost, Link
from mailhaven.diagnose.report import Status, StepResult

SLOW_MS = 1000.0  # a round trip longer than this makes a client feel stuck
_EXISTS = re.compile(rb"^\* (\d+) EXISTS", re.IGNORECASE)

_MAILBOX_CODES = {
    "NONEXISTENT": "the mailbox does not exist",
    "UNAVAILABLE": "the mailbox is temporarily unavailable",
    "OVERQUOTA": "the account is over its quota",
    "SERVERBUG": "the server failed internally",
    "LIMIT": "a server limit was reached",
}


def check_mailboxes(link: Link) -> StepResult:
    timings: dict[str, float] = {}
    try:
        listing = _run(link, b'LIST "" "*"', "LIST", timings)
        mailboxes = sum(line.upper().startswith(b"* LIST ") for line in listing.untagged)
        selected = _run(link, b"SELECT INBOX", "SELECT INBOX", timings)
        exists = next(
            (int(m.group(1)) for line in selected.untagged if (m := _EXISTS.match(line))), 0
        )
        if exists:
            _run(link, f"FETCH {exists} (FLAGS RFC822.SIZE)".encode(), "FETCH", timings)
        _logout(link)
    except CommandError as error:
        return _failure(error, timings)
    except (ConnectionLost, TimeoutError) as error:
        return StepResult(
            "mailbox",
            Status.FAIL,
            f"the connection broke after login: {error or 'timed out'}",
            code="connection-lost",
            fix="the server is overloaded or crashing; ask its administrator",
            details={"round_trips_ms": timings},
        )
    rounded = {name: round(ms, 1) for name, ms in timings.items()}
    summary = f"{mailboxes} mailboxes, INBOX has {exists} messages; " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in timings.items()
    )
    step = StepResult(
        "mailbox",
        Status.OK,
        summary,
        elapsed_ms=sum(timings.values()),
        details={"mailboxes": mailboxes, "inbox_messages": exists, "round_trips_ms": rounded},
    )
    slow = [name for name, ms in timings.items() if ms > SLOW_MS]
    if slow:
        step.status, step.code = Status.WARN, "slow-server"
        step.fix = (
            f"{', '.join(slow)} took over {SLOW_MS / 1000:g} s: the server or the link to it "
            "is slow; clients will feel sluggish"
        )
    return step


class CommandError(Exception):
    def __init__(self, name: str, result: CommandResult) -> None:
        super().__init__(name)
        self.name = name
        self.result = result


def _run(link: Link, command: bytes, name: str, timings: dict[str, float]) -> CommandResult:
    result = link.command(command)
    timings[name] = result.elapsed_ms
    if result.tagged is None or result.tagged.status != "OK":
        raise CommandError(name, result)
    return result


def _logout(link: Link) -> None:
    # The BYE before the tagged OK ends the exchange: exactly what LOGOUT should do.
    with contextlib.suppress(ConnectionLost, TimeoutError):
        link.command(b"LOGOUT")


def _failure(error: CommandError, timings: dict[str, float]) -> StepResult:
    tagged = error.result.tagged
    assert tagged is not None
    diagnosis = LOGIN_FAILURES.get(tagged.code)
    meaning = _MAILBOX_CODES.get(tagged.code) or (diagnosis.meaning if diagnosis else "")
    return StepResult(
        "mailbox",
        Status.FAIL,
        f"{error.name} failed: {meaning + ' ' if meaning else ''}"
        f"(server said: {tagged.line.split(' ', 1)[1]})",
        code=tagged.code or f"{error.name.split()[0].lower()}-failed",
        fix=diagnosis.fix if diagnosis else "ask the server's administrator",
        details={"round_trips_ms": timings},
    )
