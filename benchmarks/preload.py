"""``--preload``: the corpus written once as a Maildir that both servers take directly.

Loading 100,000 messages through APPEND takes minutes in Mailhaven and over an hour in
Dovecot's maildir (see docs/performance.md), so for the scenarios that only read a large
mailbox the corpus is written to disk once, in the Maildir++ layout Dovecot itself
writes, and given to each server the fastest way it accepts mail from disk: Dovecot
uses it as its ``mail_location`` (a hard-linked copy), Mailhaven imports it with
``mailhaven import`` (every message analysed and indexed, as at delivery).

The Maildir holds exactly what the APPEND scenario stores: message *i* with UID i + 1
(``dovecot-uidlist``), ``\\Seen`` when :func:`corpus.is_seen` says so (the ``S`` letter
after ``:2,``), and :func:`corpus.internal_date` as INTERNALDATE (the file's
modification time, which both servers read as the message's INTERNALDATE).  Files hold
LF line endings like every Maildir; both servers give them back with CRLF, the bytes
the corpus generates.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from benchmarks import corpus

UIDVALIDITY = 1_700_000_000  # any fixed value: both servers adopt the uidlist's
INFO_SEPARATOR = ":2,"
UIDLIST = "dovecot-uidlist"


@dataclass
class PreloadedCorpus:
    """A Maildir of the first *count* corpus messages, with what verification needs."""

    path: Path
    count: int
    sizes: list[int]  # of the CRLF message, as IMAP serves it
    checksums: list[int]  # CRC-32 of the CRLF message


def maildir_file_name(i: int, count: int, size: int, virtual_size: int) -> str:
    """Dovecot's maildir name: ``<time>.<unique>.<host>,S=<file size>,W=<CRLF size>``
    then the flags.  With S= and W= Dovecot knows both sizes without reading the
    file, as for a message it stored itself."""
    stamp = int(corpus.internal_date(i, count).timestamp())
    flags = "S" if corpus.is_seen(i) else ""
    return f"{stamp}.M{i}P0.imapbench,S={size},W={virtual_size}{INFO_SEPARATOR}{flags}"


def write_maildir(root: Path, count: int, seed: int) -> PreloadedCorpus:
    """Write corpus messages 0..count-1 to the Maildir *root* (INBOX)."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sizes, checksums, uid_lines = [], [], []
    for i in range(count):
        raw = corpus.generate(i, count, seed)
        data = raw.replace(b"\r\n", b"\n")
        name = maildir_file_name(i, count, len(data), len(raw))
        path = root / "cur" / name
        path.write_bytes(data)
        stamp = int(corpus.internal_date(i, count).timestamp())
        os.utime(path, (stamp, stamp))
        sizes.append(len(raw))
        checksums.append(zlib.crc32(raw))
        uid_lines.append(f"{i + 1} :{name.partition(INFO_SEPARATOR)[0]}\n")
    # Version 3 of Dovecot's uidlist: UIDVALIDITY, next UID, then "<uid> :<base name>".
    header = f"3 V{UIDVALIDITY} N{count + 1}\n"
    (root / UIDLIST).write_text(header + "".join(uid_lines), "ascii")
    return PreloadedCorpus(root, count, sizes, checksums)


def reuse_maildir(root: Path, count: int, seed: int) -> PreloadedCorpus:
    """The Maildir *root* written by an earlier run (``--preload --keep``), checked to
    hold *count* messages; sizes and checksums come from the generator again, so a
    Maildir of another seed fails verification rather than passing unnoticed."""
    header = (root / UIDLIST).read_text("ascii").partition("\n")[0]
    if f" N{count + 1}" not in header:
        raise ValueError(f"{root} does not hold {count} messages ({UIDLIST}: {header!r})")
    raws = (corpus.generate(i, count, seed) for i in range(count))
    sizes, checksums = [], []
    for raw in raws:
        sizes.append(len(raw))
        checksums.append(zlib.crc32(raw))
    return PreloadedCorpus(root, count, sizes, checksums)
