"""Logging: one line per event on stderr, in UTC, with key=value fields.

    2026-11-22T10:00:00Z INFO mailhaven.session [1a2b3c4d] login user=demo

Session code logs through :func:`session_logger`, which prefixes the session id and
turns keyword arguments into fields::

    log = session_logger(new_session_id())
    log.info("login", user="demo", mechanism="PLAIN")

Values may come from clients (user names, mailbox names), so control characters are
escaped: a client cannot forge log lines by sending CR LF inside a string.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

_STANDARD_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})
_READABLE_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape_character(character: str) -> str:
    if character.isprintable():
        return character
    if character in _READABLE_ESCAPES:
        return _READABLE_ESCAPES[character]
    # The shortest of Python's own escapes, so the text reads like a str literal.
    return repr(character)[1:-1]


def escape_controls(text: str) -> str:
    """Escape every non-printable character (CR, LF, U+2028, ...) so a log event stays
    on one line whatever the text contains."""
    if text.isprintable():
        return text
    return "".join(_escape_character(character) for character in text)


def _format_value(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and not any(character in text for character in ' "=\\'):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escape_controls(quoted)}"'


def format_fields(fields: Mapping[str, object]) -> str:
    """Render fields as ``key=value`` pairs, quoting values with spaces or quotes."""
    return " ".join(f"{key}={_format_value(value)}" for key, value in fields.items())


class LineFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger> <message> key=value...`` on one line."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (stdlib name)
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        fields: Mapping[str, object] = getattr(record, "fields", {})
        return f"{line} {format_fields(fields)}" if fields else line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    Looking it up late means a replaced stderr (a test capturing output, a daemon
    redirecting it) is honoured and a closed one is never written to.  The class also
    marks the handler setup_logging installed, so a second call replaces it.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def setup_logging(level: str) -> None:
    """Send all log records at *level* ("debug", "info", ...) and above to stderr."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(LineFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


def new_session_id() -> str:
    """A short random id that ties together the log lines of one connection."""
    return secrets.token_hex(4)


class SessionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes ``[session-id]`` and collects extra keyword arguments as fields."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        fields = {key: kwargs.pop(key) for key in list(kwargs) if key not in _STANDARD_KWARGS}
        extra = dict(kwargs.get("extra") or {})
        extra["fields"] = {**extra.get("fields", {}), **fields}
        kwargs["extra"] = extra
        return f"[{self.extra['session_id']}] {msg}", kwargs


def session_logger(session_id: str) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    return SessionLogger(logging.getLogger("mailhaven.session"), {"session_id": session_id})
