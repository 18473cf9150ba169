"""Message flag rules shared by storage backends.

RFC 9051 section 2.3.2: system flags (``\\Seen`` ...) and keywords are matched
case-insensitively; a stored flag keeps one spelling (canonical for system flags, the
first spelling seen for keywords).  ``\\Recent`` is session state (RFC 3501 section
2.3.2), not a stored flag: it can be neither set nor cleared by a client, so it is
dropped here and backends track it separately.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

RECENT = "\\Recent"

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_CANONICAL = {flag.casefold(): flag for flag in SYSTEM_FLAGS}
_RECENT_KEY = RECENT.casefold()

STORE_MODES = ("+", "-", "")


def flag_key(flag: str) -> str:
    """The case-insensitive identity of a flag."""
    return flag.casefold()


def canonical_flag(flag: str) -> str:
    """System flags in their RFC spelling; keywords unchanged."""
    return _CANONICAL.get(flag_key(flag), flag)


def _by_key(flags: Iterable[str]) -> dict[str, str]:
    """Storable flags keyed by identity; among spellings of one keyword the
    smallest wins, so the outcome does not depend on set iteration order."""
    keyed: dict[str, str] = {}
    for flag in sorted(flags):
        key = flag_key(flag)
        if key != _RECENT_KEY:
            keyed.setdefault(key, canonical_flag(flag))
    return keyed


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical spellings, one per flag, without ``\\Recent``."""
    return frozenset(_by_key(flags).values())


def apply_store(current: frozenset[str], mode: str, requested: Iterable[str]) -> frozenset[str]:
    """The flags after STORE (RFC 9051 section 6.4.6): mode "+" adds, "-" removes,
    "" replaces.  Flags already present keep their spelling, so a result that
    differs from *current* always means a real change."""
    if mode not in STORE_MODES:
        raise ValueError(f"unknown STORE mode {mode!r}")
    existing = _by_key(current)
    wanted = _by_key(requested)
    if mode == "+":
        result = {**wanted, **existing}
    elif mode == "-":
        result = {key: flag for key, flag in existing.items() if key not in wanted}
    else:
        result = {key: existing.get(key, flag) for key, flag in wanted.items()}
    return frozenset(result.values())


def store_applier(
    mode: str, requested: frozenset[str]
) -> Callable[[frozenset[str]], frozenset[str]]:
    """:func:`apply_store` with *mode* and *requested*, computed once per distinct flag
    set: a mailbox's messages share a handful of flag sets, and a STORE on 10,000 of
    them would otherwise redo the same work for each."""
    results: dict[frozenset[str], frozenset[str]] = {}

    def apply(current: frozenset[str]) -> frozenset[str]:
        result = results.get(current)
        if result is None:
            result = results[current] = apply_store(current, mode, requested)
        return result

    return apply


def serialize_flags(flags: Iterable[str]) -> str:
    """Space-separated text in a stable order (flags are atoms: no spaces inside)."""
    return " ".join(sorted(flags, key=flag_key))


@functools.lru_cache(maxsize=4096)
def parse_flags(text: str) -> frozenset[str]:
    # A mailbox has few distinct flag combinations: SELECT of 100,000 messages then
    # shares a handful of frozensets instead of building (and keeping) 100,000.
    return frozenset(text.split())
