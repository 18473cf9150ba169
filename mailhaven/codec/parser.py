"""Parser for complete, framed client commands (RFC 9051 section 9 and extensions).

The input is what :class:`mailhaven.codec.framing.CommandFramer` produced: one
command with its literal bytes inline and the final line end stripped.  Every
literal's data is therefore already present, so literals are read like any other
token.  Parser functions are named after the ABNF rule they implement
(``parse_astring`` for ``astring`` ...); commands are found through the explicit
table :data:`COMMAND_PARSERS`.  Anything that does not match the grammar raises
:class:`~mailhaven.codec.errors.ProtocolError`, carrying the tag once it was read.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from mailhaven.codec import commands as c
from mailhaven.codec.errors import ProtocolError

T = TypeVar("T")

MAX_NUMBER = 2**32 - 1  # number / nz-number: unsigned 32-bit (RFC 9051 section 9)
MAX_NUMBER64 = 2**63 - 1  # number64 / mod-sequence-value: unsigned 63-bit

_ACCEPTED_CHARSETS = ("UTF-8", "US-ASCII")
_BADCHARSET = b"BADCHARSET (UTF-8 US-ASCII)"


def _char_class(chars: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % char for char in sorted(set(chars))) + b"]"


_PRINTABLE = bytes(range(0x21, 0x7F))  # CHAR minus SP and CTL
ATOM_CHARS = bytes(char for char in _PRINTABLE if char not in b'(){%*"\\]')
ASTRING_CHARS = ATOM_CHARS + b"]"
LIST_CHARS = ATOM_CHARS + b"%*]"
TAG_CHARS = bytes(char for char in ASTRING_CHARS if char != ord("+"))

_ATOM = re.compile(_char_class(ATOM_CHARS) + b"+")
_ASTRING_ATOM = re.compile(_char_class(ASTRING_CHARS) + b"+")
_LIST_ATOM = re.compile(_char_class(LIST_CHARS) + b"+")
_TAG = re.compile(_char_class(TAG_CHARS) + b"+")
_TAG_AND_NAME = re.compile(b"(" + _TAG.pattern + b")(?: ([A-Za-z]+))?")
_NAME = re.compile(rb"[A-Za-z]+")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_DIGITS = re.compile(rb"[0-9]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\r?\n")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DATE_TIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) '
    rb'([+-])([0-9]{2})([0-9]{2})"'
)
_DATE_TEXT = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_SECTION_TEXT = re.compile(rb"[A-Za-z.]+")
_STATUS_ATT = re.compile(rb"[A-Za-z-]+")
_LIST_OPTION_NAME = re.compile(rb"[A-Za-z-]+")
_STORE_ATT = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}


def read_tag_and_name(line: bytes) -> tuple[str | None, str | None]:
    """The tag and upper-cased command name at the start of *line*, when present.

    Used to address errors found before a command could be parsed (framing
    limits); the tag counts only when followed by SP or the end of the line.
    """
    match = _TAG_AND_NAME.match(line)
    if match is None or line[match.end(1) : match.end(1) + 1] not in (b"", b" "):
        return None, None
    name = match.group(2)
    return match.group(1).decode("ascii"), name.decode("ascii").upper() if name else None


# --------------------------------------------------------------------------- reader


class Reader:
    """A cursor over one framed command, with the context errors need."""

    __slots__ = ("data", "pos", "utf8", "max_nesting", "depth", "tag")

    def __init__(self, data: bytes, *, utf8: bool = False, max_nesting: int = 32) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8
        self.max_nesting = max_nesting
        self.depth = 0
        self.tag: str | None = None

    @property
    def command_tag(self) -> str:
        """The tag, for building the command once it has been read."""
        if self.tag is None:
            raise self.error("Missing tag")
        return self.tag

    def error(self, text: str, *, code: bytes | None = None, status: str = "BAD") -> ProtocolError:
        return ProtocolError(text, tag=self.tag, code=code, status=status)

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self, length: int = 1) -> bytes:
        return self.data[self.pos : self.pos + length]

    def expect(self, token: bytes, what: str) -> None:
        if not self.data.startswith(token, self.pos):
            raise self.error(f"Expected {what}")
        self.pos += len(token)

    def sp(self) -> None:
        self.expect(b" ", "a single space")

    def accept(self, token: bytes) -> bool:
        """Consume *token* (exact bytes) if it comes next."""
        if self.data.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def accept_keyword(self, word: str) -> bool:
        """Consume the case-insensitive keyword *word* if it is the next whole token."""
        end = self.pos + len(word)
        if self.data[self.pos : end].upper() != word.encode("ascii"):
            return False
        if end < len(self.data) and self.data[end] in ATOM_CHARS:
            return False
        self.pos = end
        return True

    def take(self, pattern: re.Pattern[bytes], what: str) -> re.Match[bytes]:
        match = pattern.match(self.data, self.pos)
        if match is None or match.end() == self.pos:
            raise self.error(f"Expected {what}")
        self.pos = match.end()
        return match

    def name(self, pattern: re.Pattern[bytes] = _NAME, what: str = "a keyword") -> str:
        """An upper-cased ASCII token (keywords are case-insensitive, RFC 9051 9)."""
        return self.take(pattern, what).group().decode("ascii").upper()

    @contextmanager
    def nested(self) -> Iterator[None]:
        """Bound the depth of parenthesised lists and NOT/OR chains."""
        if self.depth >= self.max_nesting:
            raise self.error("Too deeply nested", code=b"LIMIT")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def finish(self) -> None:
        if not self.at_end():
            raise self.error("Unexpected characters at end of command")


def _parenthesised(r: Reader, item: Callable[[Reader], T], *, empty_ok: bool) -> list[T]:
    """``"(" [item *(SP item)] ")"``, the shape of most IMAP lists."""
    r.expect(b"(", "'('")
    items: list[T] = []
    with r.nested():
        if not (empty_ok and r.peek() == b")"):
            items.append(item(r))
            while r.accept(b" "):
                items.append(item(r))
        r.expect(b")", "')'")
    return items


def _space_then(r: Reader, item: Callable[[Reader], T]) -> T:
    r.sp()
    return item(r)


# --------------------------------------------------------------------------- basic tokens


def parse_tag(r: Reader) -> str:
    """``tag = 1*<any ASTRING-CHAR except "+">``; it only counts as the tag (and
    is used to answer errors) when SP or the end of the command follows."""
    tag = r.take(_TAG, "a tag").group().decode("ascii")
    if r.peek() not in (b"", b" "):
        raise r.error("Invalid tag")
    r.tag = tag
    return tag


def parse_atom(r: Reader) -> bytes:
    return r.take(_ATOM, "an atom").group()


def _parse_digits(r: Reader, *, maximum: int, nonzero: bool, what: str) -> int:
    digits = r.take(_DIGITS, what).group()
    if nonzero and digits.startswith(b"0"):
        raise r.error(f"Expected {what}")
    if len(digits) > 20 or int(digits) > maximum:
        raise r.error(f"Number too large for {what}")
    return int(digits)


def parse_nz_number(r: Reader) -> int:
    return _parse_digits(r, maximum=MAX_NUMBER, nonzero=True, what="a non-zero number")


def parse_number64(r: Reader) -> int:
    return _parse_digits(r, maximum=MAX_NUMBER64, nonzero=False, what="a 63-bit number")


def parse_mod_sequence_value(r: Reader) -> int:
    """``mod-sequence-value``: positive 63-bit (RFC 7162 section 7)."""
    return _parse_digits(r, maximum=MAX_NUMBER64, nonzero=True, what="a mod-sequence")


def parse_mod_sequence_valzer(r: Reader) -> int:
    """``mod-sequence-valzer = "0" / mod-sequence-value`` (RFC 7162 section 7)."""
    return parse_number64(r)


def parse_quoted(r: Reader) -> bytes:
    """``quoted``: 8-bit only as valid UTF-8 and only after UTF8=ACCEPT/IMAP4rev2
    (RFC 9051 section 9 ``QUOTED-CHAR``, RFC 6855 section 3)."""
    content = _QUOTED_ESCAPE.sub(rb"\1", r.take(_QUOTED, "a quoted string").group(1))
    if content.isascii():
        return content
    if not r.utf8:
        raise r.error("8-bit characters in a quoted string need UTF8=ACCEPT; use a literal")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise r.error("Quoted string is not valid UTF-8") from error
    return content


def parse_literal(r: Reader, *, binary_allowed: bool = False) -> tuple[bytes, bool]:
    """``literal`` (RFC 9051 section 4.3, ``{N+}`` of RFC 7888) or, when
    *binary_allowed*, ``literal8`` (RFC 3516 section 4.2).  Returns the data and
    whether it was a literal8.  NUL is only allowed in literal8 (``CHAR8``)."""
    match = r.take(_LITERAL, "a literal")
    binary = match.group(1) == b"~"
    if binary and not binary_allowed:
        raise r.error("Binary literal not allowed here")
    digits = match.group(2)
    if len(digits) > 20 or int(digits) > MAX_NUMBER64:
        raise r.error("Literal size too large")
    end = r.pos + int(digits)
    if end > len(r.data):
        raise r.error("Literal data truncated")
    data = r.data[r.pos : end]
    if not binary and b"\0" in data:
        raise r.error("NUL is not allowed in a literal; use a binary literal")
    r.pos = end
    return data, binary


def parse_string(r: Reader) -> bytes:
    """``string = quoted / literal``."""
    if r.peek() == b'"':
        return parse_quoted(r)
    return parse_literal(r)[0]


def parse_astring(r: Reader) -> bytes:
    """``astring = 1*ASTRING-CHAR / string``."""
    if r.peek() in (b'"', b"{"):
        return parse_string(r)
    return r.take(_ASTRING_ATOM, "an astring").group()


def parse_nstring(r: Reader) -> bytes | None:
    return None if r.accept_keyword("NIL") else parse_string(r)


def parse_mailbox(r: Reader) -> bytes:
    """``mailbox = "INBOX" / astring``; kept raw: INBOX's case-insensitivity and
    the name's encoding are resolved by :mod:`mailhaven.codec.mailbox_names`."""
    return parse_astring(r)


