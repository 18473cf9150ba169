"""Maildir, Maildir++ and Dovecot Maildir: reading and writing.

Layout (Maildir: cr.yp.to/proto/maildir.html; Maildir++: the Courier convention):
the root's ``cur``/``new``/``tmp`` hold INBOX and each ``.Name.Sub`` directory one
folder, "." being the hierarchy separator and names modified UTF-7 (RFC 3501
section 5.1.3), as Dovecot writes them.  A file name ends in ``:2,`` and flag
letters: ``D`` draft, ``F`` flagged, ``R`` replied, ``S`` seen, ``T`` trashed; Dovecot
adds ``a``-``z`` for the keywords listed in ``dovecot-keywords``.  Dovecot's
``dovecot-uidlist`` gives the folder's UIDVALIDITY, next UID and each file's UID,
which an import keeps so clients do not download everything again.  The file's
modification time is the message's INTERNALDATE.
"""

from __future__ import annotations

import datetime
import itertools
import os
import socket
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailhaven.codec.mailbox_names import decode_mutf7, encode_mutf7
from mailhaven.mailflow.messages import to_crlf, to_lf
from mailhaven.mailflow.source import Skipped, SourceFolder, SourceMessage

INBOX = "INBOX"
INFO_SEPARATOR = ":2,"
FLAG_LETTERS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
KEYWORD_LETTERS = string.ascii_lowercase
UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


# ---------------------------------------------------------------------- reading


def read_maildir(root: Path) -> list[SourceFolder]:
    """INBOX from *root* and every Maildir++ folder below it, superiors first."""
    folders = [_read_folder(INBOX, root)]
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") and child.name not in (".", "..") and is_maildir(child):
            folders.append(_read_folder(_folder_name(child.name), child))
    return folders


def _folder_name(directory: str) -> str:
    parts = directory[1:].split(".")
    name = "/".join(decode_mutf7(part.encode("ascii", "replace")) for part in parts)
    return INBOX + name[5:] if name.upper().startswith("INBOX/") else name


@dataclass(frozen=True, slots=True)
class _UidList:
    uidvalidity: int | None
    uidnext: int | None
    uids: dict[str, int]  # file base name (before ":2,") -> UID


def _read_uidlist(directory: Path) -> _UidList:
    """dovecot-uidlist versions 1 and 3 (Dovecot's maildir-uidlist.c)."""
    path = directory / UIDLIST
    if not path.is_file():
        return _UidList(None, None, {})
    lines = path.read_text("utf-8", "replace").splitlines()
    if not lines:
        return _UidList(None, None, {})
    header = lines[0].split()
    uidvalidity = uidnext = None
    if header[0] == "1" and len(header) >= 3:
        uidvalidity, uidnext = int(header[1]), int(header[2])
    else:
        fields = {item[0]: item[1:] for item in header[1:] if item}
        uidvalidity = int(fields["V"]) if fields.get("V", "").isdigit() else None
        uidnext = int(fields["N"]) if fields.get("N", "").isdigit() else None
    uids: dict[str, int] = {}
    for line in lines[1:]:
        uid_text, _, rest = line.partition(" ")
        if not uid_text.isdigit():
            continue
        # v3: "<uid> [<ext fields>] :<file name>"; v1: "<uid> <file name>".
        name = rest.rpartition(" :")[2] if " :" in f" {rest}" else rest.strip()
        name = name.removeprefix(":")
        uids[name.split(INFO_SEPARATOR)[0]] = int(uid_text)
    return _UidList(uidvalidity, uidnext, uids)


def _read_keywords(directory: Path) -> dict[str, str]:
    """Letter -> keyword from dovecot-keywords ("<index> <keyword>" lines)."""
    path = directory / KEYWORDS
    if not path.is_file():
        return {}
    keywords = {}
    for line in path.read_text("utf-8", "replace").splitlines():
        index, _, keyword = line.partition(" ")
        if index.isdigit() and int(index) < len(KEYWORD_LETTERS) and keyword:
            keywords[KEYWORD_LETTERS[int(index)]] = keyword
    return keywords


