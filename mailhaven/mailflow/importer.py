"""Import folders of messages (mbox, Maildir, Dovecot) into an account.

Messages are stored in batches: each batch is analysed off the event loop (every
message goes through :func:`mailhaven.mime.analyze`, like an APPEND) and appended
in one transaction.  A message MIME cannot make sense of is stored as it is; one
that cannot be read at all is listed in the summary with the reason.

A folder that comes with a UIDVALIDITY and UIDs (a Dovecot Maildir) keeps them when
its mailbox here never held a message, so clients keep their caches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path

from mailhaven.codec.mailbox_names import canonical_mailbox
from mailhaven.mailflow import maildir, mbox
from mailhaven.mailflow.messages import prepare
from mailhaven.mailflow.progress import Report
from mailhaven.mailflow.source import Skipped, SourceFolder, SourceMessage
from mailhaven.storage.interface import Mailbox, NewMessage, Storage, User

BATCH_MESSAGES = 200
BATCH_BYTES = 32 * 1024 * 1024
MBOX_SUFFIX = ".mbox"
FORMATS = ("auto", "maildir", *mbox.VARIANTS)


class ImportError_(Exception):  # noqa: N801 - ImportError is a builtin
    """The source cannot be imported at all (bad path, unknown format)."""


def folders_at(
    path: Path, source_format: str = "auto", folder: str | None = None
) -> list[SourceFolder]:
    """The folders a path holds: a Maildir (with Maildir++ folders), one mbox file
    (into *folder*, INBOX by default) or a directory tree of mbox files (``a/b.mbox``
    becomes folder ``a/b``)."""
    if source_format not in FORMATS:
        raise ImportError_(f"unknown format {source_format!r}: use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportError_(f"{path} does not exist")
    variant = source_format if source_format in mbox.VARIANTS else mbox.MBOXRD
    if path.is_dir() and source_format in ("auto", "maildir") and maildir.is_maildir(path):
        return maildir.read_maildir(path)
    if source_format == "maildir":
        raise ImportError_(f"{path} is not a Maildir (no cur/ and new/)")
    if path.is_file():
        return [SourceFolder(folder or maildir.INBOX, mbox.read_mbox(path, variant))]
    return [
        SourceFolder(_mbox_folder_name(file, path), mbox.read_mbox(file, variant))
        for file in sorted(path.rglob(f"*{MBOX_SUFFIX}"))
        if file.is_file()
    ]


def _mbox_folder_name(file: Path, root: Path) -> str:
    return canonical_mailbox(file.relative_to(root).as_posix().removesuffix(MBOX_SUFFIX))


async def import_folders(
    storage: Storage, user: User, folders: Iterable[SourceFolder], report: Report
) -> None:
    for folder in folders:
        name = canonical_mailbox(folder.name)
        mailbox = await ensure_mailbox(storage, user, name)
        report.folder(name)
        keep_uids = await _adopt_uids(storage, mailbox, folder, report)
        # Messages not in dovecot-uidlist yet get UIDs from its next UID on.
        uidnext = (folder.uidnext or 1) if keep_uids else None
        for batch in _batches(folder.messages, report):
            await _store(storage, mailbox, batch, uidnext, report)
        if uidnext is not None:
            await storage.append_with_uids(mailbox.id, [], [], uidnext_at_least=uidnext)
        # As `doveadm index` does: the first SELECT after the import need not read it all.
        await storage.store_column_snapshot(mailbox.id)


async def ensure_mailbox(storage: Storage, user: User, name: str) -> Mailbox:
    """The selectable mailbox *name* of *user*, created when missing."""
    mailbox = await storage.get_mailbox(user.id, name)
    if mailbox is None or not mailbox.selectable:
        mailbox = await storage.create_mailbox(user.id, name)
    return mailbox


async def _adopt_uids(
    storage: Storage, mailbox: Mailbox, folder: SourceFolder, report: Report
) -> bool:
    """Take the source's UIDVALIDITY when this mailbox never held a message."""
    if folder.uidvalidity is None:
        return False
    if mailbox.uidnext != 1:
        report.notes.append(
            f"{mailbox.name}: already held messages, imported ones get new UIDs"
            " (clients will download them again)"
        )
        return False
    await storage.adopt_uidvalidity(mailbox.id, folder.uidvalidity)
    return True


def _batches(
    messages: Iterable[SourceMessage | Skipped], report: Report
) -> Iterator[list[SourceMessage]]:
    batch: list[SourceMessage] = []
    size = 0
    for item in messages:
        if isinstance(item, Skipped):
            report.skip(item.what, item.reason)
            continue
        batch.append(item)
        size += len(item.raw)
        if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _prepare_all(batch: list[SourceMessage]) -> list[NewMessage]:
    return [prepare(item.raw, item.flags, item.internal_date) for item in batch]


async def _store(
    storage: Storage,
    mailbox: Mailbox,
    batch: list[SourceMessage],
    uidnext: int | None,
    report: Report,
) -> None:
    """Append a batch; with *uidnext* (not None), keep the source's UIDs."""
    empty = [item for item in batch if not item.raw]
    for item in empty:
        report.skip(item.origin, "empty message (IMAP cannot store zero bytes)")
    batch = [item for item in batch if item.raw]
    prepared = await asyncio.get_running_loop().run_in_executor(None, _prepare_all, batch)
    if uidnext is not None:
        await _store_keeping_uids(storage, mailbox, batch, prepared, uidnext)
    else:
        await storage.append(mailbox.id, prepared)
    for item in batch:
        report.message(len(item.raw))


async def _store_keeping_uids(
    storage: Storage,
    mailbox: Mailbox,
    batch: list[SourceMessage],
    prepared: list[NewMessage],
    uidnext: int,
) -> None:
    """Messages with a known UID keep it; the rest (not in dovecot-uidlist yet)
    are numbered from the source's next UID, as Dovecot would number them."""
    counts = await storage.mailbox_counts(mailbox.id)
    known = [(item.uid, message) for item, message in zip(batch, prepared, strict=True) if item.uid]
    known = [(uid, message) for uid, message in known if uid >= counts.uidnext]
    if known:
        await storage.append_with_uids(
            mailbox.id, [message for _, message in known], [uid for uid, _ in known]
        )
    kept = {id(message) for _, message in known}
    rest = [message for message in prepared if id(message) not in kept]
    if rest:
        # Messages without a UID are read last, so every known UID is in by now.
        await storage.append_with_uids(mailbox.id, [], [], uidnext_at_least=uidnext)
        await storage.append(mailbox.id, rest)
