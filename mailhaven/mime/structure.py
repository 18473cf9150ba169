"""The MIME part tree of a raw message, with byte offsets (RFC 2045, RFC 2046).

Parsing works directly on the raw bytes so that every part's header and body
can later be served by slicing, without parsing again:

* A header ends with the first empty line (RFC 5322 section 2.1), or at a line
  that is a boundary of an enclosing multipart, or at the end of the data.
* A multipart body (RFC 2046 section 5.1.1) is split at boundary lines.  The line
  end before a boundary line belongs to the boundary, not to the part before it.
  A boundary line is any line starting with ``--`` followed by the boundary of
  the multipart or of any enclosing one; when one boundary is a prefix of another
  the longest matches.  Reaching an enclosing boundary ends the inner multiparts
  (a missing close delimiter is common in real mail).
* A ``message/rfc822`` body is parsed as a complete message (RFC 2046 section 5.2.1).
* Bodies of ``multipart/digest`` parts default to ``message/rfc822``
  (RFC 2046 section 5.1.5), all others to ``text/plain``.

Nesting deeper than ``MAX_DEPTH`` or more than ``MAX_PARTS`` parts are not
parsed further (the rest stays the body of the last part), which bounds the work
for hostile input.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhaven.mime.headers import HeaderField, find_value, line_end, parse_fields
from mailhaven.mime.rfc822 import ContentType, first_token, parse_content_type

MAX_DEPTH = 100
MAX_PARTS = 10_000
MAX_BOUNDARY = 80

LEAF = "leaf"
MULTIPART = "multipart"
MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity.  ``raw[header_start:body_start]`` is its header (including
    the blank line when there is one), ``raw[body_start:body_end]`` its body.
    ``kind`` is ``leaf``, ``multipart`` or ``message`` (message/rfc822, whose single
    child is the encapsulated message).  ``cte`` is the lower-cased first token of
    Content-Transfer-Encoding, ``None`` when the header is absent.  ``text`` is true
    for text/* bodies (including the text/plain default), which have a line count."""

    header_start: int
    body_start: int
    body_end: int
    kind: str
    cte: str | None
    text: bool
    children: tuple[Part, ...] = ()

    def to_tuple(self) -> list:
        """A JSON-friendly nested list (see :meth:`from_tuple`)."""
        return [
            self.header_start,
            self.body_start,
            self.body_end,
            self.kind,
            self.cte,
            self.text,
            [child.to_tuple() for child in self.children],
        ]

    @classmethod
    def from_tuple(cls, data: list) -> Part:
        header_start, body_start, body_end, kind, cte, text, children = data
        return cls(
            header_start,
            body_start,
            body_end,
            kind,
            cte,
            text,
            tuple(cls.from_tuple(child) for child in children),
        )

    def walk(self):
        """This part and all parts below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class _Boundary:
    """A boundary line found at ``start``: which entry of the boundary stack it
    matched and whether it is the close delimiter (``--boundary--``)."""

    start: int
    level: int
    close: bool


def effective_content_type(fields: list[HeaderField]) -> ContentType | None:
    """The first Content-Type field, parsed; None when there is none."""
    value = find_value(fields, b"content-type")
    return None if value is None else parse_content_type(value)


class _Parser:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.parts = 0

    def find_boundary(self, pos: int, stack: list[bytes]) -> _Boundary | None:
        """The first boundary line at or after line start *pos*."""
        raw = self.raw
        if not stack:
            return None
        candidate = pos
        while candidate < len(raw):
            if raw.startswith(b"--", candidate):
                found = self._match(candidate, stack)
                if found is not None:
                    return found
            newline = raw.find(b"\n--", candidate)
            if newline < 0:
                return None
            candidate = newline + 1
        return None

    def _match(self, start: int, stack: list[bytes]) -> _Boundary | None:
        raw = self.raw
        best = -1
        for level in range(len(stack) - 1, -1, -1):
            boundary = stack[level]
            if raw.startswith(boundary, start + 2) and (
                best < 0 or len(stack[best]) < len(boundary)
            ):
                best = level
        if best < 0:
            return None
        after = start + 2 + len(stack[best])
        return _Boundary(start, best, raw.startswith(b"--", after))

    def trim_line_end(self, stop: int, floor: int) -> int:
        """The end of the content before a boundary line at *stop*: the line end
        just before the boundary belongs to the boundary (RFC 2046 section 5.1.1)."""
        raw = self.raw
        if stop - 2 >= floor and raw[stop - 2 : stop] == b"\r\n":
            return stop - 2
        if stop - 1 >= floor and raw[stop - 1] == 0x0A:
            return stop - 1
        return stop

    def header_end(self, start: int, stack: list[bytes]) -> tuple[int, _Boundary | None]:
        """End of the header starting at *start*, past its blank line.  When a
        boundary line comes first the header ends before the line end preceding
        the boundary (which belongs to the boundary) and that boundary is
        returned too."""
        raw = self.raw
        pos = start
        while pos < len(raw):
            found = self._boundary_at(pos, stack)
            if found is not None:
                return self.trim_line_end(pos, start), found
            stop = line_end(raw, pos, len(raw))
            if raw[pos:stop] in (b"\r\n", b"\n"):
                return stop, None
            pos = stop
        return len(raw), None

    def _boundary_at(self, pos: int, stack: list[bytes]) -> _Boundary | None:
        if stack and self.raw.startswith(b"--", pos):
            return self._match(pos, stack)
        return None

    def entity(
        self, start: int, stack: list[bytes], digest_child: bool, depth: int
    ) -> tuple[Part, _Boundary | None]:
        """Parse the entity at *start*; return it and the boundary that ended it
        (None at the end of the data)."""
        part, found, _ = self._entity(start, stack, digest_child, depth)
        return part, found

    def _entity(
        self, start: int, stack: list[bytes], digest_child: bool, depth: int
    ) -> tuple[Part, _Boundary | None, bool]:
        """As :meth:`entity`, also telling whether a boundary cut the header."""
        self.parts += 1
        header_stop, interrupted = self.header_end(start, stack)
        fields = parse_fields(self.raw, start, header_stop)
        cte_value = find_value(fields, b"content-transfer-encoding")
        cte = None if cte_value is None else first_token(cte_value).lower().decode("latin-1")
        kind, text, boundary = self._classify(fields, digest_child)
        if interrupted is None and header_stop > start:
            # An enclosing boundary right after the blank line: that blank line
            # is the line end belonging to the boundary, so the header has none.
            own = [boundary] if kind == MULTIPART and boundary is not None else []
            found = self._boundary_at(header_stop, [*stack, *own])
            if found is not None and found.level < len(stack):
                header_stop, interrupted = self.trim_line_end(header_stop, start), found
        if interrupted is not None:
            # A body cut off before it starts; an encapsulated message there is
            # an empty one (no header, empty text/plain body).
            empty = Part(header_stop, header_stop, header_stop, LEAF, None, True)
            children = (empty,) if kind == MESSAGE else ()
            part = Part(start, header_stop, header_stop, kind, cte, text, children)
            return part, interrupted, True
        nested_allowed = depth < MAX_DEPTH and self.parts < MAX_PARTS
        if kind == MULTIPART and nested_allowed:
            part, found = self._multipart(start, header_stop, cte, boundary, stack, depth)
            return part, found, False
        if kind == MESSAGE and nested_allowed:
            inner, found, cut = self._entity(header_stop, stack, False, depth + 1)
            if cut and found is not None:
                # The reference server counts the line end before the boundary
                # into a message/rfc822 body whose encapsulated header it ended.
                end = found.start
            else:
                end = max(self._end(header_stop, found), inner.body_end)
            return Part(start, header_stop, end, MESSAGE, cte, False, (inner,)), found, False
        found = self.find_boundary(header_stop, stack)
        end = self._end(header_stop, found)
        return Part(start, header_stop, end, LEAF, cte, text), found, False

    def _end(self, body_start: int, found: _Boundary | None) -> int:
        if found is None:
            return len(self.raw)
        return self.trim_line_end(found.start, body_start)

    @staticmethod
    def _classify(fields: list[HeaderField], digest_child: bool) -> tuple[str, bool, bytes | None]:
        content_type = effective_content_type(fields)
        if content_type is None:
            return (MESSAGE, False, None) if digest_child else (LEAF, True, None)
        maintype = content_type.maintype.lower()
        subtype = content_type.subtype.lower()
        if maintype == b"message" and subtype == b"rfc822":
            return MESSAGE, False, None
        if maintype == b"text":
            return LEAF, True, None
        if maintype == b"multipart":
            return MULTIPART, False, _boundary_parameter(content_type)
        return LEAF, False, None

    def _multipart(
        self,
        start: int,
        body_start: int,
        cte: str | None,
        boundary: bytes | None,
        stack: list[bytes],
        depth: int,
    ) -> tuple[Part, _Boundary | None]:
        """A multipart body; without a boundary parameter it has no parts."""
        if boundary is None:
            found = self.find_boundary(body_start, stack)
            end = self._end(body_start, found)
            return Part(start, body_start, end, MULTIPART, cte, False), found
        own_level = len(stack)
        inner_stack = [*stack, boundary]
        digest = self._is_digest(start, body_start)
        children: list[Part] = []
        found = self.find_boundary(body_start, inner_stack)
        while found is not None and found.level == own_level and not found.close:
            child_start = line_end(self.raw, found.start, len(self.raw))
            child, found = self.entity(child_start, inner_stack, digest, depth + 1)
            children.append(child)
        if found is not None and found.level == own_level:
            # Close delimiter: the epilogue runs to an enclosing boundary or the end.
            epilogue = line_end(self.raw, found.start, len(self.raw))
            found = self.find_boundary(epilogue, stack)
            end = self._end(epilogue, found)
        else:
            end = self._end(body_start, found)
        return Part(start, body_start, end, MULTIPART, cte, False, tuple(children)), found

    def _is_digest(self, start: int, body_start: int) -> bool:
        content_type = effective_content_type(parse_fields(self.raw, start, body_start))
        return content_type is not None and content_type.subtype.lower() == b"digest"


def _boundary_parameter(content_type: ContentType) -> bytes | None:
    """The boundary, cut to ``MAX_BOUNDARY`` octets: RFC 2046 section 5.1.1 allows
    70; longer ones are compared by their first 80 octets only, like the
    reference server, so lines that share that prefix match the innermost."""
    for name, value in content_type.params:
        if name.lower() == b"boundary":
            return value[:MAX_BOUNDARY] or None
    return None


def parse_structure(raw: bytes) -> Part:
    """The part tree of a whole message."""
    root, _ = _Parser(raw).entity(0, [], False, 0)
    return root
