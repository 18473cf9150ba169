"""A deterministic, realistic mail corpus with planted words whose searches have
known answers.

Message *i* (0-based; it becomes UID i + 1 when appended in order) is generated
from its own seeded random stream, so any message can be regenerated on its own:
the benchmark never holds a 100,000-message corpus in memory, and verifies
downloaded bodies by regenerating them.

The mix: about 64% short plain-text messages, 30% multipart/alternative with an
HTML part, 5% with a medium attachment (16-64 KB) and 0.5% with a large one
(256-768 KB).  Headers carry encoded words (RFC 2047) in subjects and names,
threads (Message-ID, In-Reply-To, References) and dates spread over ten years.

Every planted needle is checked at import to occur nowhere in the filler text, so
the expected answer of each search is exactly the messages it was planted in.
"""

from __future__ import annotations

import base64
import datetime
import quopri
import random
from collections.abc import Callable
from dataclasses import dataclass


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_DATE = datetime.datetime(2015, 1, 1, 12, 0, tzinfo=datetime.UTC)
SPAN_DAYS = 3650  # dates over ten years, in message order like a real mailbox

WORDS = _words(
    "the project team meeting agenda notes schedule review update deadline client "
    "proposal draft final version attached please find below thanks regards best morning "
    "afternoon tomorrow week month quarter office travel flight hotel lunch dinner call "
    "phone number address change request approval manager director design product release "
    "feature bug fix test build deploy server network backup storage license contract "
    "payment account balance order shipment delivery customer support ticket issue "
    "question answer idea plan goal result summary presentation slides document "
    "spreadsheet photo picture family weekend holiday birthday party garden kitchen music "
    "concert ticket train station airport city river mountain lake walk bike coffee tea "
    "book chapter article news weather"
)
FIRST_NAMES = _words(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy "
    "Rupert Sybil Trent Victor Walter Xavier Yolanda Zoe Amélie Søren José Zoë Łukasz"
)
LAST_NAMES = _words(
    "Smith Jones Brown Taylor Wilson Davies Evans Thomas Johnson Roberts Walker Wright "
    "Müller Dubois García Novák Ødegaard Kowalski Rossi Silva"
)
DOMAINS = ("example.com", "example.net", "mail.example.org", "corp.example")
SUBJECTS = (
    "Project update",
    "Meeting notes",
    "Lunch tomorrow?",
    "Draft proposal attached",
    "Travel plans",
    "Invoice question",
    "Release schedule",
    "Weekend photos",
    "Réunion d'équipe",
    "Überprüfung der Unterlagen",
    "Ideas for the garden",
    "Server backup failed",
)

# The planted needles and the messages that carry them.  Each rule is a predicate on
# the message index, so expected answers are computed without parsing anything.
RARE_BODY_WORD = "xylophonist"  # SEARCH BODY: a rare word
COMMON_TEXT_WORD = "harborview"  # SEARCH TEXT: in one message of three
NON_ASCII_BODY_WORD = "Überraschungsparty"  # planted capitalised, searched lowercase
SUBJECT_PHRASE = "Quarterly forecast"
FROM_NAME, FROM_ADDRESS = "Ophelia Wintergreen", "ophelia.wintergreen@lakeside.example"


def has_rare_word(i: int) -> bool:
    return i % 1009 == 17


def has_common_word(i: int) -> bool:
    return i % 3 == 0


def has_non_ascii_word(i: int) -> bool:
    return i % 211 == 5


def has_subject_phrase(i: int) -> bool:
    return i % 97 == 3


def is_from_ophelia(i: int) -> bool:
    return i % 53 == 11


def is_seen(i: int) -> bool:
    return i % 4 != 0


def internal_date(i: int, count: int) -> datetime.datetime:
    """Dates rise with the index over ten years, at noon UTC so that SEARCH's
    date-only comparisons (RFC 9051 section 6.4.4) are unambiguous."""
    day = (i * SPAN_DAYS) // max(count, 1)
    return FIRST_DATE + datetime.timedelta(days=day)


@dataclass(frozen=True)
class PlantedSearch:
    """One SEARCH with its criteria (after ``UID SEARCH``) and the expected match."""

    name: str
    criteria: bytes
    matches: Callable[[int], bool]