def parse_list_mailbox(r: Reader) -> bytes:
    """``list-mailbox = 1*list-char / string`` (wildcards allowed)."""
    if r.peek() in (b'"', b"{"):
        return parse_string(r)
    return r.take(_LIST_ATOM, "a mailbox pattern").group()


def _text(data: bytes) -> str:
    """Search strings and ID values: UTF-8, leniently (US-ASCII is a subset)."""
    return data.decode("utf-8", "replace")


def parse_flag(r: Reader) -> str:
    """``flag``: ``\\`` atom (system flags and flag-extension) or a keyword atom.
    ``\\*`` (flag-perm) is only ever sent by servers, so it is refused here."""
    backslash = r.accept(b"\\")
    atom = r.take(_ATOM, "a flag").group().decode("ascii")
    return "\\" + atom if backslash else atom


def parse_flag_list(r: Reader) -> tuple[str, ...]:
    """``flag-list = "(" [flag *(SP flag)] ")"``."""
    return tuple(_parenthesised(r, parse_flag, empty_ok=True))


def _month(r: Reader, name: bytes) -> int:
    month = _MONTHS.get(name.decode("ascii").upper())
    if month is None:
        raise r.error("Invalid month name")
    return month


def parse_date_time(r: Reader) -> datetime.datetime:
    """``date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP
    zone DQUOTE`` -> timezone-aware datetime."""
    match = r.take(_DATE_TIME, "a date-time")
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    if int(zone_minutes) >= 60:
        raise r.error("Invalid time zone")
    offset = datetime.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
    try:
        zone = datetime.timezone(-offset if sign == b"-" else offset)
        return datetime.datetime(
            int(year), _month(r, month), int(day), int(hour), int(minute), int(second), 0, zone
        )
    except ValueError as error:
        raise r.error("Invalid date-time") from error


