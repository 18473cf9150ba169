"""Progress and summaries of long jobs (import, export).

A progress line on stderr is redrawn in place when stderr is a terminal; the
summary at the end is always printed, including everything that was skipped and
why, so nothing disappears silently.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from mailhaven.mailflow.source import Skipped

REDRAW_SECONDS = 0.2
MEBIBYTE = 1024 * 1024


@dataclass
class Report:
    action: str  # "imported", "exported"
    messages: int = 0
    bytes: int = 0
    folders: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    _last_draw: float = 0.0

    @property
    def live(self) -> bool:
        return self.stream.isatty()

    def folder(self, name: str) -> None:
        if name not in self.folders:
            self.folders.append(name)

    def message(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        self._draw()

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append(Skipped(what, reason))

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def rate(self) -> float:
        return self.messages / self.elapsed()

    def _draw(self) -> None:
        now = time.monotonic()
        if not self.live or now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        line = (
            f"\r{self.action} {self.messages} messages, {self.bytes / MEBIBYTE:.1f} MiB,"
            f" {len(self.folders)} folders, {self.rate():.0f} messages/s"
        )
        self.stream.write(line)
        self.stream.flush()

    def summary(self) -> str:
        lines = [
            f"{self.action} {self.messages} messages ({self.bytes} bytes) in"
            f" {len(self.folders)} folders in {self.elapsed():.1f} s"
            f" ({self.rate():.0f} messages/s, {self.bytes / MEBIBYTE / self.elapsed():.1f} MiB/s)",
            f"skipped {len(self.skipped)}",
        ]
        lines += [f"  skipped {item.what}: {item.reason}" for item in self.skipped]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def finish(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
        print(self.summary(), file=self.stream, flush=True)