def planted_searches(count: int) -> list[PlantedSearch]:
    """The SEARCH scenarios of the benchmark, each with a known answer."""
    middle = internal_date(count // 2, count).date()
    month_later = middle + datetime.timedelta(days=31)

    def in_month(i: int) -> bool:
        return middle <= internal_date(i, count).date() < month_later

    needle = NON_ASCII_BODY_WORD[:13].lower().encode()
    return [
        PlantedSearch("subject", b'SUBJECT "quarterly forecast"', has_subject_phrase),
        PlantedSearch("from", b'FROM "wintergreen"', is_from_ophelia),
        PlantedSearch("body rare word", f"BODY {RARE_BODY_WORD}".encode(), has_rare_word),
        PlantedSearch(
            "body non-ASCII",
            b"CHARSET UTF-8 BODY {%d+}\r\n%s" % (len(needle), needle),
            has_non_ascii_word,
        ),
        PlantedSearch("text common word", f"TEXT {COMMON_TEXT_WORD}".encode(), has_common_word),
        PlantedSearch(
            "date range",
            f"SINCE {_imap_date(middle)} BEFORE {_imap_date(month_later)}".encode(),
            in_month,
        ),
        PlantedSearch("unseen", b"UNSEEN", lambda i: not is_seen(i)),
        PlantedSearch(
            "OR/NOT combined",
            b'OR SUBJECT "quarterly forecast" FROM "wintergreen" NOT UNSEEN',
            lambda i: (has_subject_phrase(i) or is_from_ophelia(i)) and is_seen(i),
        ),
    ]


def _imap_date(day: datetime.date) -> str:
    return f"{day.day}-{day.strftime('%b')}-{day.year}"


# --------------------------------------------------------------------------- generation


def message_id(i: int, seed: int) -> str:
    return f"<{i}.{seed}.bench@mailhaven.example>"


def thread_start(i: int) -> int:
    """Messages come in threads of one to five: the first index of i's thread."""
    return i - (i * 7919 % 5 if i * 7919 % 5 <= i else 0)


def generate(i: int, count: int, seed: int) -> bytes:
    """The raw message *i* (CRLF line endings, as IMAP stores and returns it)."""
    rng = random.Random(seed * 1_000_003 + i)
    sender_name, sender_address = _person(rng)
    if is_from_ophelia(i):
        sender_name, sender_address = FROM_NAME, FROM_ADDRESS
    recipients = [_person(rng) for _ in range(rng.randint(1, 3))]
    first = thread_start(i)
    subject = SUBJECTS[(seed + first) % len(SUBJECTS)]
    if i != first:
        subject = "Re: " + subject
    if has_subject_phrase(i):
        subject = f"{SUBJECT_PHRASE} {i}"
    headers = [
        f"Return-Path: <{sender_address}>",
        f"Received: from mx{rng.randint(1, 9)}.example.net (mx.example.net [192.0.2.{i % 250 + 1}])"
        f"\r\n\tby mail.mailhaven.example with ESMTPS id {rng.getrandbits(48):012x};"
        f"\r\n\t{_rfc5322_date(internal_date(i, count))}",
        f"Date: {_rfc5322_date(internal_date(i, count), rng)}",
        f"From: {_address(sender_name, sender_address)}",
        "To: " + ", ".join(_address(name, address) for name, address in recipients),
        f"Subject: {_encoded_header(subject, encode=i % 5 == 0)}",
        f"Message-ID: {message_id(i, seed)}",
    ]
    if i != first:
        references = " ".join(message_id(j, seed) for j in range(first, i))
        headers += [f"In-Reply-To: {message_id(i - 1, seed)}", f"References: {references}"]
    if rng.random() < 0.2:
        headers.append("List-Id: Team discussion <team.lists.example.com>")
    headers += ["X-Mailer: imapbench corpus", "MIME-Version: 1.0"]
    text = _body_text(i, rng)
    kind = rng.random()
    if kind < 0.005:
        body_headers, body = _with_attachment(i, rng, text, rng.randint(256, 768) * 1024)
    elif kind < 0.055:
        body_headers, body = _with_attachment(i, rng, text, rng.randint(16, 64) * 1024)
    elif kind < 0.355:
        body_headers, body = _alternative(i, text)
    else:
        body_headers, body = _plain_part(text)
    return ("\r\n".join(headers + body_headers) + "\r\n\r\n").encode() + body


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{first}.{last}".lower().encode("ascii", "ignore").decode()
    return f"{first} {last}", f"{local}@{rng.choice(DOMAINS)}"


def _address(name: str, address: str) -> str:
    return f"{_encoded_header(name, encode=not name.isascii())} <{address}>"


def _encoded_header(text: str, *, encode: bool) -> str:
    """Non-ASCII (and, when *encode*, any) text as one RFC 2047 B encoded word."""
    if not encode and text.isascii():
        return text
    return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="


def _rfc5322_date(moment: datetime.datetime, rng: random.Random | None = None) -> str:
    """The sender's local time in a zone of its own (the Date header) or UTC."""
    zone_hours = rng.choice((-8, -5, 0, 1, 2, 9)) if rng else 0
    local = moment.astimezone(datetime.timezone(datetime.timedelta(hours=zone_hours)))
    return local.strftime("%a, %d %b %Y %H:%M:%S %z")


def _body_text(i: int, rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(30, 400))]
    if has_rare_word(i):
        words.insert(rng.randrange(len(words)), RARE_BODY_WORD)
    if has_common_word(i):
        words.insert(rng.randrange(len(words)), COMMON_TEXT_WORD)
    if has_non_ascii_word(i):
        words.insert(rng.randrange(len(words)), NON_ASCII_BODY_WORD)
    lines, line = [], ""
    for word in words:
        if len(line) + len(word) > 70:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _plain_part(text: str) -> tuple[list[str], bytes]:
    if text.isascii():
        return ["Content-Type: text/plain; charset=us-ascii"], text.encode()
    return [
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ], _quoted_printable(text)


