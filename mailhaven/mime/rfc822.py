"""Lenient RFC 5322 / RFC 2045 lexical parsing of structured header values.

Real-world headers are often malformed, so the parser follows the same lenient
rules a widely deployed IMAP server applies (comments and folding skipped
anywhere whitespace may appear, RFC 822 style whitespace around dots, recovery
after syntax errors), which keeps BODYSTRUCTURE and ENVELOPE identical to what
clients already see elsewhere.  Values stay bytes: no charset decoding happens here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# atext (RFC 5322 section 3.2.3) plus 8-bit bytes, which real headers contain.
_ATEXT = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_ATEXT |= frozenset(range(0x80, 0x100))
# token (RFC 2045 section 5.1): atext without the tspecials "/", "=", "?".
_TOKEN = _ATEXT - frozenset(b"/=?") | frozenset(b".")
_WHITESPACE = frozenset(b" \t\r\n")


def _run_of(allowed: frozenset[int]) -> re.Pattern[bytes]:
    """The longest (possibly empty) run of bytes from *allowed*: one regex match is
    a tenth of the cost of a Python loop over the bytes, run for every header token."""
    return re.compile(b"[" + b"".join(re.escape(bytes([byte])) for byte in sorted(allowed)) + b"]*")


_ATEXT_RUN = _run_of(_ATEXT)
_ATEXT_OR_DOT_RUN = _run_of(_ATEXT | frozenset(b"."))
_TOKEN_RUN = _run_of(_TOKEN)

END = 0
MORE = 1
BROKEN = -1


class Lexer:
    """A cursor over one header value with the primitive productions of RFC 5322
    section 3.2.  Methods return ``MORE`` (1) when input remains, ``END`` (0) at the
    end, ``BROKEN`` (-1) on a syntax error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.last_comment = bytearray()

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The current byte, or -1 at the end."""
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def skip_cfws(self) -> int:
        """Skip whitespace and comments (RFC 5322 section 3.2.2), remembering the
        text of the last comment (used as a display name for ``addr (Name)``)."""
        data = self.data
        while self.pos < len(data):
            byte = data[self.pos]
            if byte in _WHITESPACE:
                self.pos += 1
            elif byte == 0x28:  # "("
                if not self._skip_comment():
                    return BROKEN
            else:
                return MORE
        return END

    def _skip_comment(self) -> bool:
        data = self.data
        self.last_comment.clear()
        depth = 0
        while self.pos < len(data):
            byte = data[self.pos]
            self.pos += 1
            if byte == 0x28:
                depth += 1
                if depth == 1:
                    continue
            elif byte == 0x29:
                depth -= 1
                if depth == 0:
                    return True
            elif byte == 0x5C:  # quoted-pair
                if self.pos >= len(data):
                    return False
                byte = data[self.pos]
                self.pos += 1
            elif byte in b"\r\n":
                continue
            self.last_comment.append(byte)
        return False

    def _take_run(self, run: re.Pattern[bytes]) -> bytes:
        match = run.match(self.data, self.pos)
        assert match is not None, "a run pattern matches the empty string"
        self.pos = match.end()
        return match.group()

    def token(self, out: bytearray) -> int:
        """A MIME token (RFC 2045 section 5.1); an empty token is not an error here,
        callers check the length."""
        out += self._take_run(_TOKEN_RUN)
        return self.skip_cfws()

    def quoted_string(self, out: bytearray) -> int:
        """quoted-string (RFC 5322 section 3.2.4): content unescaped, folding CRLF
        removed."""
        data = self.data
        self.pos += 1  # opening DQUOTE
        while self.pos < len(data):
            byte = data[self.pos]
            self.pos += 1
            if byte == 0x22:
                return self.skip_cfws()
            if byte == 0x5C:
                if self.pos >= len(data):
                    return BROKEN
                out.append(data[self.pos])
                self.pos += 1
            elif byte not in b"\r\n":
                out.append(byte)
        return BROKEN

    def dot_atom(self, out: bytearray) -> int:
        """dot-atom, allowing RFC 822 whitespace around the dots."""
        if self.peek() not in _ATEXT:
            return BROKEN
        while True:
            out += self._take_run(_ATEXT_RUN)
            status = self.skip_cfws()
            if status <= END or self.peek() != 0x2E:
                return status
            self.pos += 1
            out.append(0x2E)
            status = self.skip_cfws()
            if status <= END:
                return status

    def phrase(self, out: bytearray) -> int:
        """phrase / obs-phrase (RFC 5322 sections 3.2.5, 4.1): words joined by one
        space."""
        if self.at_end:
            return END
        if self.peek() == 0x2E:
            return BROKEN
        while True:
            quoted = self.peek() == 0x22
            status = self.quoted_string(out) if quoted else self._atom_or_dot(out)
            if status <= END:
                return status
            following = self.peek()
            if following not in _ATEXT and following not in (0x22, 0x2E):
                return self.skip_cfws()
            out.append(0x20)

    def _atom_or_dot(self, out: bytearray) -> int:
        run = self._take_run(_ATEXT_OR_DOT_RUN)
        if not run:
            return BROKEN
        out += run
        return self.skip_cfws()

    def domain(self, out: bytearray) -> int:
        """domain = dot-atom / domain-literal (RFC 5322 section 3.4.1)."""
        if self.peek() != 0x5B:
            return self.dot_atom(out)
        data = self.data
        start = self.pos
        while self.pos < len(data):
            byte = data[self.pos]
            self.pos += 1
            if byte == 0x5C:
                self.pos += 1
            elif byte == 0x5D:
                out += data[start : self.pos].replace(b"\r", b"").replace(b"\n", b"")
                return self.skip_cfws()
        return BROKEN


# ------------------------------------------------------------------ Content-Type


@dataclass(frozen=True, slots=True)
class ContentType:
    """``type/subtype`` exactly as written (case kept) and the parameters."""

    maintype: bytes
    subtype: bytes
    params: tuple[tuple[bytes, bytes], ...]


def parse_content_type(value: bytes) -> ContentType:
    """Content-Type (RFC 2045 section 5.1).  A type without ``/subtype`` keeps the
    type with an empty subtype; anything but parameters after the subtype makes
    the whole value invalid (empty type and subtype, no parameters)."""
    lexer = Lexer(value)
    lexer.skip_cfws()
    maintype = bytearray()
    status = lexer.token(maintype)
    if not maintype or status < END:
        return _INVALID_TYPE
    if lexer.peek() != 0x2F:
        return ContentType(bytes(maintype), b"", ()) if status == END else _INVALID_TYPE
    lexer.pos += 1
    subtype = bytearray()
    if lexer.skip_cfws() <= END:
        return ContentType(bytes(maintype), b"", ())
    status = lexer.token(subtype)
    if status < END or (status == MORE and lexer.peek() != 0x3B):
        return _INVALID_TYPE
    return ContentType(bytes(maintype), bytes(subtype), parse_parameters(lexer))


_INVALID_TYPE = ContentType(b"", b"", ())


def parse_disposition(value: bytes) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """Content-Disposition (RFC 2183 section 2): the type (empty when the value
    has none) and its parameters."""
    lexer = Lexer(value)
    lexer.skip_cfws()
    kind = bytearray()
    status = lexer.token(kind)
    if status < END:
        return bytes(kind), ()
    return bytes(kind), parse_parameters(lexer)


def parse_single_token(value: bytes) -> bytes | None:
    """A header whose value must be one token (Content-Transfer-Encoding):
    the token, or None when the value is empty or has anything after it."""
    lexer = Lexer(value)
    lexer.skip_cfws()
    token = bytearray()
    if lexer.token(token) != END or not token:
        return None
    return bytes(token)


def first_token(value: bytes) -> bytes:
    """The first token of a value (possibly empty)."""
    lexer = Lexer(value)
    lexer.skip_cfws()
    token = bytearray()
    lexer.token(token)
    return bytes(token)


def parse_language(value: bytes) -> tuple[bytes, ...]:
    """Content-Language (RFC 3282): a comma separated list of tags."""
    lexer = Lexer(value)
    tags: list[bytes] = []
    while lexer.skip_cfws() == MORE:
        tag = bytearray()
        lexer.token(tag)
        if not tag:
            break
        tags.append(bytes(tag))
        if lexer.peek() != 0x2C:
            break
        lexer.pos += 1
    return tuple(tags)


def _raw_parameters(lexer: Lexer) -> list[tuple[bytes, bytes]]:
    """``*(";" attribute "=" value)``; after a malformed parameter one byte is
    skipped and parsing resumes, so junk between parameters loses as little as
    possible (and exactly what the reference server loses)."""
    params: list[tuple[bytes, bytes]] = []
    while not lexer.at_end:
        parsed = _parameter(lexer)
        if parsed is None:
            lexer.pos += 1
        else:
            params.append(parsed)
    return params


def _parameter(lexer: Lexer) -> tuple[bytes, bytes] | None:
    if lexer.peek() != 0x3B:  # ";"
        return None
    lexer.pos += 1
    if lexer.skip_cfws() <= END:
        return None
    name = bytearray()
    lexer.token(name)
    if not name or lexer.peek() != 0x3D:
        return None
    lexer.pos += 1
    value = bytearray()
    if lexer.skip_cfws() <= END:
        return bytes(name), b""
    if lexer.peek() == 0x22:
        lexer.quoted_string(value)
    elif lexer.peek() == 0x3D:
        # Broken but common: name==?utf-8?b?...?= (an unquoted encoded word).
        while not lexer.at_end and lexer.peek() not in b"; \t\r\n":
            value.append(lexer.peek())
            lexer.pos += 1
        lexer.skip_cfws()
    else:
        lexer.token(value)
    return bytes(name), bytes(value)


def parse_parameters(lexer: Lexer) -> tuple[tuple[bytes, bytes], ...]:
    """``*(";" parameter)`` with RFC 2231 sections 3-4 applied: continuations
    (``name*0``, ``name*1*``) are joined in index order.  Values are not
    charset-decoded: an extended parameter is named ``name*`` and keeps its
    ``charset'lang'%XX`` form for the client to decode.  Plain parameters come
    first in their order, then the RFC 2231 ones sorted by name."""
    plain: list[tuple[bytes, bytes]] = []
    sections: dict[bytes, list[tuple[int, bool, bytes]]] = {}
    for name, value in _raw_parameters(lexer):
        base, index, extended = _split_rfc2231_name(name)
        if index is None and not extended:
            plain.append((name, value))
        else:
            sections.setdefault(base, []).append((index or 0, extended, value))
    for base in sorted(sections, key=bytes.lower):
        plain.append(_join_sections(base, sections[base]))
    return tuple(plain)


def _split_rfc2231_name(name: bytes) -> tuple[bytes, int | None, bool]:
    extended = name.endswith(b"*")
    stem = name[:-1] if extended else name
    star = stem.rfind(b"*")
    if star > 0 and stem[star + 1 :].isdigit():
        return stem[:star], int(stem[star + 1 :]), extended
    return stem, None, extended


def _join_sections(base: bytes, sections: list[tuple[int, bool, bytes]]) -> tuple[bytes, bytes]:
    sections.sort(key=lambda section: section[0])
    extended = sections[0][1]
    joined = b"".join(value for _, _, value in sections)
    return (base + b"*" if extended else base), joined


# ------------------------------------------------------------------ addresses


@dataclass(frozen=True, slots=True)
class Address:
    """One ENVELOPE address (RFC 9051 section 7.5.2): group start is
    ``(None, None, group-name, None)``, group end is all None."""

    name: bytes | None
    route: bytes | None
    mailbox: bytes | None
    host: bytes | None


class _AddressParser:
    """address-list (RFC 5322 section 3.4) with obsolete syntax and recovery.  An
    address missing its local part or domain is filled in with ``MISSING_MAILBOX``
    or ``MISSING_DOMAIN`` so clients always get four fields."""

    def __init__(self, value: bytes) -> None:
        self.lexer = Lexer(value)
        self.addresses: list[Address] = []
        self._reset()

    def _reset(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.host: bytes | None = None
        self.broken_angle = False

    def _emit(self, fill_missing: bool = True) -> None:
        mailbox, host = self.mailbox, self.host
        if fill_missing:
            mailbox = b"MISSING_MAILBOX" if mailbox is None else mailbox
            if host is None:
                host = b"SYNTAX_ERROR" if self.broken_angle else b"MISSING_DOMAIN"
        self.addresses.append(Address(self.name, self.route, mailbox, host))
        self._reset()

    def parse(self) -> list[Address]:
        lexer = self.lexer
        if lexer.skip_cfws() <= END:
            return []
        while True:
            # A broken address does not end the list: the next comma starts another.
            status = self._address()
            if status == END or lexer.peek() != 0x2C:
                break
            lexer.pos += 1
            if lexer.skip_cfws() <= END:
                break
        return self.addresses

    def _address(self) -> int:
        start = self.lexer.pos
        status = self._group()
        if status is None:
            self.lexer.pos = start
            self._reset()
            status = self._mailbox()
        return status

    def _group(self) -> int | None:
        lexer = self.lexer
        display = bytearray()
        if lexer.phrase(display) <= END or lexer.peek() != 0x3A:
            return None
        lexer.pos += 1
        status = lexer.skip_cfws()
        self.mailbox = bytes(display)
        self._emit(fill_missing=False)
        if status == MORE and lexer.peek() != 0x3B:
            while True:
                if self._mailbox() <= END:
                    status = BROKEN
                    break
                if lexer.peek() != 0x2C:
                    break
                lexer.pos += 1
                if lexer.skip_cfws() <= END:
                    status = BROKEN
                    break
        if status >= END:
            if lexer.peek() != 0x3B:
                status = BROKEN
            else:
                lexer.pos += 1
                status = lexer.skip_cfws()
        self._emit(fill_missing=False)
        return status

    def _mailbox(self) -> int:
        lexer = self.lexer
        start = lexer.pos
        status = self._name_addr()
        if status is None:
            # Whatever the failed angle-addr parsed stays, as in the reference
            # server: "<user:junk>" keeps "user" with a SYNTAX_ERROR domain.
            lexer.pos = start
            self.name = None
            status = self._addr_spec(in_angle=False)
        self._emit()
        return status

    def _name_addr(self) -> int | None:
        lexer = self.lexer
        display = bytearray()
        if lexer.peek() != 0x3C and (lexer.phrase(display) <= END or lexer.peek() != 0x3C):
            return None
        self.name = bytes(display) if display else None
        return self._angle_addr()

    def _angle_addr(self) -> int | None:
        lexer = self.lexer
        lexer.pos += 1  # "<"
        if lexer.skip_cfws() <= END:
            return None
        if lexer.peek() == 0x40:
            if self._route() > END and lexer.peek() == 0x3A:
                lexer.pos += 1
            else:
                self.route = b"INVALID_ROUTE"
                if lexer.at_end:
                    return None
            if lexer.skip_cfws() <= END:
                return None
        if lexer.peek() != 0x3E and (self._addr_spec(in_angle=True) < END or lexer.peek() != 0x3E):
            self.broken_angle = True
            return None
        lexer.pos += 1
        return lexer.skip_cfws()

    def _route(self) -> int:
        lexer = self.lexer
        route = bytearray()
        while True:
            lexer.pos += 1  # "@"
            route.append(0x40)
            if lexer.skip_cfws() <= END:
                return BROKEN
            status = lexer.domain(route)
            if status <= END:
                return status
            while lexer.peek() == 0x2C:
                lexer.pos += 1
                if lexer.skip_cfws() <= END:
                    return BROKEN
            if lexer.peek() != 0x40:
                self.route = bytes(route)
                return MORE
            route.append(0x2C)

    def _addr_spec(self, in_angle: bool) -> int:
        lexer = self.lexer
        lexer.last_comment.clear()
        local = bytearray()
        if lexer.at_end:
            status = END
        elif lexer.peek() == 0x22:
            status = lexer.quoted_string(local)
        else:
            status = lexer.dot_atom(local)
        if status >= END:
            self.mailbox = bytes(local)
        if status != END and lexer.peek() == 0x40:
            lexer.pos += 1
            host = bytearray()
            if lexer.skip_cfws() <= END:
                return BROKEN
            status = lexer.domain(host)
            if status >= END:
                self.host = bytes(host)
            if lexer.last_comment and not in_angle:
                # "user@host (Real Name)": the comment is the only name there is.
                self.name = bytes(lexer.last_comment)
            return status
        if in_angle:
            return status
        if lexer.last_comment:
            self.name = bytes(lexer.last_comment)
            return BROKEN
        # "user" alone is a mailbox without domain, but "user more words" is a
        # display name without any address.
        words = bytearray(self.mailbox or b"")
        words.append(0x20)
        before = len(words)
        lexer.phrase(words)
        if len(words) != before:
            self.mailbox = None
            self.name = bytes(words)
        return BROKEN


def parse_addresses(value: bytes) -> list[Address]:
    """All addresses of an address-list header value."""
    return _AddressParser(value).parse()
