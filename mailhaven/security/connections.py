"""Connection limits: in total, per client IP and per account.

The counts live in memory: they describe this server's open connections, which a
restart closes anyway.  With several worker processes (``[server] workers``) each
process counts its own connections and learns the others' through the supervisor
(:class:`SharedConnectionRegistry`), so the limits apply to the whole server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from mailhaven.config import LimitsConfig

CONNECTION = "connection"  # counted per client IP
LOGIN = "login"  # counted per account id


class ConnectionRegistry:
    """Admits or refuses connections and logins against the configured limits."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.per_account: Counter[int] = Counter()

    def admit_connection(self, ip: str) -> str | None:
        """Count a new connection; or the reason it is refused (nothing counted)."""
        if self.connections_in_total() >= self.limits.max_connections:
            return "Too many connections to this server, try again later"
        if self.connections_from(ip) >= self.limits.max_connections_per_ip:
            return "Too many connections from your address, try again later"
        self.total += 1
        self.per_ip[ip] += 1
        self.counted(CONNECTION, ip, 1)
        return None

    def release_connection(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        self.counted(CONNECTION, ip, -1)

    def admit_login(self, user_id: int) -> bool:
        if self.logins_to(user_id) >= self.limits.max_connections_per_account:
            return False
        self.per_account[user_id] += 1
        self.counted(LOGIN, str(user_id), 1)
        return True

    def release_login(self, user_id: int) -> None:
        self.per_account[user_id] -= 1
        if self.per_account[user_id] <= 0:
            del self.per_account[user_id]
        self.counted(LOGIN, str(user_id), -1)

    # What the limits are compared with; the shared registry adds the other processes.

    def connections_in_total(self) -> int:
        return self.total

    def connections_from(self, ip: str) -> int:
        return self.per_ip[ip]

    def logins_to(self, user_id: int) -> int:
        return self.per_account[user_id]

    def counted(self, kind: str, key: str, delta: int) -> None:
        """A count of this process changed; only the shared registry passes it on."""


class SharedConnectionRegistry(ConnectionRegistry):
    """The registry of one worker process: its own counts plus the other workers'.

    The other workers' counts arrive as deltas (:meth:`apply_elsewhere`) a moment
    after they change, so two workers admitting at the same instant can together
    exceed a limit by at most one connection each; the limits are not exact
    boundaries anyway, they stop floods.
    """

    def __init__(self, limits: LimitsConfig, announce: Callable[[str, str, int], None]) -> None:
        super().__init__(limits)
        self._announce = announce
        self.elsewhere: dict[str, Counter[str]] = {CONNECTION: Counter(), LOGIN: Counter()}
        self.elsewhere_total = 0

    def apply_elsewhere(self, kind: str, key: str, delta: int) -> None:
        """Another worker's count of *kind* under *key* changed by *delta*."""
        counts = self.elsewhere[kind]
        counts[key] += delta
        if counts[key] <= 0:
            del counts[key]
        if kind == CONNECTION:
            self.elsewhere_total += delta

    def connections_in_total(self) -> int:
        return self.total + self.elsewhere_total

    def connections_from(self, ip: str) -> int:
        return self.per_ip[ip] + self.elsewhere[CONNECTION][ip]

    def logins_to(self, user_id: int) -> int:
        return self.per_account[user_id] + self.elsewhere[LOGIN][str(user_id)]

    def counted(self, kind: str, key: str, delta: int) -> None:
        self._announce(kind, key, delta)