def parse_date(r: Reader) -> datetime.date:
    """``date = date-text / DQUOTE date-text DQUOTE``."""
    quoted = r.accept(b'"')
    day, month, year = r.take(_DATE_TEXT, "a date").groups()
    if quoted:
        r.expect(b'"', "'\"' closing the date")
    try:
        return datetime.date(int(year), _month(r, month), int(day))
    except ValueError as error:
        raise r.error("Invalid date") from error


# --------------------------------------------------------------------------- sequence sets


def parse_seq_number(r: Reader, *, star_allowed: bool = True) -> int | None:
    """``seq-number = nz-number / "*"``; None stands for ``*``."""
    if r.accept(b"*"):
        if not star_allowed:
            raise r.error("'*' is not allowed in this set")
        return None
    return parse_nz_number(r)


def parse_sequence_set(r: Reader, *, star_allowed: bool = True) -> c.SequenceSet:
    """``sequence-set`` (RFC 9051 section 9) or ``$`` (RFC 5182 ``seq-last-command``)."""
    if r.accept(b"$"):
        return c.SequenceSet((), saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    while True:
        low = parse_seq_number(r, star_allowed=star_allowed)
        high = parse_seq_number(r, star_allowed=star_allowed) if r.accept(b":") else low
        ranges.append((low, high))
        if not r.accept(b","):
            return c.SequenceSet(tuple(ranges))


def _parse_known_set(r: Reader) -> c.SequenceSet:
    """``known-uids`` etc. of RFC 7162 section 7: a sequence-set without ``*``."""
    return parse_sequence_set(r, star_allowed=False)


# --------------------------------------------------------------------------- fetch

_FETCH_MACROS = {
    # RFC 9051 section 6.4.5
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_FETCH_ATTRIBUTES = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "BODYSTRUCTURE",
        "UID",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "MODSEQ",  # RFC 7162 section 3.1.4.1
        "SAVEDATE",  # RFC 8514
        "EMAILID",  # RFC 8474
        "THREADID",  # RFC 8474
        "PREVIEW",  # RFC 8970 (PREVIEW (LAZY) is parsed in parse_fetch_att)
    }
)


def parse_section_part(r: Reader) -> tuple[int, ...]:
    """``section-part = nz-number *("." nz-number)``; stops before ``.TEXT`` etc."""
    part = [parse_nz_number(r)]
    while r.peek(1) == b"." and r.peek(2)[1:].isdigit():
        r.pos += 1
        part.append(parse_nz_number(r))
    return tuple(part)


def parse_header_fld_name(r: Reader) -> str:
    name = parse_astring(r)
    if not name.isascii():
        raise r.error("Header field names are ASCII")
    return name.decode("ascii").upper()


def parse_header_list(r: Reader) -> tuple[str, ...]:
    """``header-list = "(" header-fld-name *(SP header-fld-name) ")"``."""
    return tuple(_parenthesised(r, parse_header_fld_name, empty_ok=False))


def parse_section_text(r: Reader, *, mime_allowed: bool) -> c.Section:
    """``section-msgtext`` / ``section-text``, as a Section without a part."""
    text = r.name(_SECTION_TEXT, "a section text")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()
        return c.Section(text=text, fields=parse_header_list(r))
    if text in ("HEADER", "TEXT") or (mime_allowed and text == "MIME"):
        return c.Section(text=text)
    raise r.error(f"Unknown section text {text}")


def parse_section(r: Reader) -> c.Section:
    """``section = "[" [section-spec] "]"`` (RFC 9051 section 9)."""
    r.expect(b"[", "'['")
    section = c.Section()
    if r.peek().isdigit():
        part = parse_section_part(r)
        text = parse_section_text(r, mime_allowed=True) if r.accept(b".") else c.Section()
        section = c.Section(part=part, text=text.text, fields=text.fields)
    elif r.peek() != b"]":
        section = parse_section_text(r, mime_allowed=False)
    r.expect(b"]", "']'")
    return section


def parse_section_binary(r: Reader) -> c.Section:
    """``section-binary = "[" [section-part] "]"`` (RFC 3516 section 4.2)."""
    r.expect(b"[", "'['")
    part = () if r.peek() == b"]" else parse_section_part(r)
    r.expect(b"]", "']'")
    return c.Section(part=part)


def parse_partial(r: Reader) -> tuple[int, int] | None:
    """``partial = "<" number64 "." nz-number64 ">"``; None when absent."""
    if not r.accept(b"<"):
        return None
    offset = parse_number64(r)
    r.expect(b".", "'.' in partial")
    count = _parse_digits(r, maximum=MAX_NUMBER64, nonzero=True, what="a partial length")
    r.expect(b">", "'>'")
    return offset, count


def _parse_preview_modifier(r: Reader) -> str:
    return r.name(what="a PREVIEW modifier")


