"""Tests of the SQLite storage backend (and the flag rules it relies on)."""

from __future__ import annotations

import asyncio
import datetime
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mailhaven.storage import DATABASE_FILE, SqliteStorage, open_storage
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage.flags import apply_store, normalize_flags
from mailhaven.storage.interface import (
    Mailbox,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    NewMessage,
    StorageError,
    UserExists,
    UserNotFound,
)
from tests.support import run_with_storage

REPO_ROOT = Path(__file__).resolve().parents[1]
UTC = datetime.UTC
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
MINUS_FIVE_THIRTY = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))
WHEN = datetime.datetime(2024, 5, 17, 9, 30, 15, tzinfo=PLUS_TWO)

Scenario = Callable[[SqliteStorage], Awaitable[None]]


def storage_test(body: Scenario) -> Callable[[Path], None]:
    """Turn ``async def test_x(storage)`` into a pytest test on a fresh database."""

    def test(tmp_path: Path) -> None:
        run_with_storage(tmp_path / "test.db", body)

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


def message(
    text: str = "Hello",
    *,
    flags: frozenset[str] = frozenset(),
    when: datetime.datetime = WHEN,
    header: str = "Subject: greeting",
    raw: bytes | None = None,
) -> NewMessage:
    body = raw if raw is not None else f"{header}\r\n\r\n{text}\r\n".encode()
    return NewMessage(
        raw=body,
        flags=flags,
        internal_date=when,
        metadata=b"meta:" + body[:10],
        body_text=text,
        header_text=header,
    )


async def new_user(storage: SqliteStorage, name: str = "alice") -> int:
    return (await storage.create_user(name, "hash")).id


async def mailbox(storage: SqliteStorage, user_id: int, name: str) -> Mailbox:
    found = await storage.get_mailbox(user_id, name)
    assert found is not None, name
    return found


async def inbox_with(storage: SqliteStorage, *messages: NewMessage) -> tuple[int, Mailbox]:
    user_id = await new_user(storage)
    inbox = await mailbox(storage, user_id, "INBOX")
    if messages:
        await storage.append(inbox.id, messages)
    return user_id, await mailbox(storage, user_id, "INBOX")


async def flags_by_uid(storage: SqliteStorage, mailbox_id: int) -> dict[int, frozenset[str]]:
    return {s.uid: s.flags for s in await storage.message_summaries(mailbox_id)}


def content_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM contents").fetchone()[0]


# --------------------------------------------------------------------------- flag rules


def test_normalize_flags_canonicalises_system_flags_and_drops_recent() -> None:
    assert normalize_flags({"\\SEEN", "\\deleted", "\\Recent", "$Work"}) == {
        "\\Seen",
        "\\Deleted",
        "$Work",
    }
    assert len(normalize_flags({"$Work", "$WORK", "$work"})) == 1


def test_apply_store_modes_compare_keywords_case_insensitively() -> None:
    current = frozenset({"\\Seen", "$Work"})
    assert apply_store(current, "+", {"$WORK", "\\flagged"}) == {"\\Seen", "$Work", "\\Flagged"}
    assert apply_store(current, "-", {"$work", "\\SEEN"}) == frozenset()
    assert apply_store(current, "", {"$WORK", "Later"}) == {"$Work", "Later"}
    assert apply_store(current, "", {"\\Recent"}) == frozenset()
    with pytest.raises(ValueError):
        apply_store(current, "*", set())


# --------------------------------------------------------------------------- schema


def test_open_creates_versioned_wal_schema(tmp_path: Path) -> None:
    path = tmp_path / "test.db"

    async def main() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        await storage.close()

    asyncio.run(main())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_backend.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.stat().st_mode & 0o077 == 0
    # Opening again must not try to recreate anything.
    asyncio.run(main())


def test_readers_map_the_file_and_the_writer_does_not(tmp_path: Path) -> None:
    def mmap_size(conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA mmap_size").fetchone()[0]

    async def scenario(storage: SqliteStorage) -> tuple[int, int]:
        reader = await storage._read(mmap_size)
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(storage._writer, mmap_size, storage._writer_conn)
        return reader, writer

    reader, writer = run_with_storage(tmp_path / "test.db", scenario)
    assert reader > 0
    assert writer == 0


def test_open_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "test.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_backend.SCHEMA_VERSION + 1}")

    async def main() -> None:
        storage = SqliteStorage(path)
        with pytest.raises(StorageError, match="newer"):
            await storage.open()

    asyncio.run(main())


def test_open_storage_points_at_the_data_directory(tmp_path: Path) -> None:
    async def main() -> None:
        storage = open_storage(tmp_path)
        assert isinstance(storage, SqliteStorage)
        await storage.open()
        await storage.close()

    asyncio.run(main())
    assert (tmp_path / DATABASE_FILE).exists()


