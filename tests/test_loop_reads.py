"""The refresh after each command asks "has the mailbox moved past modseq M?" on the
event loop's thread (mailhaven/storage/loop_reads.py) and only goes to the reader
threads when it has.  It must read what is committed, whoever committed it (another
worker process, ``mailhaven import``), and step aside when it cannot answer at once."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
from pathlib import Path

import pytest

from mailhaven.mime import analyze
from mailhaven.storage.interface import MailboxNotFound, NewMessage
from mailhaven.storage.loop_reads import LoopThreadReads
from mailhaven.storage.sqlite import SqliteStorage
from tests.support import alice_inbox, count_reads, mail, run_with_storage


def _message(n: int) -> NewMessage:
    return NewMessage(
        raw=mail(n),
        flags=frozenset(),
        internal_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        metadata=analyze(mail(n)).metadata.to_bytes(),
    )


def test_nothing_changed_is_answered_without_the_reader_threads(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> tuple[list[str], int, int]:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_message(1)])
        first = await storage.changes_since(inbox.id, 0)
        calls = count_reads(storage)
        unchanged = await storage.changes_since(inbox.id, first.highest_modseq)
        assert unchanged.changed == () and unchanged.expunged == ()
        assert unchanged.uidnext == first.uidnext
        return calls, unchanged.highest_modseq, first.highest_modseq

    calls, unchanged_modseq, modseq = run_with_storage(tmp_path / "store.db", scenario)
    assert calls == []
    assert unchanged_modseq == modseq > 0


def test_a_commit_by_another_process_is_seen_without_a_notification(tmp_path: Path) -> None:
    """A second storage on the same file stands for another process: its commits
    reach this one's change hub never, and must still show up."""

    async def scenario() -> tuple[int, list[int], list[int], int]:
        path = tmp_path / "store.db"
        storage, elsewhere = SqliteStorage(path), SqliteStorage(path)
        await storage.open()
        await elsewhere.open()
        try:
            inbox = await alice_inbox(storage)
            await storage.append(inbox.id, [_message(1)])
            seen = (await storage.changes_since(inbox.id, 0)).highest_modseq
            published = storage.changes.generation(inbox.id)
            await elsewhere.append(inbox.id, [_message(2)])
            after_append = await storage.changes_since(inbox.id, seen)
            uids = [summary.uid for summary in after_append.changed]
            await elsewhere.store_flags(inbox.id, [1], "+", frozenset({"\\Deleted"}))
            await elsewhere.expunge(inbox.id)
            after_expunge = await storage.changes_since(inbox.id, after_append.highest_modseq)
            return (
                storage.changes.generation(inbox.id) - published,
                uids,
                list(after_expunge.expunged),
                after_expunge.highest_modseq - after_append.highest_modseq,
            )
        finally:
            await elsewhere.close()
            await storage.close()

    unpublished, new_uids, expunged, moved = asyncio.run(scenario())
    assert unpublished == 0  # nothing told this storage about the other's commits
    assert new_uids == [2]
    assert expunged == [1]
    assert moved > 0


def test_a_deleted_mailbox_still_raises(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> None:
        user = await storage.create_user("alice", "x")
        box = await storage.create_mailbox(user.id, "Projects")
        await storage.delete_mailbox(user.id, "Projects")
        with pytest.raises(MailboxNotFound):
            await storage.changes_since(box.id, 0)

    run_with_storage(tmp_path / "store.db", scenario)


def test_reads_see_each_new_commit_and_only_on_their_own_thread(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE mailboxes (id INTEGER PRIMARY KEY, highest_modseq, uidnext)")
    setup.execute("INSERT INTO mailboxes VALUES (7, 3, 10)")
    reads = LoopThreadReads(str(path))
    assert reads.mailbox_position(7) == (3, 10)
    # A statement left unfinished would keep the first snapshot.
    setup.execute("UPDATE mailboxes SET highest_modseq = 4, uidnext = 11 WHERE id = 7")
    assert reads.mailbox_position(7) == (4, 11)
    assert reads.mailbox_position(8) is None
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(reads.mailbox_position(7)))
    thread.start()
    thread.join()
    assert elsewhere == [None]
    reads.close()
    setup.close()


def test_a_locked_database_answers_dont_know_at_once(tmp_path: Path) -> None:
    """busy_timeout 0: the event loop never waits for a lock (a rollback-journal
    database, where a writer's exclusive lock keeps readers out, stands in for the
    rare moments a WAL reader would have to wait)."""
    path = tmp_path / "journal.db"
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("CREATE TABLE mailboxes (id INTEGER PRIMARY KEY, highest_modseq, uidnext)")
    writer.execute("INSERT INTO mailboxes VALUES (7, 3, 10)")
    reads = LoopThreadReads(str(path))
    assert reads.mailbox_position(7) == (3, 10)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE mailboxes SET highest_modseq = 5 WHERE id = 7")
    assert reads.mailbox_position(7) is None
    writer.execute("COMMIT")
    assert reads.mailbox_position(7) == (5, 10)
    reads.close()
    writer.close()