def parse_fetch_att(r: Reader) -> c.FetchAttribute:
    """``fetch-att`` (RFC 9051 section 9, RFC 3501 RFC822.*, RFC 3516 BINARY)."""
    name = r.name(_FETCH_NAME, "a fetch attribute")
    if name == "PREVIEW" and r.data[r.pos : r.pos + 6].upper() == b" (LAZY":
        r.sp()
        modifiers = _parenthesised(r, _parse_preview_modifier, empty_ok=False)
        if set(modifiers) != {"LAZY"}:
            raise r.error("Unknown PREVIEW modifier")  # RFC 8970 section 6: only LAZY
        return c.FetchAttribute(name, lazy=True)
    if name == "BODY" and r.peek() == b"[":
        return c.FetchAttribute("BODY[]", parse_section(r), parse_partial(r))
    if name in _SIMPLE_FETCH_ATTRIBUTES or name == "BODY":
        return c.FetchAttribute(name)
    if name == "BODY.PEEK":
        return c.FetchAttribute("BODY[]", parse_section(r), parse_partial(r), peek=True)
    if name in ("BINARY", "BINARY.PEEK"):
        section = parse_section_binary(r)
        return c.FetchAttribute("BINARY", section, parse_partial(r), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return c.FetchAttribute("BINARY.SIZE", parse_section_binary(r))
    raise r.error(f"Unknown fetch attribute {name}")


def parse_fetch_atts(r: Reader) -> tuple[c.FetchAttribute, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if r.peek() == b"(":
        return tuple(_parenthesised(r, parse_fetch_att, empty_ok=False))
    for macro, names in _FETCH_MACROS.items():
        if r.accept_keyword(macro):
            return tuple(c.FetchAttribute(name) for name in names)
    return (parse_fetch_att(r),)


def parse_fetch(r: Reader, *, uid: bool = False) -> c.Fetch:
    """``fetch`` with RFC 4466 fetch-modifiers: CHANGEDSINCE and VANISHED
    (RFC 7162 sections 3.1.4.1 and 3.2.6)."""
    r.sp()
    sequence = parse_sequence_set(r)
    r.sp()
    attributes = parse_fetch_atts(r)
    changed_since: int | None = None
    vanished = False
    if r.accept(b" "):
        for modifier in _parenthesised(r, _parse_fetch_modifier, empty_ok=False):
            if isinstance(modifier, int):
                changed_since = modifier
            else:
                vanished = True
    if vanished and not (uid and changed_since is not None):
        # RFC 7162 section 3.2.6: only UID FETCH, and only with CHANGEDSINCE.
        raise r.error("VANISHED requires UID FETCH with CHANGEDSINCE")
    if uid and not any(attribute.name == "UID" for attribute in attributes):
        attributes += (c.FetchAttribute("UID"),)  # RFC 9051 section 6.4.9
    return c.Fetch(r.command_tag, sequence, attributes, uid, changed_since, vanished)


def _parse_fetch_modifier(r: Reader) -> int | str:
    name = r.name()
    if name == "CHANGEDSINCE":
        r.sp()
        return parse_mod_sequence_value(r)
    if name == "VANISHED":
        return name
    raise r.error(f"Unknown FETCH modifier {name}")


# --------------------------------------------------------------------------- search


def _search_string(r: Reader) -> str:
    return _text(parse_astring(r))


def _search_keyword(r: Reader) -> str:
    """``flag-keyword`` for KEYWORD / UNKEYWORD: an atom, never a system flag."""
    return parse_atom(r).decode("ascii")


def _search_header(r: Reader) -> tuple[str, str]:
    name = _text(parse_astring(r)).upper()
    r.sp()
    return name, _search_string(r)


def _search_modseq(r: Reader) -> int:
    """``search-modsequence`` (RFC 7162 section 3.1.5); the optional entry name
    and type are checked and dropped: this server keeps one modseq per message."""
    if r.peek() == b'"':
        if not parse_quoted(r).startswith(b"/flags/"):
            raise r.error("MODSEQ entry name must be /flags/<flag>")
        r.sp()
        if r.name() not in ("PRIV", "SHARED", "ALL"):
            raise r.error("MODSEQ entry type must be priv, shared or all")
        r.sp()
    return parse_mod_sequence_valzer(r)


def _search_not(r: Reader) -> c.SearchKey:
    with r.nested():
        return parse_search_key(r)


def _search_or(r: Reader) -> tuple[c.SearchKey, c.SearchKey]:
    with r.nested():
        first = parse_search_key(r)
        r.sp()
        return first, parse_search_key(r)


_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")


def parse_objectid(r: Reader) -> str:
    """``objectid = 1*255(ALPHA / DIGIT / "_" / "-")`` (RFC 8474 section 7)."""
    objectid = r.take(_OBJECTID, "an object id").group()
    if r.peek() not in (b"", b" ", b")"):
        raise r.error("Invalid object id")
    return objectid.decode("ascii")


# Keys that take no argument map to None; the others to the parser of the argument
# that follows SP (RFC 9051 / RFC 3501 section 6.4.4, RFC 7162, RFC 5032).
_SEARCH_KEYS: dict[str, Callable[[Reader], object] | None] = {
    **dict.fromkeys(
        (
            "ALL",
            "ANSWERED",
            "DELETED",
            "DRAFT",
            "FLAGGED",
            "NEW",
            "OLD",
            "RECENT",
            "SEEN",
            "UNANSWERED",
            "UNDELETED",
            "UNDRAFT",
            "UNFLAGGED",
            "UNSEEN",
        )
    ),
    **dict.fromkeys(("BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"), _search_string),
    **dict.fromkeys(("KEYWORD", "UNKEYWORD"), _search_keyword),
    **dict.fromkeys(("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"), parse_date),
    **dict.fromkeys(("LARGER", "SMALLER"), parse_number64),
    **dict.fromkeys(("OLDER", "YOUNGER"), parse_nz_number),
    "HEADER": _search_header,
    "MODSEQ": _search_modseq,
    "SAVEDATESUPPORTED": None,  # RFC 8514 section 4.3
    **dict.fromkeys(("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"), parse_date),
    **dict.fromkeys(("EMAILID", "THREADID"), parse_objectid),  # RFC 8474 section 6
    "UID": parse_sequence_set,
    "NOT": _search_not,
    "OR": _search_or,
}


def parse_search_key(r: Reader) -> c.SearchKey:
    """``search-key`` (RFC 9051 section 9, plus the RFC 3501 keys NEW, OLD, RECENT)."""
    head = r.peek()
    if head == b"(":
        return c.SearchKey("AND", tuple(_parenthesised(r, parse_search_key, empty_ok=False)))
    if head.isdigit() or head in (b"*", b"$"):
        return c.SearchKey("SEQSET", parse_sequence_set(r))
    name = r.name(what="a search key")
    if name not in _SEARCH_KEYS:
        raise r.error(f"Unknown search key {name}")
    argument = _SEARCH_KEYS[name]
    return c.SearchKey(name, None if argument is None else _space_then(r, argument))


def parse_search_return_opts(r: Reader) -> tuple[str, ...]:
    """``"RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"`` (RFC 4731,
    SAVE of RFC 5182); options this server does not know are refused."""
    r.sp()
    options = tuple(_parenthesised(r, _parse_search_return_opt, empty_ok=True))
    r.sp()
    return options


def _parse_search_return_opt(r: Reader) -> str:
    option = r.name()
    if option not in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
        raise r.error(f"Unknown search return option {option}")
    return option


def parse_charset(r: Reader) -> str:
    """``charset = atom / quoted``; only UTF-8 and US-ASCII are supported, others
    get ``NO [BADCHARSET (UTF-8 US-ASCII)]`` (RFC 9051 section 6.4.4)."""
    raw = parse_quoted(r) if r.peek() == b'"' else parse_atom(r)
    charset = _text(raw).upper()
    if charset not in _ACCEPTED_CHARSETS:
        raise r.error(f"Unsupported charset {charset}", code=_BADCHARSET, status="NO")
    return charset


def parse_search(r: Reader, *, uid: bool = False) -> c.Search:
    """``search = "SEARCH" [search-return-opts] SP search-program``.

    The keys of the program are returned as one AND key.
    """
    r.sp()
    return_options = parse_search_return_opts(r) if r.accept_keyword("RETURN") else None
    charset: str | None = None
    if r.accept_keyword("CHARSET"):
        r.sp()
        charset = parse_charset(r)
        r.sp()
    keys = [parse_search_key(r)]
    while r.accept(b" "):
        keys.append(parse_search_key(r))
    return c.Search(r.command_tag, c.SearchKey("AND", tuple(keys)), uid, charset, return_options)


# --------------------------------------------------------------------------- store / copy


def _parse_store_modifier(r: Reader) -> int:
    if r.name() != "UNCHANGEDSINCE":
        raise r.error("Unknown STORE modifier")
    r.sp()
    return parse_mod_sequence_valzer(r)


def parse_store(r: Reader, *, uid: bool = False) -> c.Store:
    """``store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags``
    (RFC 9051 section 6.4.6, UNCHANGEDSINCE of RFC 7162 section 3.1.3)."""
    r.sp()
    sequence = parse_sequence_set(r)
    r.sp()
    unchanged_since: int | None = None
    if r.peek() == b"(":
        modifiers = _parenthesised(r, _parse_store_modifier, empty_ok=False)
        if len(modifiers) > 1:
            raise r.error("Only one UNCHANGEDSINCE is allowed")  # RFC 7162 section 7
        unchanged_since = modifiers[0]
        r.sp()
    match = r.take(_STORE_ATT, "FLAGS, +FLAGS or -FLAGS")
    mode = match.group(1).decode("ascii")
    r.sp()
    if r.peek() == b"(":
        flags = parse_flag_list(r)
    else:
        flags = (parse_flag(r),)
        while r.accept(b" "):
            flags += (parse_flag(r),)
    return c.Store(
        r.command_tag,
        sequence,
        mode,  # type: ignore[arg-type]  # the regex admits only "+", "-" or ""
        flags,
        silent=match.group(2) is not None,
        uid=uid,
        unchanged_since=unchanged_since,
    )


def parse_copy(r: Reader, *, uid: bool = False) -> c.Copy:
    r.sp()
    sequence = parse_sequence_set(r)
    r.sp()
    return c.Copy(r.command_tag, sequence, parse_mailbox(r), uid)


def parse_move(r: Reader, *, uid: bool = False) -> c.Move:
    """``move = "MOVE" SP sequence-set SP mailbox`` (RFC 6851)."""
    r.sp()
    sequence = parse_sequence_set(r)
    r.sp()
    return c.Move(r.command_tag, sequence, parse_mailbox(r), uid)


def parse_uid_expunge(r: Reader) -> c.Expunge:
    """``uid-expunge = "EXPUNGE" SP sequence-set`` (RFC 4315 section 2.1)."""
    r.sp()
    return c.Expunge(r.command_tag, parse_sequence_set(r))


# --------------------------------------------------------------------------- sort / thread

_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


def parse_sort_criterion(r: Reader) -> c.SortCriterion:
    """``sort-criterion = ["REVERSE" SP] sort-key`` (RFC 5256 section 5, RFC 5957)."""
    reverse = r.accept_keyword("REVERSE")
    if reverse:
        r.sp()
    key = r.name(what="a sort key")
    if key not in _SORT_KEYS:
        raise r.error(f"Unknown sort key {key}")
    return c.SortCriterion(key, reverse)


def _parse_search_program(r: Reader) -> c.SearchKey:
    keys = [_space_then(r, parse_search_key)]
    while r.accept(b" "):
        keys.append(parse_search_key(r))
    return c.SearchKey("AND", tuple(keys))


def parse_sort(r: Reader, *, uid: bool = False) -> c.Sort:
    """``sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria`` where the
    criteria start with the mandatory charset (RFC 5256 section 5)."""
    r.sp()
    criteria = tuple(_parenthesised(r, parse_sort_criterion, empty_ok=False))
    r.sp()
    charset = parse_charset(r)
    return c.Sort(r.command_tag, criteria, charset, _parse_search_program(r), uid)


def parse_thread(r: Reader, *, uid: bool = False) -> c.Thread:
    """``thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria``."""
    r.sp()
    algorithm = parse_atom(r).decode("ascii").upper()
    if algorithm not in _THREAD_ALGORITHMS:
        raise r.error(f"Unknown threading algorithm {algorithm}")
    r.sp()
    charset = parse_charset(r)
    return c.Thread(r.command_tag, algorithm, charset, _parse_search_program(r), uid)


# --------------------------------------------------------------------------- quota


def parse_getquota(r: Reader) -> c.GetQuota:
    """``getquota = "GETQUOTA" SP quota-root-name`` (RFC 9208 section 7)."""
    r.sp()
    return c.GetQuota(r.command_tag, parse_astring(r))


def parse_getquotaroot(r: Reader) -> c.GetQuotaRoot:
    """``getquotaroot = "GETQUOTAROOT" SP mailbox``."""
    r.sp()
    return c.GetQuotaRoot(r.command_tag, parse_mailbox(r))


def _parse_setquota_resource(r: Reader) -> tuple[str, int]:
    """``setquota-resource = resource-name SP resource-limit``."""
    name = parse_atom(r).decode("ascii").upper()
    r.sp()
    return name, parse_number64(r)


def parse_setquota(r: Reader) -> c.SetQuota:
    """``setquota = "SETQUOTA" SP quota-root-name SP setquota-list``."""
    r.sp()
    root = parse_astring(r)
    r.sp()
    limits = tuple(_parenthesised(r, _parse_setquota_resource, empty_ok=True))
    if len({name for name, _ in limits}) != len(limits):
        raise r.error("A resource is named twice")
    return c.SetQuota(r.command_tag, root, limits)


_UID_COMMAND_PARSERS: dict[str, Callable[[Reader], c.Command]] = {
    "FETCH": partial(parse_fetch, uid=True),
    "STORE": partial(parse_store, uid=True),
    "COPY": partial(parse_copy, uid=True),
    "MOVE": partial(parse_move, uid=True),
    "SEARCH": partial(parse_search, uid=True),
    "EXPUNGE": parse_uid_expunge,
    "SORT": partial(parse_sort, uid=True),
    "THREAD": partial(parse_thread, uid=True),
}


def parse_uid(r: Reader) -> c.Command:
    """``uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)``."""
    r.sp()
    name = r.name(what="a UID command")
    if name not in _UID_COMMAND_PARSERS:
        raise r.error(f"Unknown UID command {name}")
    return _UID_COMMAND_PARSERS[name](r)


# --------------------------------------------------------------------------- mailboxes


QresyncParameter = tuple[int, int, c.SequenceSet | None, tuple[c.SequenceSet, c.SequenceSet] | None]


def _parse_select_param(r: Reader) -> tuple[str, QresyncParameter | None]:
    """``select-param``: CONDSTORE or QRESYNC (RFC 7162 sections 3.1.8, 3.2.5)."""
    name = r.name(what="a SELECT parameter")
    if name == "CONDSTORE":
        return name, None
    if name != "QRESYNC":
        raise r.error(f"Unknown SELECT parameter {name}")
    r.sp()
    r.expect(b"(", "'('")
    uidvalidity = parse_nz_number(r)
    r.sp()
    modseq = parse_mod_sequence_value(r)
    known_uids: c.SequenceSet | None = None
    match_data: tuple[c.SequenceSet, c.SequenceSet] | None = None
    more = r.accept(b" ")
    if more and r.peek() != b"(":
        known_uids = _parse_known_set(r)
        more = r.accept(b" ")
    if more:
        match_data = parse_seq_match_data(r)
    r.expect(b")", "')'")
    return name, (uidvalidity, modseq, known_uids, match_data)


def parse_seq_match_data(r: Reader) -> tuple[c.SequenceSet, c.SequenceSet]:
    """``seq-match-data = "(" known-sequence-set SP known-uid-set ")"``."""
    r.expect(b"(", "'('")
    known_sequence = _parse_known_set(r)
    r.sp()
    known_uids = _parse_known_set(r)
    r.expect(b")", "')'")
    return known_sequence, known_uids


def parse_select(r: Reader, *, readonly: bool = False) -> c.Select:
    """``select`` / ``examine`` with RFC 4466 select-params."""
    r.sp()
    mailbox = parse_mailbox(r)
    params: dict[str, QresyncParameter | None] = {}
    if r.accept(b" "):
        params = dict(_parenthesised(r, _parse_select_param, empty_ok=False))
    return c.Select(
        r.command_tag,
        mailbox,
        readonly=readonly,
        condstore="CONDSTORE" in params,
        qresync=params.get("QRESYNC"),
    )


def _parse_use_attr(r: Reader) -> str:
    r.expect(b"\\", "a special-use attribute")
    return "\\" + parse_atom(r).decode("ascii")


def _parse_create_param(r: Reader) -> tuple[str, ...]:
    """``create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"`` (RFC 6154 6)."""
    if r.name(what="a CREATE parameter") != "USE":
        raise r.error("Unknown CREATE parameter")
    r.sp()
    return tuple(_parenthesised(r, _parse_use_attr, empty_ok=True))


def parse_create(r: Reader) -> c.Create:
    r.sp()
    mailbox = parse_mailbox(r)
    special_use: tuple[str, ...] = ()
    if r.accept(b" "):
        for attributes in _parenthesised(r, _parse_create_param, empty_ok=False):
            special_use += attributes
    return c.Create(r.command_tag, mailbox, special_use)


def parse_rename(r: Reader) -> c.Rename:
    r.sp()
    old = parse_mailbox(r)
    r.sp()
    return c.Rename(r.command_tag, old, parse_mailbox(r))


def _mailbox_command(
    command: Callable[[str, bytes], c.Command],
) -> Callable[[Reader], c.Command]:
    """Parser of ``NAME SP mailbox`` (DELETE, SUBSCRIBE, UNSUBSCRIBE)."""

    def parse(r: Reader) -> c.Command:
        r.sp()
        return command(r.command_tag, parse_mailbox(r))

    return parse


_STATUS_ATTS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "HIGHESTMODSEQ",  # RFC 7162
        "APPENDLIMIT",  # RFC 7889
        "MAILBOXID",  # RFC 8474
        "DELETED-STORAGE",  # RFC 9208
    }
)