def test_methods_refuse_to_run_before_open(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(StorageError, match="not open"):
            await SqliteStorage(tmp_path / "test.db").list_users()

    asyncio.run(main())


# --------------------------------------------------------------------------- accounts


@storage_test
async def test_create_user_makes_default_mailboxes_all_subscribed(storage: SqliteStorage) -> None:
    user = await storage.create_user("alice", "hash")
    boxes = {box.name: box for box in await storage.list_mailboxes(user.id)}
    assert set(boxes) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert boxes["INBOX"].special_use == ()
    for name in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert boxes[name].special_use == ("\\" + name,)
    assert all(box.selectable and box.uidnext == 1 for box in boxes.values())
    assert len({box.uidvalidity for box in boxes.values()}) == 6
    assert all(0 < box.uidvalidity <= 0xFFFFFFFF for box in boxes.values())
    assert await storage.subscriptions(user.id) == set(boxes)


@storage_test
async def test_user_names_are_unique_case_insensitively(storage: SqliteStorage) -> None:
    await storage.create_user("alice", "hash")
    with pytest.raises(UserExists):
        await storage.create_user("ALICE", "other")
    found = await storage.get_user("Alice")
    assert found is not None and found.name == "alice" and found.password_hash == "hash"
    assert await storage.get_user("bob") is None


@storage_test
async def test_list_users_and_set_password(storage: SqliteStorage) -> None:
    await storage.create_user("bob", "h1")
    await storage.create_user("alice", "h2")
    await storage.set_password("bob", "new")
    users = await storage.list_users()
    assert [(u.name, u.password_hash, u.imap_enabled, u.disabled) for u in users] == [
        ("alice", "h2", True, False),
        ("bob", "new", True, False),
    ]
    with pytest.raises(UserNotFound):
        await storage.set_password("carol", "x")


def test_delete_user_removes_mail_and_leaves_others(tmp_path: Path) -> None:
    path = tmp_path / "test.db"

    async def main() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        alice = await new_user(storage, "alice")
        bob = await new_user(storage, "bob")
        await storage.append((await mailbox(storage, alice, "INBOX")).id, [message("a")])
        bob_inbox = await mailbox(storage, bob, "INBOX")
        await storage.append(bob_inbox.id, [message("b")])
        await storage.delete_user("alice")
        assert await storage.get_user("alice") is None
        assert await storage.list_mailboxes(alice) == []
        assert await storage.subscriptions(alice) == set()
        assert len(await storage.message_summaries(bob_inbox.id)) == 1
        with pytest.raises(UserNotFound):
            await storage.delete_user("alice")
        await storage.close()

    asyncio.run(main())
    assert content_rows(path) == 1


# --------------------------------------------------------------------------- append and fetch


@storage_test
async def test_append_and_fetch_content_are_byte_exact(storage: SqliteStorage) -> None:
    raw = b"Subject: x\r\n\r\nline\r\n\x00\xff\xfe 8-bit\nbare LF\r\n"
    _, inbox = await inbox_with(storage)
    result = await storage.append(inbox.id, [message(raw=raw), message("second")])
    assert result.uidvalidity == inbox.uidvalidity
    assert result.source_uids == ()
    assert result.destination_uids == (1, 2)

    contents = await storage.fetch_content(inbox.id, [2, 99, 1], raw=True, metadata=True)
    assert [c.uid for c in contents] == [2, 1]
    assert contents[1].raw == raw
    assert contents[1].metadata == b"meta:" + raw[:10]

    only_metadata = await storage.fetch_content(inbox.id, [1], raw=False, metadata=True)
    assert only_metadata[0].raw is None and only_metadata[0].metadata is not None
    only_raw = await storage.fetch_content(inbox.id, [1], raw=True, metadata=False)
    assert only_raw[0].raw == raw and only_raw[0].metadata is None

    summaries = await storage.message_summaries(inbox.id)
    assert [(s.uid, s.size) for s in summaries] == [(1, len(raw)), (2, len(message("second").raw))]


@storage_test
async def test_internal_date_round_trips_with_its_zone(storage: SqliteStorage) -> None:
    dates = [
        datetime.datetime(2024, 5, 17, 9, 30, 15, tzinfo=PLUS_TWO),
        datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=MINUS_FIVE_THIRTY),
        datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]
    _, inbox = await inbox_with(storage, *(message(when=d) for d in dates))
    stored = [s.internal_date for s in await storage.message_summaries(inbox.id)]
    assert stored == dates
    assert [d.utcoffset() for d in stored] == [d.utcoffset() for d in dates]


