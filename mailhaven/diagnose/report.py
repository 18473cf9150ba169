"""The result of a check: one :class:`StepResult` per step, as text or JSON.

Every finding carries a machine-readable ``code`` (``connection-refused``,
``certificate-expired``, ``AUTHENTICATIONFAILED`` ...) for scripts and tests, a
sentence for a person, and the fix.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

REDACTED = "********"


class Status(enum.Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class StepResult:
    """What one step found: a status, a summary sentence and, when not OK, the fix."""

    name: str
    status: Status
    summary: str
    code: str = "ok"
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "code": self.code,
            "summary": self.summary,
            "fix": self.fix,
            "elapsed_ms": None if self.elapsed_ms is None else round(self.elapsed_ms, 1),
            "details": self.details,
        }


@dataclass
class Report:
    host: str
    steps: list[StepResult] = field(default_factory=list)
    # Never shown: every rendering replaces it, in case a server echoes it back.
    secret: str | None = None

    def add(self, step: StepResult) -> StepResult:
        self.steps.append(step)
        return step

    @property
    def failed(self) -> bool:
        return any(step.status is Status.FAIL for step in self.steps)

    @property
    def exit_code(self) -> int:
        """0 when everything works (warnings included), 1 when a step failed."""
        return 1 if self.failed else 0

    def step(self, name: str) -> StepResult | None:
        return next((step for step in self.steps if step.name == name), None)

    def to_json(self) -> str:
        document = {
            "host": self.host,
            "ok": not self.failed,
            "steps": [step.as_dict() for step in self.steps],
        }
        return self._redact(json.dumps(document, indent=2, ensure_ascii=False))

    def to_text(self) -> str:
        lines = [f"mailhaven check {self.host}"]
        for step in self.steps:
            timing = "" if step.elapsed_ms is None else f" ({_format_ms(step.elapsed_ms)})"
            lines.append(f"  {step.status.value:<4}  {step.name:<10} {step.summary}{timing}")
            if step.fix:
                lines.append(f"{'':18}fix: {step.fix}")
        verdict = "FAIL" if self.failed else "OK"
        warnings = sum(step.status is Status.WARN for step in self.steps)
        suffix = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
        lines.append(f"result: {verdict}{suffix}")
        return self._redact("\n".join(lines) + "\n")

    def _redact(self, text: str) -> str:
        if not self.secret:
            return text
        for form in {self.secret, json.dumps(self.secret, ensure_ascii=False)[1:-1]}:
            text = text.replace(form, REDACTED)
        return text


def _format_ms(milliseconds: float) -> str:
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.1f} s"
    return f"{milliseconds:.0f} ms" if milliseconds >= 10 else f"{milliseconds:.1f} ms"