def parse_status_att(r: Reader) -> str:
    name = r.name(_STATUS_ATT, "a status item")
    if name not in _STATUS_ATTS:
        raise r.error(f"Unknown status item {name}")
    return name


def _parse_status_att_list(r: Reader) -> tuple[str, ...]:
    return tuple(_parenthesised(r, parse_status_att, empty_ok=False))


def parse_status(r: Reader) -> c.Status:
    """``status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"``."""
    r.sp()
    mailbox = parse_mailbox(r)
    r.sp()
    return c.Status(r.command_tag, mailbox, _parse_status_att_list(r))


_LIST_SELECT_OPTS = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")


def _parse_list_select_opt(r: Reader) -> str:
    option = r.name(_LIST_OPTION_NAME, "a LIST selection option")
    if option not in _LIST_SELECT_OPTS:
        raise r.error(f"Unknown LIST selection option {option}")
    return option


def parse_list_select_opts(r: Reader) -> tuple[str, ...]:
    """``list-select-opts`` (RFC 5258 section 3.1; SPECIAL-USE of RFC 6154).
    RECURSIVEMATCH needs a base option (SUBSCRIBED / SPECIAL-USE) alongside."""
    options = tuple(dict.fromkeys(_parenthesised(r, _parse_list_select_opt, empty_ok=True)))
    if "RECURSIVEMATCH" in options and not {"SUBSCRIBED", "SPECIAL-USE"} & set(options):
        raise r.error("RECURSIVEMATCH needs another selection option")
    return options


