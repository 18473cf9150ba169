"""Flags as clients send them in APPEND and STORE (RFC 9051 section 2.3.2)."""

from __future__ import annotations

from collections.abc import Iterable

from mailhaven.imap.session import bad
from mailhaven.storage.flags import RECENT, SYSTEM_FLAGS, canonical_flag, flag_key


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical flags to store; BAD for \\Recent (only the server sets it) and for
    system flags this server does not know."""
    result = set()
    for flag in flags:
        canonical = canonical_flag(flag)
        if canonical.startswith("\\") and canonical not in SYSTEM_FLAGS:
            if flag_key(flag) == flag_key(RECENT):
                raise bad("\\Recent cannot be set by clients")
            raise bad(f"Unknown system flag {flag}")
        result.add(canonical)
    return frozenset(result)
