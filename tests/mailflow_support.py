"""Helpers for the mail-flow tests: read an account's mail straight from the store."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from mailhaven.storage import open_storage

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "messages"

# Flags given to corpus message i: every combination shows up, keywords included.
FLAG_CYCLE = (
    frozenset(),
    frozenset({"\\Seen"}),
    frozenset({"\\Seen", "\\Answered", "$Label1"}),
    frozenset({"\\Flagged", "\\Draft"}),
    frozenset({"\\Deleted", "\\Seen", "work", "$Forwarded"}),
)


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) == 636, f"the corpus is missing at {CORPUS}"
    return files


Snapshot = dict[str, list[tuple[int, bytes, frozenset[str], datetime.datetime]]]


def snapshot(data_dir: Path, user: str) -> tuple[Snapshot, dict[str, int]]:
    """Every selectable mailbox: (uid, raw, flags, internal date) in UID order, and
    each mailbox's UIDVALIDITY."""

    async def read() -> tuple[Snapshot, dict[str, int]]:
        storage = open_storage(data_dir)
        await storage.open()
        try:
            account = await storage.get_user(user)
            assert account is not None
            result: Snapshot = {}
            validity: dict[str, int] = {}
            for mailbox in await storage.list_mailboxes(account.id):
                if not mailbox.selectable:
                    continue
                summaries = await storage.message_summaries(mailbox.id)
                contents = await storage.fetch_content(
                    mailbox.id, [s.uid for s in summaries], raw=True, metadata=False
                )
                raws = {content.uid: content.raw for content in contents}
                result[mailbox.name] = [
                    (s.uid, raws[s.uid], s.flags, s.internal_date) for s in summaries
                ]
                validity[mailbox.name] = mailbox.uidvalidity
            return result, validity
        finally:
            await storage.close()

    return asyncio.run(read())