def _parse_list_return_opt(r: Reader) -> tuple[str, tuple[str, ...]]:
    option = r.name(_LIST_OPTION_NAME, "a LIST return option")
    if option == "STATUS":  # RFC 5819 section 2
        r.sp()
        return option, _parse_status_att_list(r)
    if option not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
        raise r.error(f"Unknown LIST return option {option}")
    return option, ()


def parse_list(r: Reader) -> c.List:
    """``list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
    [SP list-return-opts]`` (RFC 9051 section 6.3.9, RFC 5258, RFC 5819)."""
    r.sp()
    select_options: tuple[str, ...] = ()
    extended = False
    if r.peek() == b"(":
        select_options = parse_list_select_opts(r)
        extended = True
        r.sp()
    reference = parse_mailbox(r)
    r.sp()
    if r.peek() == b"(":
        patterns = tuple(_parenthesised(r, parse_list_mailbox, empty_ok=False))
        extended = True
    else:
        patterns = (parse_list_mailbox(r),)
    return_options: dict[str, None] = {}
    status_items: tuple[str, ...] = ()
    if r.accept(b" "):
        if not r.accept_keyword("RETURN"):
            raise r.error("Expected RETURN")
        r.sp()
        extended = True
        for option, items in _parenthesised(r, _parse_list_return_opt, empty_ok=True):
            return_options[option] = None
            status_items += items
    return c.List(
        r.command_tag,
        reference,
        patterns,
        select_options,
        tuple(return_options),
        tuple(dict.fromkeys(status_items)),
        extended,
    )


