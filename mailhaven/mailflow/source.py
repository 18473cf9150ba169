"""What every import source yields: folders of messages with their flags and dates."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message as read from outside, with CRLF line endings."""

    raw: bytes
    flags: frozenset[str] = frozenset()
    internal_date: datetime.datetime | None = None
    uid: int | None = None  # the UID the source gave it, when it has one
    origin: str = ""  # file and position, for error reports


@dataclass(frozen=True, slots=True)
class Skipped:
    what: str
    reason: str


@dataclass
class SourceFolder:
    """A folder to import.  *messages* may yield :class:`Skipped` for entries that
    could not be read, so they end up in the summary instead of vanishing."""

    name: str
    messages: Iterable[SourceMessage | Skipped]
    uidvalidity: int | None = None
    uidnext: int | None = None
    problems: list[Skipped] = field(default_factory=list)
