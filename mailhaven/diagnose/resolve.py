"""Step 1: DNS.  A/AAAA through the system resolver (what clients use) and the IMAP
SRV records of RFC 6186 section 3.2 (``_imaps._tcp``, ``_imap._tcp``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailhaven.diagnose.report import Status, StepResult

# RFC 6761: names under these never resolve in the global DNS, so asking is pointless.
_RESERVED_SUFFIXES = (".invalid", ".test", ".example", ".localhost", ".local")
SRV_SERVICES = ("_imaps._tcp", "_imap._tcp")
SRV_LIFETIME_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class SrvTarget:
    service: str
    priority: int
    weight: int
    port: int
    target: str  # "." means the domain says the service is not offered (RFC 6186 3.4)

    @property
    def available(self) -> bool:
        return self.target not in ("", ".")

    def describe(self) -> str:
        if not self.available:
            return f"{self.service}: not offered (target '.')"
        return f"{self.service} -> {self.target}:{self.port} (priority {self.priority})"


SrvLookup = Callable[[str], list[SrvTarget]]


def order_srv_targets(targets: Iterable[SrvTarget]) -> list[SrvTarget]:
    """RFC 2782 order: lowest priority first, then the heaviest weight.  (The weighted
    random choice among equal priorities matters for load, not for a diagnosis.)"""
    return sorted(targets, key=lambda target: (target.priority, -target.weight, target.service))


def lookup_srv(domain: str) -> list[SrvTarget]:
    """The IMAP SRV records of *domain*; empty when there are none or DNS cannot tell."""
    import dns.exception
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver()
    except dns.exception.DNSException:  # no resolv.conf: nothing to ask
        return []
    resolver.lifetime = SRV_LIFETIME_SECONDS
    found: list[SrvTarget] = []
    for service in SRV_SERVICES:
        try:
            answer = resolver.resolve(f"{service}.{domain}", "SRV")
        except dns.exception.DNSException:  # NXDOMAIN, no answer, timeout
            continue
        for record in answer:
            target = record.target.to_text().rstrip(".") or "."
            found.append(SrvTarget(service, record.priority, record.weight, record.port, target))
    return order_srv_targets(found)


def _srv_worth_asking(host: str) -> bool:
    name = host.lower().rstrip(".")
    return "." in name and not name.endswith(_RESERVED_SUFFIXES)


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def check_dns(host: str, srv_lookup: SrvLookup = lookup_srv) -> tuple[StepResult, list[str]]:
    """Resolve *host*; returns the step and the addresses in the resolver's order."""
    started = time.perf_counter()
    srv = srv_lookup(host) if _srv_worth_asking(host) and not is_ip_address(host) else []
    srv_details = [target.describe() for target in srv]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        step = _resolution_failure(host, error, srv)
        step.details["srv"] = srv_details
        step.elapsed_ms = (time.perf_counter() - started) * 1000
        return step, []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    elapsed = (time.perf_counter() - started) * 1000
    if is_ip_address(host):
        summary = f"{host} is an IP address, no lookup needed"
    else:
        summary = f"{host} resolves to {', '.join(addresses)}"
    if srv:
        summary += f"; SRV: {'; '.join(srv_details)}"
    step = StepResult("dns", Status.OK, summary, elapsed_ms=elapsed)
    step.details.update(addresses=addresses, srv=srv_details)
    _warn_if_srv_points_elsewhere(step, host, srv)
    return step, addresses


def _warn_if_srv_points_elsewhere(step: StepResult, host: str, srv: list[SrvTarget]) -> None:
    usable = [target for target in srv if target.available]
    if usable and all(target.target.lower() != host.lower().rstrip(".") for target in usable):
        step.status = Status.WARN
        step.code = "srv-points-elsewhere"
        step.fix = (
            f"{host} publishes {usable[0].target}:{usable[0].port} as its IMAP server "
            "(RFC 6186): configure the client with that host"
        )


def _resolution_failure(host: str, error: socket.gaierror, srv: list[SrvTarget]) -> StepResult:
    if error.errno == socket.EAI_AGAIN:
        code = "dns-temporary-failure"
        summary = f"the DNS server did not answer for {host} (temporary failure)"
        fix = "check the network connection and DNS settings, then try again"
    elif error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        code = "dns-name-not-found"
        summary = f"the host name {host} does not exist in DNS"
        fix = "check the spelling of the server name (often imap.<your domain>)"
    else:
        code = "dns-error"
        summary = f"cannot resolve {host}: {error.strerror}"
        fix = "check the server name and the DNS settings of this machine"
    usable = [target for target in srv if target.available]
    if usable:
        fix = (
            f"the domain's SRV records name {usable[0].target}:{usable[0].port} as its IMAP "
            "server (RFC 6186): use that host"
        )
    return StepResult("dns", Status.FAIL, summary, code=code, fix=fix)
