"""Connection limits: in total, per client IP and per account.

The counts live in memory: they describe this process's open connections, which a
restart closes anyway.
"""

from __future__ import annotations

from collections import Counter

from mailhaven.config import LimitsConfig


class ConnectionRegistry:
    """Admits or refuses connections and logins against the configured limits."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.per_account: Counter[int] = Counter()

    def admit_connection(self, ip: str) -> str | None:
        """Count a new connection; or the reason it is refused (nothing counted)."""
        if self.total >= self.limits.max_connections:
            return "Too many connections to this server, try again later"
        if self.per_ip[ip] >= self.limits.max_connections_per_ip:
            return "Too many connections from your address, try again later"
        self.total += 1
        self.per_ip[ip] += 1
        return None

    def release_connection(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    def admit_login(self, user_id: int) -> bool:
        if self.per_account[user_id] >= self.limits.max_connections_per_account:
            return False
        self.per_account[user_id] += 1
        return True

    def release_login(self, user_id: int) -> None:
        self.per_account[user_id] -= 1
        if self.per_account[user_id] <= 0:
            del self.per_account[user_id]