def _read_folder(name: str, directory: Path) -> SourceFolder:
    uidlist = _read_uidlist(directory)
    keywords = _read_keywords(directory)
    entries = [path for sub in ("new", "cur") for path in (directory / sub).iterdir()]
    entries = [path for path in entries if not path.name.startswith(".")]

    def order(path: Path) -> tuple[int, str]:
        base = path.name.split(INFO_SEPARATOR)[0]
        return uidlist.uids.get(base, 1 << 62), path.name

    entries.sort(key=order)
    folder = SourceFolder(name, [], uidlist.uidvalidity, uidlist.uidnext)
    folder.messages = _messages(entries, uidlist, keywords)
    return folder


def _messages(
    entries: list[Path], uidlist: _UidList, keywords: dict[str, str]
) -> Iterator[SourceMessage | Skipped]:
    for path in entries:
        base, _, info = path.name.partition(INFO_SEPARATOR)
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except OSError as error:
            yield Skipped(str(path), f"cannot read: {error.strerror}")
            continue
        flags = {FLAG_LETTERS[letter] for letter in info if letter in FLAG_LETTERS}
        flags |= {keywords[letter] for letter in info if letter in keywords}
        unknown = {letter for letter in info if letter.islower() and letter not in keywords}
        flags |= {f"$maildir_{letter}" for letter in unknown}  # keep what cannot be named
        yield SourceMessage(
            raw=to_crlf(data),
            flags=frozenset(flags),
            internal_date=datetime.datetime.fromtimestamp(int(mtime), datetime.UTC),
            uid=uidlist.uids.get(base),
            origin=str(path),
        )


# ---------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class ExportedMessage:
    raw: bytes
    flags: frozenset[str]
    internal_date: datetime.datetime
    uid: int


class MaildirWriter:
    """Writes one folder in Dovecot's Maildir++ layout, with dovecot-uidlist and
    dovecot-keywords so an import (here or in Dovecot) keeps UIDs and keywords."""

    _counter = itertools.count(1)

    def __init__(self, root: Path, name: str, uidvalidity: int, uidnext: int) -> None:
        self.directory = root if name == INBOX else root / folder_directory(name)
        for sub in ("cur", "new", "tmp"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._uidvalidity = uidvalidity
        self._uidnext = uidnext
        self._keywords: list[str] = []
        self._uid_lines: list[str] = []
        self._host = socket.gethostname().replace("/", "_").replace(":", "_") or "localhost"

    def write(self, message: ExportedMessage) -> list[str]:
        """Store one message; returns the keywords that had no letter left (Dovecot
        allows 26 per folder) so the caller can report them."""
        data = to_lf(message.raw)
        letters, lost = self._letters(message.flags)
        stamp = int(message.internal_date.timestamp())
        base = f"{stamp}.M{next(self._counter)}P{os.getpid()}.{self._host},S={len(data)}"
        temporary = self.directory / "tmp" / base
        temporary.write_bytes(data)
        os.utime(temporary, (stamp, stamp))
        temporary.rename(self.directory / "cur" / f"{base}{INFO_SEPARATOR}{letters}")
        self._uid_lines.append(f"{message.uid} :{base}")
        return lost

    def _letters(self, flags: Iterable[str]) -> tuple[str, list[str]]:
        letters = [letter for letter, flag in FLAG_LETTERS.items() if flag in flags]
        lost = []
        for keyword in sorted(flag for flag in flags if not flag.startswith("\\")):
            if keyword not in self._keywords and len(self._keywords) < len(KEYWORD_LETTERS):
                self._keywords.append(keyword)
            if keyword in self._keywords:
                letters.append(KEYWORD_LETTERS[self._keywords.index(keyword)])
            else:
                lost.append(keyword)
        # Maildir wants the letters in ASCII order.
        return "".join(sorted(letters)), lost

    def finish(self) -> None:
        header = f"3 V{self._uidvalidity} N{self._uidnext}"
        uidlist = "\n".join([header, *self._uid_lines]) + "\n"
        (self.directory / UIDLIST).write_text(uidlist, "utf-8")
        if self._keywords:
            lines = "".join(f"{index} {word}\n" for index, word in enumerate(self._keywords))
            (self.directory / KEYWORDS).write_text(lines, "utf-8")


def folder_directory(name: str) -> str:
    """ ".Name.Sub" for "Name/Sub"; a "." inside a level cannot be represented."""
    levels = name.split("/")
    if any("." in level for level in levels):
        raise ValueError(f"folder {name!r}: Maildir++ cannot hold a '.' in a folder name")
    return "." + ".".join(encode_mutf7(level).decode("ascii") for level in levels)