def _quoted_printable(text: str) -> bytes:
    return quopri.encodestring(text.replace("\r\n", "\n").encode()).replace(b"\n", b"\r\n")


def _alternative(i: int, text: str) -> tuple[list[str], bytes]:
    boundary = f"=_alt_{i}"
    paragraphs = "".join(f"<p>{line}</p>\r\n" for line in text.split("\r\n") if line)
    html = f"<html><body>\r\n{paragraphs}</body></html>\r\n"
    parts = [
        _part(*_plain_part(text)),
        _part(
            [
                "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
            ],
            _quoted_printable(html),
        ),
    ]
    return [f'Content-Type: multipart/alternative; boundary="{boundary}"'], _multipart(
        boundary, parts
    )


def _with_attachment(i: int, rng: random.Random, text: str, size: int) -> tuple[list[str], bytes]:
    boundary = f"=_mixed_{i}"
    data = base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n")
    name = f"report-{i}.pdf" if i % 2 else f"Übersicht-{i}.pdf"
    attachment = _part(
        [
            f'Content-Type: application/pdf; name="{_encoded_header(name, encode=False)}"',
            "Content-Transfer-Encoding: base64",
            f"Content-Disposition: attachment; filename*=UTF-8''{_percent(name)}",
        ],
        data,
    )
    return [f'Content-Type: multipart/mixed; boundary="{boundary}"'], _multipart(
        boundary, [_part(*_plain_part(text)), attachment]
    )


def _percent(name: str) -> str:
    """RFC 2231 extended value."""
    return "".join(
        chr(b) if chr(b).isalnum() or chr(b) in ".-" else f"%{b:02X}" for b in name.encode()
    )


def _part(headers: list[str], body: bytes) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    delimiter = f"--{boundary}\r\n".encode()
    closing = f"--{boundary}--\r\n".encode()
    body = b"This is a multi-part message in MIME format.\r\n\r\n"
    for part in parts:
        body += delimiter + part
        if not part.endswith(b"\r\n"):
            body += b"\r\n"
    return body + closing


def _check_needles() -> None:
    filler = " ".join(WORDS + FIRST_NAMES + LAST_NAMES + DOMAINS + SUBJECTS).casefold()
    for needle in (RARE_BODY_WORD, COMMON_TEXT_WORD, NON_ASCII_BODY_WORD, "wintergreen"):
        assert needle.casefold() not in filler, needle
    assert SUBJECT_PHRASE.casefold() not in filler


_check_needles()
