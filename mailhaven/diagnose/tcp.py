"""Step 2: TCP.  Connect to each candidate port and tell a refused connection (nothing
listens, or a firewall rejects) from a timeout (a firewall silently drops packets,
or the host is down)."""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass

from mailhaven.diagnose.report import Status, StepResult


@dataclass(frozen=True, slots=True)
class PortOutcome:
    port: int
    outcome: str  # "open", "refused", "timeout", "unreachable", "error"
    address: str
    elapsed_ms: float
    error: str = ""

    def describe(self) -> str:
        if self.outcome == "open":
            return f"port {self.port} open on {self.address} in {self.elapsed_ms:.1f} ms"
        if self.outcome == "timeout":
            seconds = self.elapsed_ms / 1000
            return f"port {self.port} timed out on {self.address} after {seconds:.1f} s"
        text = {"refused": "refused", "unreachable": "unreachable"}.get(
            self.outcome, f"failed ({self.error})"
        )
        return f"port {self.port} {text} on {self.address}"


def connect(address: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def try_port(addresses: list[str], port: int, timeout: float) -> PortOutcome:
    """Try each address in turn (like a client does); the first success wins, else
    the first failure is reported."""
    first_failure: PortOutcome | None = None
    for address in addresses:
        started = time.perf_counter()
        try:
            connect(address, port, timeout).close()
            outcome, message = "open", ""
        except TimeoutError:
            outcome, message = "timeout", "timed out"
        except ConnectionRefusedError:
            outcome, message = "refused", "connection refused"
        except OSError as error:
            unreachable = error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
            outcome, message = ("unreachable" if unreachable else "error"), str(error)
        elapsed_ms = (time.perf_counter() - started) * 1000
        result = PortOutcome(port, outcome, address, elapsed_ms, message)
        if outcome == "open":
            return result
        first_failure = first_failure or result
    assert first_failure is not None
    return first_failure


def check_tcp(
    host: str, addresses: list[str], ports: list[int], usable: set[int], timeout: float
) -> tuple[StepResult, PortOutcome | None]:
    """Try *ports*; the first open one of them in *usable* (those that speak the
    security mode asked for) is used for the rest of the check."""
    outcomes = [try_port(addresses, port, timeout) for port in ports]
    details = {
        "ports": [
            {
                "port": item.port,
                "outcome": item.outcome,
                "address": item.address,
                "elapsed_ms": round(item.elapsed_ms, 1),
            }
            for item in outcomes
        ]
    }
    described = "; ".join(item.describe() for item in outcomes)
    open_ports = [item for item in outcomes if item.outcome == "open"]
    chosen = next((item for item in open_ports if item.port in usable), None)
    if chosen is not None:
        step = StepResult("tcp", Status.OK, described)
        step.details.update(details, port=chosen.port)
        return step, chosen
    if open_ports:
        step = _other_port_open(open_ports[0].port, outcomes, timeout, host)
    else:
        step = _failure(host, outcomes, timeout)
    step.summary = described
    step.details.update(details)
    return step, None


def _other_port_open(
    open_port: int, outcomes: list[PortOutcome], timeout: float, host: str
) -> StepResult:
    step = _failure(host, [item for item in outcomes if item.outcome != "open"], timeout)
    mode = "implicit TLS (SSL/TLS)" if open_port == 993 else "STARTTLS"
    step.fix += f"; port {open_port} is open: set the client to port {open_port} with {mode}"
    return step


def _failure(host: str, outcomes: list[PortOutcome], timeout: float) -> StepResult:
    ports = " and ".join(str(item.port) for item in outcomes)
    kinds = {item.outcome for item in outcomes}
    if kinds == {"refused"}:
        return StepResult(
            "tcp",
            Status.FAIL,
            "",
            code="connection-refused",
            fix=(
                f"nothing accepts connections on port {ports} of {host}: the server is down, "
                "the port is wrong, or a firewall rejects it; check the port and that the "
                "IMAP service is running"
            ),
        )
    if "timeout" in kinds:
        return StepResult(
            "tcp",
            Status.FAIL,
            "",
            code="connection-timeout",
            fix=(
                f"no answer within {timeout:g} s: a firewall is most likely dropping "
                f"packets to port {ports} (yours, the network's or the server's), or the host "
                "is down; try another network or ask the server's administrator"
            ),
        )
    if "unreachable" in kinds:
        return StepResult(
            "tcp",
            Status.FAIL,
            "",
            code="host-unreachable",
            fix="there is no network route to the server: check this machine's connection",
        )
    return StepResult(
        "tcp",
        Status.FAIL,
        "",
        code="connection-failed",
        fix=f"cannot connect to {host}: {outcomes[0].error}",
    )
