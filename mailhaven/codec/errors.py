"""The one exception type the codec raises for anything a client sends wrong."""

from __future__ import annotations


class ProtocolError(Exception):
    """A command that cannot be framed or parsed.

    ``tag`` is the command tag when it could be read (the server answers
    ``tag BAD text``), else None (the server answers ``* BAD text``).
    ``status`` is the completion status to send: "BAD" for syntax errors and
    limits, "NO" where the RFCs ask for it (e.g. ``NO [BADCHARSET ...]``,
    RFC 9051 section 6.4.4, or ``NO [TOOBIG]``, RFC 7889 section 4).
    ``code`` is the response code without brackets, e.g. ``b"LIMIT"``.
    """

    def __init__(
        self,
        text: str,
        *,
        tag: str | None = None,
        code: bytes | None = None,
        status: str = "BAD",
    ) -> None:
        super().__init__(text)
        self.text = text
        self.tag = tag
        self.code = code
        self.status = status

    def __repr__(self) -> str:
        return (
            f"ProtocolError({self.text!r}, tag={self.tag!r}, code={self.code!r}, "
            f"status={self.status!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtocolError):
            return NotImplemented
        return (self.text, self.tag, self.code, self.status) == (
            other.text,
            other.tag,
            other.code,
            other.status,
        )

    def __hash__(self) -> int:
        return hash((self.text, self.tag, self.code, self.status))