def parse_lsub(r: Reader) -> c.Lsub:
    """``lsub = "LSUB" SP mailbox SP list-mailbox`` (RFC 3501 section 6.3.9)."""
    r.sp()
    reference = parse_mailbox(r)
    r.sp()
    return c.Lsub(r.command_tag, reference, parse_list_mailbox(r))


def _parse_append_message(r: Reader) -> c.AppendMessage:
    """``append-message = append-opts SP append-data`` (RFC 3502, RFC 4466) where
    append-data is a literal, a literal8 (RFC 3516) or ``UTF8 (literal8)``
    (RFC 6855 section 4)."""
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    if r.peek() == b"(":
        flags = parse_flag_list(r)
        r.sp()
    if r.peek() == b'"':
        internal_date = parse_date_time(r)
        r.sp()
    if r.accept_keyword("UTF8"):
        r.sp()
        r.expect(b"(", "'('")
        data, binary = parse_literal(r, binary_allowed=True)
        if not binary:
            raise r.error("UTF8 APPEND data must be a binary literal")
        r.expect(b")", "')'")
    else:
        data, binary = parse_literal(r, binary_allowed=True)
    return c.AppendMessage(data, flags, internal_date, binary)


def parse_append(r: Reader) -> c.Append:
    """``append = "APPEND" SP mailbox 1*append-message`` (MULTIAPPEND, RFC 3502)."""
    r.sp()
    mailbox = parse_mailbox(r)
    messages = [_space_then(r, _parse_append_message)]
    while not r.at_end():
        messages.append(_space_then(r, _parse_append_message))
    return c.Append(r.command_tag, mailbox, tuple(messages))