@storage_test
async def test_append_is_atomic(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("first"))
    naive = datetime.datetime(2024, 1, 1, 12, 0, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.append(inbox.id, [message("ok"), message("bad", when=naive)])
    after = await mailbox(storage, inbox.user_id, "INBOX")
    assert (after.uidnext, after.highest_modseq) == (inbox.uidnext, inbox.highest_modseq)
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [1]


@storage_test
async def test_append_needs_a_selectable_mailbox(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    await storage.create_mailbox(user_id, "a/b")
    await storage.delete_mailbox(user_id, "a")
    placeholder = await mailbox(storage, user_id, "a")
    with pytest.raises(MailboxNotFound):
        await storage.append(placeholder.id, [message()])
    with pytest.raises(MailboxNotFound):
        await storage.append(10_000, [message()])


@storage_test
async def test_uids_are_consecutive_and_never_reused(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1"), message("2"), message("3"))
    assert inbox.uidnext == 4
    await storage.store_flags(inbox.id, [3], "+", frozenset({"\\Deleted"}))
    assert await storage.expunge(inbox.id) == [3]
    result = await storage.append(inbox.id, [message("4")])
    assert result.destination_uids == (4,)
    assert (await mailbox(storage, inbox.user_id, "INBOX")).uidnext == 5


@storage_test
async def test_flags_are_normalised_on_append(storage: SqliteStorage) -> None:
    flags = frozenset({"\\SEEN", "\\Recent", "$Label1", "\\draft"})
    _, inbox = await inbox_with(storage, message(flags=flags))
    assert await flags_by_uid(storage, inbox.id) == {1: {"\\Seen", "$Label1", "\\Draft"}}


# --------------------------------------------------------------------------- flags


@storage_test
async def test_store_add_remove_replace(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1"), message("2", flags=frozenset({"\\Seen"})))
    added = await storage.store_flags(inbox.id, [1, 2], "+", frozenset({"\\seen", "$Work"}))
    assert [(s.uid, s.flags) for s in added.changed] == [
        (1, {"\\Seen", "$Work"}),
        (2, {"\\Seen", "$Work"}),
    ]
    assert len({s.modseq for s in added.changed}) == 1

    removed = await storage.store_flags(inbox.id, [1], "-", frozenset({"$WORK"}))
    assert [(s.uid, s.flags) for s in removed.changed] == [(1, {"\\Seen"})]

    replaced = await storage.store_flags(inbox.id, [2], "", frozenset({"\\Flagged", "\\Recent"}))
    assert [(s.uid, s.flags) for s in replaced.changed] == [(2, {"\\Flagged"})]
    assert await flags_by_uid(storage, inbox.id) == {1: {"\\Seen"}, 2: {"\\Flagged"}}


@storage_test
async def test_store_keeps_the_first_spelling_of_a_keyword(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message(flags=frozenset({"$Work"})))
    again = await storage.store_flags(inbox.id, [1], "+", frozenset({"$WORK"}))
    assert again.changed == ()
    replaced = await storage.store_flags(inbox.id, [1], "", frozenset({"$work"}))
    assert replaced.changed == ()
    assert await flags_by_uid(storage, inbox.id) == {1: {"$Work"}}


@storage_test
async def test_store_stamps_only_really_changed_messages(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1", flags=frozenset({"\\Seen"})), message("2"))
    before = {s.uid: s.modseq for s in await storage.message_summaries(inbox.id)}
    result = await storage.store_flags(inbox.id, [1, 2, 77], "+", frozenset({"\\Seen"}))
    assert [s.uid for s in result.changed] == [2]
    after = {s.uid: s.modseq for s in await storage.message_summaries(inbox.id)}
    assert after[1] == before[1]
    assert after[2] > before[2]
    assert (await mailbox(storage, inbox.user_id, "INBOX")).highest_modseq == after[2]


@storage_test
async def test_store_unchanged_since(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1"), message("2"))
    base = (await mailbox(storage, inbox.user_id, "INBOX")).highest_modseq
    await storage.store_flags(inbox.id, [2], "+", frozenset({"$Touched"}))

    result = await storage.store_flags(
        inbox.id, [1, 2], "+", frozenset({"\\Flagged"}), unchanged_since=base
    )
    assert [s.uid for s in result.changed] == [1]
    assert result.unchanged_since_failed == (2,)
    assert await flags_by_uid(storage, inbox.id) == {1: {"\\Flagged"}, 2: {"$Touched"}}

    # RFC 7162 section 3.1.3: UNCHANGEDSINCE 0 always fails.
    zero = await storage.store_flags(inbox.id, [1, 2], "-", frozenset({"\\Flagged"}), 0)
    assert zero.changed == () and zero.unchanged_since_failed == (1, 2)


# --------------------------------------------------------------------------- copy and move


def test_copy_shares_content_and_keeps_flags(tmp_path: Path) -> None:
    path = tmp_path / "test.db"

    async def main() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        user_id, inbox = await inbox_with(
            storage,
            message("1", flags=frozenset({"\\Seen", "$Work"})),
            message("2", when=datetime.datetime(2020, 2, 2, 2, 2, 2, tzinfo=MINUS_FIVE_THIRTY)),
            message("3"),
        )
        archive = await mailbox(storage, user_id, "Archive")
        await storage.append(archive.id, [message("already there")])
        await storage.claim_recent(archive.id)

        result = await storage.copy(inbox.id, [3, 1, 2, 42], archive.id)
        assert result.uidvalidity == archive.uidvalidity
        assert result.source_uids == (1, 2, 3)
        assert result.destination_uids == (2, 3, 4)

        source = await storage.message_summaries(inbox.id)
        copies = await storage.message_summaries(archive.id)
        assert len(source) == 3
        for original, copy in zip(source, copies[1:], strict=True):
            assert copy.flags == original.flags
            assert copy.internal_date == original.internal_date
            assert copy.internal_date.utcoffset() == original.internal_date.utcoffset()
            assert copy.size == original.size
        assert await storage.claim_recent(archive.id) == {2, 3, 4}
        raws = await storage.fetch_content(archive.id, [2], raw=True, metadata=False)
        assert raws[0].raw == message("1").raw
        assert (await mailbox(storage, user_id, "Archive")).uidnext == 5
        await storage.close()

    asyncio.run(main())
    assert content_rows(path) == 4  # three originals and one other message, no duplicates


@storage_test
async def test_copy_of_nothing_changes_nothing(storage: SqliteStorage) -> None:
    user_id, inbox = await inbox_with(storage, message())
    trash = await mailbox(storage, user_id, "Trash")
    result = await storage.copy(inbox.id, [5, 6], trash.id)
    assert (result.source_uids, result.destination_uids) == ((), ())
    assert await mailbox(storage, user_id, "Trash") == trash


@storage_test
async def test_copy_into_missing_mailbox_fails(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message())
    with pytest.raises(MailboxNotFound):
        await storage.copy(inbox.id, [1], 12345)


@storage_test
async def test_copy_within_one_mailbox(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1"))
    result = await storage.copy(inbox.id, [1], inbox.id)
    assert result.destination_uids == (2,)
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [1, 2]


@storage_test
async def test_move_expunges_from_the_source(storage: SqliteStorage) -> None:
    user_id, inbox = await inbox_with(
        storage, message("1"), message("2", flags=frozenset({"\\Answered"}))
    )
    trash = await mailbox(storage, user_id, "Trash")
    result = await storage.move(inbox.id, [2], trash.id)
    assert (result.source_uids, result.destination_uids) == ((2,), (1,))
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [1]
    assert await flags_by_uid(storage, trash.id) == {1: {"\\Answered"}}
    changes = await storage.changes_since(inbox.id, inbox.highest_modseq)
    assert changes.expunged == (2,)
    assert changes.changed == ()
    contents = await storage.fetch_content(trash.id, [1], raw=True, metadata=False)
    assert contents[0].raw == message("2").raw


# --------------------------------------------------------------------------- expunge


@storage_test
async def test_expunge_removes_only_deleted_messages(storage: SqliteStorage) -> None:
    deleted = frozenset({"\\Deleted"})
    _, inbox = await inbox_with(
        storage, message("1", flags=deleted), message("2"), message("3", flags=deleted)
    )
    assert await storage.expunge(inbox.id) == [1, 3]
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [2]
    assert await storage.expunge(inbox.id) == []


@storage_test
async def test_expunge_limited_to_uids(storage: SqliteStorage) -> None:
    deleted = frozenset({"\\Deleted"})
    _, inbox = await inbox_with(
        storage, message("1", flags=deleted), message("2"), message("3", flags=deleted)
    )
    assert await storage.expunge(inbox.id, [2, 3]) == [3]
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [1, 2]


def test_expunge_frees_content_only_when_unreferenced(tmp_path: Path) -> None:
    path = tmp_path / "test.db"

    async def main() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        user_id, inbox = await inbox_with(storage, message("kept"), message("gone"))
        archive = await mailbox(storage, user_id, "Archive")
        await storage.copy(inbox.id, [1], archive.id)
        await storage.store_flags(inbox.id, [1, 2], "+", frozenset({"\\Deleted"}))
        assert await storage.expunge(inbox.id) == [1, 2]
        contents = await storage.fetch_content(archive.id, [1], raw=True, metadata=False)
        assert contents[0].raw == message("kept").raw
        await storage.close()

    asyncio.run(main())
    assert content_rows(path) == 1


# --------------------------------------------------------------------------- changes_since


@storage_test
async def test_changes_since_reports_every_kind_of_change(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage)
    start = inbox.highest_modseq
    await storage.append(inbox.id, [message("1"), message("2"), message("3")])
    after_append = await storage.changes_since(inbox.id, start)
    assert [s.uid for s in after_append.changed] == [1, 2, 3]
    assert after_append.expunged == ()
    assert after_append.uidnext == 4
    assert after_append.highest_modseq > start

    mark = after_append.highest_modseq
    await storage.store_flags(inbox.id, [2], "+", frozenset({"\\Deleted"}))
    after_store = await storage.changes_since(inbox.id, mark)
    assert [(s.uid, s.flags) for s in after_store.changed] == [(2, {"\\Deleted"})]
    assert after_store.highest_modseq == after_store.changed[0].modseq

    mark = after_store.highest_modseq
    await storage.expunge(inbox.id)
    after_expunge = await storage.changes_since(inbox.id, mark)
    assert after_expunge.changed == ()
    assert after_expunge.expunged == (2,)
    assert after_expunge.highest_modseq > mark

    everything = await storage.changes_since(inbox.id, start)
    assert [s.uid for s in everything.changed] == [1, 3]
    assert everything.expunged == (2,)
    nothing = await storage.changes_since(inbox.id, after_expunge.highest_modseq)
    assert (nothing.changed, nothing.expunged) == ((), ())


@storage_test
async def test_changes_since_unknown_mailbox(storage: SqliteStorage) -> None:
    with pytest.raises(MailboxNotFound):
        await storage.changes_since(999, 0)


# --------------------------------------------------------------------------- recent


@storage_test
async def test_claim_recent_hands_out_each_message_once(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("1"), message("2"))
    assert await storage.claim_recent(inbox.id) == {1, 2}
    assert await storage.claim_recent(inbox.id) == set()
    await storage.append(inbox.id, [message("3")])
    assert (await storage.mailbox_counts(inbox.id)).recent == 1
    assert await storage.claim_recent(inbox.id) == {3}
    assert all("\\Recent" not in s.flags for s in await storage.message_summaries(inbox.id))


# --------------------------------------------------------------------------- mailboxes


@storage_test
async def test_create_mailbox_makes_superiors(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    created = await storage.create_mailbox(user_id, "Work/2024/Q1", ["\\Flagged"])
    assert created.name == "Work/2024/Q1" and created.special_use == ("\\Flagged",)
    assert created.selectable and created.uidnext == 1
    for name in ("Work", "Work/2024"):
        assert (await mailbox(storage, user_id, name)).selectable
    with pytest.raises(MailboxExists):
        await storage.create_mailbox(user_id, "Work/2024")
    with pytest.raises(MailboxExists):
        await storage.create_mailbox(user_id, "INBOX")
    for bad in ("", "a//b", "/a", "a/"):
        with pytest.raises(StorageError):
            await storage.create_mailbox(user_id, bad)


@storage_test
async def test_mailbox_names_are_case_sensitive_and_unicode(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    await storage.create_mailbox(user_id, "Bücher")
    await storage.create_mailbox(user_id, "bücher")
    names = [box.name for box in await storage.list_mailboxes(user_id)]
    assert names == sorted(names)
    assert {"Bücher", "bücher"} <= set(names)


@storage_test
async def test_delete_mailbox_without_inferiors(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    box = await storage.create_mailbox(user_id, "Old")
    await storage.append(box.id, [message()])
    await storage.subscribe(user_id, "Old")
    await storage.delete_mailbox(user_id, "Old")
    assert await storage.get_mailbox(user_id, "Old") is None
    assert "Old" in await storage.subscriptions(user_id)  # RFC 9051 section 6.3.7
    with pytest.raises(MailboxNotFound):
        await storage.delete_mailbox(user_id, "Old")
    with pytest.raises(StorageError):
        await storage.delete_mailbox(user_id, "INBOX")

    recreated = await storage.create_mailbox(user_id, "Old")
    assert recreated.uidvalidity > box.uidvalidity
    assert await storage.message_summaries(recreated.id) == []


@storage_test
async def test_delete_mailbox_with_inferiors_leaves_noselect(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    parent = await storage.create_mailbox(user_id, "foo")
    await storage.create_mailbox(user_id, "foo/bar")
    await storage.append(parent.id, [message("1"), message("2")])

    await storage.delete_mailbox(user_id, "foo")
    placeholder = await mailbox(storage, user_id, "foo")
    assert not placeholder.selectable and placeholder.id == parent.id
    assert await storage.message_summaries(parent.id) == []
    assert (await storage.changes_since(parent.id, parent.highest_modseq)).expunged == (1, 2)
    assert (await mailbox(storage, user_id, "foo/bar")).selectable

    with pytest.raises(MailboxHasChildren):
        await storage.delete_mailbox(user_id, "foo")
    await storage.delete_mailbox(user_id, "foo/bar")
    assert (await mailbox(storage, user_id, "foo")).selectable is False
    await storage.delete_mailbox(user_id, "foo")
    assert await storage.get_mailbox(user_id, "foo") is None


@storage_test
async def test_create_revives_a_noselect_placeholder(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    parent = await storage.create_mailbox(user_id, "foo")
    await storage.create_mailbox(user_id, "foo/bar")
    await storage.append(parent.id, [message()])
    await storage.delete_mailbox(user_id, "foo")

    revived = await storage.create_mailbox(user_id, "foo")
    assert revived.selectable
    assert revived.uidvalidity > parent.uidvalidity
    assert revived.uidnext == 2  # UIDs of the old incarnation are not reused either
    assert (await storage.changes_since(revived.id, 0)).expunged == ()


@storage_test
async def test_rename_moves_inferiors_and_creates_superiors(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    foo = await storage.create_mailbox(user_id, "foo")
    bar = await storage.create_mailbox(user_id, "foo/bar")
    await storage.create_mailbox(user_id, "foobar")  # not an inferior of foo
    await storage.append(bar.id, [message("in bar")])
    await storage.subscribe(user_id, "foo/bar")

    await storage.rename_mailbox(user_id, "foo", "zap/zowie")
    names = {box.name for box in await storage.list_mailboxes(user_id)}
    assert {"zap", "zap/zowie", "zap/zowie/bar", "foobar"} <= names
    assert not {"foo", "foo/bar"} & names
    moved = await mailbox(storage, user_id, "zap/zowie/bar")
    assert moved.id == bar.id
    assert moved.uidvalidity != bar.uidvalidity
    assert (await mailbox(storage, user_id, "zap/zowie")).uidvalidity != foo.uidvalidity
    assert [s.uid for s in await storage.message_summaries(moved.id)] == [1]
    subscriptions = await storage.subscriptions(user_id)
    assert "zap/zowie/bar" in subscriptions and "foo/bar" not in subscriptions


@storage_test
async def test_rename_errors(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    await storage.create_mailbox(user_id, "a")
    with pytest.raises(MailboxNotFound):
        await storage.rename_mailbox(user_id, "missing", "b")
    with pytest.raises(MailboxExists):
        await storage.rename_mailbox(user_id, "a", "Sent")
    with pytest.raises(MailboxExists):
        await storage.rename_mailbox(user_id, "a", "INBOX")
    with pytest.raises(StorageError):
        await storage.rename_mailbox(user_id, "a", "a/b")
    assert (await mailbox(storage, user_id, "a")).selectable


@storage_test
async def test_rename_a_noselect_placeholder(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    await storage.create_mailbox(user_id, "foo/bar")
    await storage.delete_mailbox(user_id, "foo")
    await storage.rename_mailbox(user_id, "foo", "zowie")
    assert not (await mailbox(storage, user_id, "zowie")).selectable
    assert (await mailbox(storage, user_id, "zowie/bar")).selectable


@storage_test
async def test_rename_inbox_moves_its_messages(storage: SqliteStorage) -> None:
    user_id, inbox = await inbox_with(storage, message("1"), message("2"))
    await storage.create_mailbox(user_id, "INBOX/child")

    await storage.rename_mailbox(user_id, "INBOX", "old-mail/2024")
    emptied = await mailbox(storage, user_id, "INBOX")
    assert emptied.id == inbox.id and emptied.uidvalidity == inbox.uidvalidity
    assert await storage.message_summaries(inbox.id) == []
    assert (await storage.changes_since(inbox.id, inbox.highest_modseq)).expunged == (1, 2)
    assert (await mailbox(storage, user_id, "INBOX/child")).selectable
    assert (await mailbox(storage, user_id, "old-mail")).selectable

    target = await mailbox(storage, user_id, "old-mail/2024")
    assert target.uidvalidity != inbox.uidvalidity
    assert [s.uid for s in await storage.message_summaries(target.id)] == [1, 2]
    raws = await storage.fetch_content(target.id, [2], raw=True, metadata=False)
    assert raws[0].raw == message("2").raw

    # New mail in INBOX does not reuse the UIDs that moved away.
    assert (await storage.append(inbox.id, [message("3")])).destination_uids == (3,)


@storage_test
async def test_subscriptions(storage: SqliteStorage) -> None:
    user_id, _ = await inbox_with(storage)
    await storage.subscribe(user_id, "Lists/ietf")
    await storage.subscribe(user_id, "Lists/ietf")
    assert "Lists/ietf" in await storage.subscriptions(user_id)
    await storage.unsubscribe(user_id, "Lists/ietf")
    await storage.unsubscribe(user_id, "Lists/ietf")
    assert "Lists/ietf" not in await storage.subscriptions(user_id)
    await storage.unsubscribe(user_id, "Junk")
    assert await storage.subscriptions(user_id) == {"INBOX", "Drafts", "Sent", "Trash", "Archive"}


@storage_test
async def test_mailbox_counts(storage: SqliteStorage) -> None:
    user_id, inbox = await inbox_with(
        storage,
        message("1", flags=frozenset({"\\Seen"})),
        message("2", flags=frozenset({"\\Seen", "\\Deleted"})),
        message("3", flags=frozenset({"$Seen"})),  # a keyword, not \Seen
        message("4", flags=frozenset({"\\Deleted"})),
    )
    await storage.claim_recent(inbox.id)
    await storage.append(inbox.id, [message("5")])
    counts = await storage.mailbox_counts(inbox.id)
    current = await mailbox(storage, user_id, "INBOX")
    expected_size = sum(len(message(str(n)).raw) for n in range(1, 6))
    assert counts.messages == 5
    assert counts.recent == 1
    assert counts.unseen == 3
    assert counts.deleted == 2
    assert counts.size == expected_size
    assert counts.uidnext == 6 == current.uidnext
    assert counts.uidvalidity == current.uidvalidity
    assert counts.highest_modseq == current.highest_modseq

    empty = await storage.mailbox_counts((await mailbox(storage, user_id, "Junk")).id)
    assert (empty.messages, empty.recent, empty.unseen, empty.deleted, empty.size) == (0,) * 5


# --------------------------------------------------------------------------- search


SEARCH_MESSAGES = (
    message("Grüße von Herrn MÜLLER aus Köln", header="Subject: Brief"),
    message("nothing to see", header="Subject: Müller report"),
    message('He said "hi" to me; a*b OR c', header="From: x"),
    message("ΣΊΣΥΦΟΣ straße", header="To: y"),
)


async def check_search(storage: SqliteStorage) -> None:
    user_id, inbox = await inbox_with(storage, *SEARCH_MESSAGES)
    assert await storage.search_text(inbox.id, "müller", headers=False) == {1}
    assert await storage.search_text(inbox.id, "Müller", headers=True) == {1, 2}
    assert await storage.search_text(inbox.id, "report", headers=False) == set()
    assert await storage.search_text(inbox.id, "REPORT", headers=True) == {2}
    assert await storage.search_text(inbox.id, '"hi"', headers=False) == {3}
    assert await storage.search_text(inbox.id, "a*b or", headers=False) == {3}
    assert await storage.search_text(inbox.id, "σίσυφος", headers=False) == {4}
    assert await storage.search_text(inbox.id, "STRASSE", headers=False) == {4}
    # Short needles (no trigram) still match substrings case-insensitively.
    assert await storage.search_text(inbox.id, "Ö", headers=False) == {1}
    assert await storage.search_text(inbox.id, '"H', headers=False) == {3}
    assert await storage.search_text(inbox.id, "ΣΥ", headers=False) == {4}
    assert await storage.search_text(inbox.id, "", headers=False) == {1, 2, 3, 4}
    assert await storage.search_text(inbox.id, "absent text", headers=True) == set()
    # Other mailboxes do not leak into the result.
    archive = await mailbox(storage, user_id, "Archive")
    await storage.copy(inbox.id, [1], archive.id)
    assert await storage.search_text(archive.id, "müller", headers=True) == {1}


@pytest.mark.skipif(not sqlite_backend.fts5_trigram_available(), reason="no FTS5 trigram")
@storage_test
async def test_search_text_with_trigram_index(storage: SqliteStorage) -> None:
    await check_search(storage)


def test_search_text_without_fts_and_index_rebuilt_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "test.db"

    async def without_fts() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        await check_search(storage)
        await storage.close()

    monkeypatch.setattr(sqlite_backend, "fts5_trigram_available", lambda: False)
    asyncio.run(without_fts())
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "contents_fts" not in tables
    monkeypatch.undo()
    if not sqlite_backend.fts5_trigram_available():
        return

    async def with_fts() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        user = await storage.get_user("alice")
        assert user is not None
        inbox = await mailbox(storage, user.id, "INBOX")
        assert await storage.search_text(inbox.id, "MÜLLER", headers=True) == {1, 2}
        await storage.close()

    asyncio.run(with_fts())


@storage_test
async def test_search_index_follows_deletions(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message("unique words", flags=frozenset({"\\Deleted"})))
    await storage.expunge(inbox.id)
    await storage.append(inbox.id, [message("other words")])
    assert await storage.search_text(inbox.id, "unique", headers=False) == set()
    assert await storage.search_text(inbox.id, "words", headers=False) == {2}


# --------------------------------------------------------------------------- concurrency


@storage_test
async def test_concurrent_appends_get_distinct_consecutive_uids(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage)
    results = await asyncio.gather(
        *(storage.append(inbox.id, [message(f"m{n}")]) for n in range(60)),
        *(storage.message_summaries(inbox.id) for _ in range(20)),
    )
    uids = [uid for result in results[:60] for uid in result.destination_uids]
    assert sorted(uids) == list(range(1, 61))
    summaries = await storage.message_summaries(inbox.id)
    assert [s.uid for s in summaries] == list(range(1, 61))
    assert len({s.modseq for s in summaries}) == 60


@storage_test
async def test_concurrent_flag_changes_are_all_applied(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage, message())
    keywords = [f"$K{n}" for n in range(30)]
    await asyncio.gather(
        *(storage.store_flags(inbox.id, [1], "+", frozenset({k})) for k in keywords)
    )
    assert await flags_by_uid(storage, inbox.id) == {1: set(keywords)}


# --------------------------------------------------------------------------- change notification


@storage_test
async def test_changes_are_published_on_the_loop_thread_after_commit(
    storage: SqliteStorage,
) -> None:
    user_id, inbox = await inbox_with(storage)
    trash = await mailbox(storage, user_id, "Trash")
    loop_thread = threading.get_ident()
    events: list[tuple[int, int]] = []

    def listener(mailbox_id: int) -> None:
        events.append((mailbox_id, threading.get_ident()))

    storage.changes.subscribe(inbox.id, listener)
    storage.changes.subscribe(trash.id, listener)

    await storage.append(inbox.id, [message("1"), message("2")])
    assert events == [(inbox.id, loop_thread)]

    await storage.store_flags(inbox.id, [1], "+", frozenset({"\\Seen"}))
    await storage.store_flags(inbox.id, [1], "+", frozenset({"\\Seen"}))  # no real change
    assert events == [(inbox.id, loop_thread)] * 2

    await storage.move(inbox.id, [1], trash.id)
    assert events[2:] == [(inbox.id, loop_thread), (trash.id, loop_thread)]

    with pytest.raises(ValueError):
        await storage.append(inbox.id, [message(when=datetime.datetime(2024, 1, 1))])
    await storage.claim_recent(inbox.id)
    assert len(events) == 4


@storage_test
async def test_publish_happens_even_if_the_caller_is_cancelled(storage: SqliteStorage) -> None:
    _, inbox = await inbox_with(storage)
    published = asyncio.Event()
    storage.changes.subscribe(inbox.id, lambda _mailbox_id: published.set())
    task = asyncio.create_task(storage.append(inbox.id, [message()]))
    await asyncio.sleep(0)  # let the task hand the write to the writer thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await published.wait()
    assert [s.uid for s in await storage.message_summaries(inbox.id)] == [1]


# --------------------------------------------------------------------------- durability


CHILD = textwrap.dedent(
    """
    import asyncio, datetime, sys
    from mailhaven.storage import SqliteStorage
    from mailhaven.storage.interface import NewMessage

    async def main() -> None:
        storage = SqliteStorage(sys.argv[1])
        await storage.open()
        user = await storage.create_user("alice", "hash")
        inbox = await storage.get_mailbox(user.id, "INBOX")
        when = datetime.datetime(2024, 5, 17, 9, 30, 15, tzinfo=datetime.timezone.utc)
        raw = b"Subject: durable\\r\\n\\r\\nsurvives kill -9\\r\\n"
        await storage.append(inbox.id, [NewMessage(raw, frozenset(), when, b"m")])
        await storage.store_flags(inbox.id, [1], "+", frozenset({"\\\\Seen"}))
        print("committed", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "test.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    async def check() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        user = await storage.get_user("alice")
        assert user is not None
        inbox = await mailbox(storage, user.id, "INBOX")
        summaries = await storage.message_summaries(inbox.id)
        assert [(s.uid, s.flags) for s in summaries] == [(1, {"\\Seen"})]
        contents = await storage.fetch_content(inbox.id, [1], raw=True, metadata=False)
        assert contents[0].raw == b"Subject: durable\r\n\r\nsurvives kill -9\r\n"
        await storage.close()

    asyncio.run(check())
