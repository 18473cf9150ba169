"""Flag names as clients send them (RFC 9051 section 2.3.2): system flags are
case-insensitive and kept in their canonical spelling; keywords are atoms."""

from __future__ import annotations

from collections.abc import Iterable

from mailhaven.imap.selected import SYSTEM_FLAGS
from mailhaven.imap.session import bad

_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical flags to store; BAD for \\Recent (only the server sets it) and for
    unknown system flags."""
    result = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _CANONICAL.get(flag.lower())
            if canonical is None:
                if flag.lower() == "\\recent":
                    raise bad("\\Recent cannot be set by clients")
                raise bad(f"Unknown system flag {flag}")
            result.add(canonical)
        else:
            result.add(flag)
    return frozenset(result)