# --------------------------------------------------------------------------- others


def parse_authenticate(r: Reader) -> c.Authenticate:
    """``authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]``
    (RFC 9051 section 6.2.2, SASL-IR RFC 4959: ``=`` is an empty response)."""
    r.sp()
    mechanism = parse_atom(r).decode("ascii").upper()
    initial_response: bytes | None = None
    if r.accept(b" "):
        if r.accept(b"="):
            initial_response = b""
        else:
            encoded = r.take(_BASE64, "a base64 initial response").group()
            try:
                initial_response = base64.b64decode(encoded, validate=True)
            except binascii.Error as error:
                raise r.error("Invalid base64 initial response") from error
    return c.Authenticate(r.command_tag, mechanism, initial_response)


def parse_login(r: Reader) -> c.Login:
    """``login = "LOGIN" SP userid SP password``."""
    r.sp()
    username = parse_astring(r)
    r.sp()
    return c.Login(r.command_tag, username, parse_astring(r))


def parse_enable(r: Reader) -> c.Enable:
    """``enable = "ENABLE" 1*(SP capability)`` (RFC 5161, RFC 9051 section 6.3.1)."""
    capabilities = [_space_then(r, parse_atom)]
    while not r.at_end():
        capabilities.append(_space_then(r, parse_atom))
    return c.Enable(r.command_tag, tuple(name.decode("ascii").upper() for name in capabilities))


def _parse_id_param(r: Reader) -> tuple[str, str | None]:
    field = _text(parse_string(r))
    r.sp()
    value = parse_nstring(r)
    return field, None if value is None else _text(value)


def parse_id(r: Reader) -> c.Id:
    """``id = "ID" SP id-params-list`` (RFC 2971 section 4)."""
    r.sp()
    if r.accept_keyword("NIL"):
        return c.Id(r.command_tag)
    return c.Id(r.command_tag, tuple(_parenthesised(r, _parse_id_param, empty_ok=True)))


def parse_compress(r: Reader) -> c.Compress:
    """``compress = "COMPRESS" SP algorithm`` (RFC 4978 section 5); DEFLATE is the
    only algorithm defined."""
    r.sp()
    algorithm = r.name(what="a compression algorithm")
    if algorithm != "DEFLATE":
        raise r.error(f"Unknown compression algorithm {algorithm}")
    return c.Compress(r.command_tag, algorithm)


def _bare(command: Callable[[str], c.Command]) -> Callable[[Reader], c.Command]:
    """Parser of a command that takes no arguments."""
    return lambda r: command(r.command_tag)


COMMAND_PARSERS: dict[str, Callable[[Reader], c.Command]] = {
    "CAPABILITY": _bare(c.Capability),
    "NOOP": _bare(c.Noop),
    "LOGOUT": _bare(c.Logout),
    "STARTTLS": _bare(c.StartTLS),
    "AUTHENTICATE": parse_authenticate,
    "LOGIN": parse_login,
    "ENABLE": parse_enable,
    "SELECT": parse_select,
    "EXAMINE": partial(parse_select, readonly=True),
    "CREATE": parse_create,
    "DELETE": _mailbox_command(c.Delete),
    "RENAME": parse_rename,
    "SUBSCRIBE": _mailbox_command(c.Subscribe),
    "UNSUBSCRIBE": _mailbox_command(c.Unsubscribe),
    "LIST": parse_list,
    "LSUB": parse_lsub,
    "NAMESPACE": _bare(c.Namespace),
    "STATUS": parse_status,
    "APPEND": parse_append,
    "IDLE": _bare(c.Idle),
    "CHECK": _bare(c.Check),
    "CLOSE": _bare(c.Close),
    "UNSELECT": _bare(c.Unselect),
    "EXPUNGE": _bare(c.Expunge),
    "SEARCH": parse_search,
    "FETCH": parse_fetch,
    "STORE": parse_store,
    "COPY": parse_copy,
    "MOVE": parse_move,
    "UID": parse_uid,
    "ID": parse_id,
    "COMPRESS": parse_compress,
    "GETQUOTA": parse_getquota,
    "GETQUOTAROOT": parse_getquotaroot,
    "SETQUOTA": parse_setquota,
    "SORT": parse_sort,
    "THREAD": parse_thread,
}


def parse_command(raw: bytes, *, utf8: bool = False, max_nesting: int = 32) -> c.Command:
    """Parse one framed command (``command`` of RFC 9051 section 9, no final CRLF).

    *utf8* admits UTF-8 in quoted strings (after ENABLE UTF8=ACCEPT / IMAP4rev2).
    Raises ProtocolError; its ``tag`` is set once the tag was read.
    """
    r = Reader(raw, utf8=utf8, max_nesting=max_nesting)
    if not raw:
        raise r.error("Empty command line")
    parse_tag(r)
    r.sp()
    name = r.name(what="a command name")
    if name not in COMMAND_PARSERS:
        raise r.error(f"Unknown command {name}")
    command = COMMAND_PARSERS[name](r)
    r.finish()
    return command
