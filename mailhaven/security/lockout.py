"""Brute-force protection, the way mail providers do it.

Every failed login is recorded in the store (so the state survives restarts and is
shared by all connections) under the client's IP address and under the account name
as typed, whether or not that account exists (so a lock does not reveal which names
exist).  Then:

* each failure waits before its NO, growing with the failures from that IP in the
  IP window (like Dovecot's auth penalty): ``delay_base_ms * 2**(n-1)``, at most
  ``delay_max_ms``;
* ``ip_max_failures`` failures within ``ip_window_seconds`` block the IP for
  ``ip_block_seconds``: every login from it is answered NO [UNAVAILABLE] without
  looking at the credentials;
* ``account_max_failures`` failures within ``account_window_seconds`` lock the account
  for ``account_lock_seconds`` against logins from IPs it has never logged in from
  successfully: those get NO [AUTHENTICATIONFAILED]; known IPs still get in.

Addresses in ``trusted_networks`` are never delayed, counted or blocked.  Nothing is
trusted by default, loopback included.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailhaven.config import LockoutConfig
from mailhaven.storage.interface import AuthBlock, Storage, User

IP = "ip"
ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a login is refused before its credentials are even looked at."""

    code: bytes
    text: str
    reason: str  # for the auth log line


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    new_blocks: tuple[AuthBlock, ...]


def _minutes(seconds: float) -> int:
    return max(1, round(seconds / 60))


def account_key(name: str) -> str:
    """Names are case-insensitive (the users table uses NOCASE), so are locks."""
    return name.casefold()


class Lockout:
    """The brute-force gate every login goes through."""

    def __init__(
        self,
        storage: Storage,
        config: LockoutConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self._trusted = [ipaddress.ip_network(network) for network in config.trusted_networks]

    def is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    async def check(self, ip: str, username: str, user: User | None) -> Refusal | None:
        """A refusal if *ip* is blocked or the account is locked for *ip*."""
        if self.is_trusted(ip):
            return None
        now = self.clock()
        block = await self.storage.active_auth_block(IP, ip, now)
        if block is not None:
            return Refusal(
                b"UNAVAILABLE",
                "Too many failed logins from your address: it is temporarily blocked, "
                f"try again in {_minutes(block.until - now)} minutes",
                "ip-blocked",
            )
        block = await self.storage.active_auth_block(ACCOUNT, account_key(username), now)
        if block is None:
            return None
        if user is not None and await self.storage.is_known_ip(user.id, ip):
            return None
        return Refusal(
            b"AUTHENTICATIONFAILED",
            "Too many failed logins for this account: logins from new addresses are "
            f"temporarily locked, try again in {_minutes(block.until - now)} minutes",
            "account-locked",
        )

    async def failed(self, ip: str, username: str) -> FailureOutcome:
        """Record a failure, block when a threshold is reached, then wait the penalty."""
        if self.is_trusted(ip):
            return FailureOutcome(())
        config = self.config
        now = self.clock()
        account = account_key(username)
        ip_failures, account_failures = await self.storage.record_auth_failure(
            ip,
            account,
            now,
            now - config.ip_window_seconds,
            now - config.account_window_seconds,
        )
        blocks = []
        if ip_failures >= config.ip_max_failures:
            reason = f"{ip_failures} failed logins in {config.ip_window_seconds} s"
            blocks.append(AuthBlock(IP, ip, now + config.ip_block_seconds, reason, now))
        if account_failures >= config.account_max_failures:
            reason = f"{account_failures} failed logins in {config.account_window_seconds} s"
            blocks.append(
                AuthBlock(ACCOUNT, account, now + config.account_lock_seconds, reason, now)
            )
        for block in blocks:
            await self.storage.add_auth_block(block)
        delay = self.penalty(ip_failures)
        await self.sleep(delay)
        return FailureOutcome(tuple(blocks))

    def penalty(self, failures: int) -> float:
        """Seconds to wait before answering the *failures*-th failure."""
        if failures < 1:
            return 0.0
        milliseconds = self.config.delay_base_ms * 2 ** min(failures - 1, 30)
        return min(milliseconds, self.config.delay_max_ms) / 1000

    async def succeeded(self, ip: str, user: User) -> None:
        """Remember the IP: an account lock does not apply to it later."""
        await self.storage.record_login(user.id, ip, self.clock())
