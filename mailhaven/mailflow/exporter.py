"""Export an account to mbox files or a Maildir (what ``mailhaven export`` does).

mbox: one mboxrd file per folder, ``PATH/<folder>.mbox`` with the hierarchy as
directories (``Lists/python.mbox``), flags in Status/X-Status/X-Keywords headers.
maildir: Dovecot's Maildir++ layout with dovecot-uidlist and dovecot-keywords, so
the export can be imported here or served by Dovecot with UIDs and keywords intact.
"""

from __future__ import annotations

from pathlib import Path

from mailhaven.mailflow import maildir, mbox
from mailhaven.mailflow.progress import Report
from mailhaven.storage.interface import Mailbox, Storage, User

FORMATS = ("mbox", "maildir")
BATCH_MESSAGES = 200


async def export_account(
    storage: Storage, user: User, destination: Path, export_format: str, report: Report
) -> None:
    if export_format not in FORMATS:
        raise ValueError(f"unknown export format {export_format!r}")
    destination.mkdir(parents=True, exist_ok=True)
    for mailbox in await storage.list_mailboxes(user.id):
        if not mailbox.selectable:
            continue
        if export_format == "mbox":
            await _export_mbox(storage, mailbox, destination, report)
        else:
            await _export_maildir(storage, mailbox, destination, report)


async def _batches(storage: Storage, mailbox: Mailbox):  # noqa: ANN202 - async generator
    summaries = await storage.message_summaries(mailbox.id)
    for start in range(0, len(summaries), BATCH_MESSAGES):
        chunk = summaries[start : start + BATCH_MESSAGES]
        contents = await storage.fetch_content(
            mailbox.id, [s.uid for s in chunk], raw=True, metadata=False
        )
        raw_by_uid = {content.uid: content.raw for content in contents}
        # A message expunged meanwhile is simply not there any more.
        yield [(summary, raw_by_uid[summary.uid]) for summary in chunk if summary.uid in raw_by_uid]


async def _export_mbox(
    storage: Storage, mailbox: Mailbox, destination: Path, report: Report
) -> None:
    path = destination / f"{mailbox.name}{'.mbox'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    report.folder(mailbox.name)
    with path.open("wb") as stream:
        async for batch in _batches(storage, mailbox):
            for summary, raw in batch:
                assert raw is not None
                stream.write(mbox.mbox_entry(raw, summary.flags, summary.internal_date))
                report.message(len(raw))


async def _export_maildir(
    storage: Storage, mailbox: Mailbox, destination: Path, report: Report
) -> None:
    try:
        writer = maildir.MaildirWriter(
            destination, mailbox.name, mailbox.uidvalidity, mailbox.uidnext
        )
    except ValueError as error:
        report.skip(f"folder {mailbox.name}", str(error))
        return
    report.folder(mailbox.name)
    async for batch in _batches(storage, mailbox):
        for summary, raw in batch:
            assert raw is not None
            lost = writer.write(
                maildir.ExportedMessage(raw, summary.flags, summary.internal_date, summary.uid)
            )
            for keyword in lost:
                report.skip(
                    f"keyword {keyword} of {mailbox.name} UID {summary.uid}",
                    "Maildir has letters for 26 keywords per folder",
                )
            report.message(len(raw))
    writer.finish()
