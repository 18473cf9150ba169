"""Column snapshots kept in the database for the first SELECT of a process
(mailhaven/storage/stored_columns.py).

* The stored form decodes to the very snapshot that was encoded.
* A process with nothing in memory starts from the stored snapshot and brings it up to
  date through the changes made since (by any process): the result is the mailbox as a
  full read gives it, without a full read.
* A stored snapshot never outlives its mailbox's incarnation and is only replaced by a
  later one; it is stored again once many changes were applied to it, and after an
  import.
"""

from __future__ import annotations

import datetime
import random
import sqlite3
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.storage import SqliteStorage, stored_columns
from mailhaven.storage import sqlite as storage_sqlite
from mailhaven.storage.column_cache import ColumnSnapshot
from mailhaven.storage.fsck import check_database, column_lists
from mailhaven.storage.interface import Mailbox, MessageColumns, NewMessage
from tests.support import ServerThread, alice_inbox, mail, run_with_storage
from tests.test_mailflow_sources import make_dovecot_maildir, run

FLAG_SETS = [
    frozenset(),
    frozenset({"\\Seen"}),
    frozenset({"\\Seen", "$Junk"}),
    frozenset({"Work", "\\Flagged"}),
]


def _store_every_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small mailboxes are stored too, and a stored snapshot is not stored again."""
    monkeypatch.setattr(stored_columns, "STORE_AT_MESSAGES", 1)
    monkeypatch.setattr(stored_columns, "STORE_AGAIN_AFTER_CHANGES", 10**9)


@pytest.fixture
def store_every_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    _store_every_mailbox(monkeypatch)


def _assert_same(snapshot: ColumnSnapshot, expected: MessageColumns) -> None:
    assert column_lists(snapshot.columns) == column_lists(expected)
    fresh = ColumnSnapshot(expected, snapshot.modseq)
    assert snapshot.flag_counts() == fresh.flag_counts()
    assert snapshot.first_unseen() == fresh.first_unseen()


# ------------------------------------------------------------------- the stored form


@st.composite
def snapshots(draw: st.DrawFn) -> ColumnSnapshot:
    uids = sorted(draw(st.sets(st.integers(1, 2**32 - 1), max_size=60)))
    count = len(uids)
    values = st.integers(-(2**63), 2**63 - 1)
    columns = MessageColumns(
        array("I", uids),
        tuple(draw(st.lists(st.sampled_from(FLAG_SETS), min_size=count, max_size=count))),
        array("q", draw(st.lists(values, min_size=count, max_size=count))),
        array("q", draw(st.lists(values, min_size=count, max_size=count))),
        array(
            "i", draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=count, max_size=count))
        ),
        array("q", draw(st.lists(st.integers(0, 2**63 - 1), min_size=count, max_size=count))),
    )
    return ColumnSnapshot(columns, draw(st.integers(1, 2**63 - 1)))


@given(snapshots())
def test_the_stored_form_decodes_to_the_snapshot(snapshot: ColumnSnapshot) -> None:
    decoded = stored_columns.decode(stored_columns.encode(snapshot), snapshot.modseq)
    assert decoded is not None
    assert decoded.modseq == snapshot.modseq
    _assert_same(decoded, snapshot.columns)
    assert decoded.flag_counts() == snapshot.flag_counts()
    assert [column.typecode for column in (decoded.uids, decoded.modseqs, decoded.sizes)] == [
        "I",
        "q",
        "q",
    ]


def test_other_forms_are_not_taken_for_a_snapshot() -> None:
    snapshot = ColumnSnapshot(
        MessageColumns(
            array("I", [1, 2]),
            (FLAG_SETS[0], FLAG_SETS[1]),
            array("q", [3, 4]),
            array("q", [5, 6]),
            array("i", [0, 60]),
            array("q", [7, 8]),
        ),
        4,
    )
    data = stored_columns.encode(snapshot)
    assert stored_columns.decode(data, 4) is not None
    assert stored_columns.decode(data[:-1], 4) is None
    assert stored_columns.decode(data + b"\0", 4) is None
    assert stored_columns.decode(b"MHC2" + data[4:], 4) is None
    assert stored_columns.decode(b"", 4) is None


# ------------------------------------------------------------ across processes


def _message(i: int, flags: frozenset[str]) -> NewMessage:
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(hours=i)
    return NewMessage(mail(i), flags, when, b"meta")


def _stored_row(path: Path, mailbox_id: int) -> tuple[int, int] | None:
    """(UIDVALIDITY, modseq) of the mailbox's stored snapshot, if any."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT uidvalidity, modseq FROM column_snapshots WHERE mailbox_id = ?",
            (mailbox_id,),
        ).fetchone()
    finally:
        conn.close()


async def _random_changes(storage: SqliteStorage, inbox: Mailbox, rng: random.Random) -> None:
    """Another process's appends, flag changes, expunges and copies into the mailbox:
    at most 15 changed or expunged messages, few enough to be applied to a stored snapshot of 70
    messages or more (see column_cache.updated)."""
    other = await storage.create_mailbox(inbox.user_id, f"Other{rng.random()}")
    await storage.append(other.id, [_message(900 + i, FLAG_SETS[i % 4]) for i in range(3)])
    for step in range(rng.randint(1, 5)):
        uids = list((await storage.message_columns(inbox.id)).uids)
        action = rng.choice(["append", "flags", "expunge", "copy"])
        if action == "append" or not uids:
            flags = rng.choice(FLAG_SETS)
            await storage.append(inbox.id, [_message(100 + step, flags)])
        elif action == "flags":
            chosen = rng.sample(uids, min(len(uids), rng.randint(1, 3)))
            await storage.store_flags(inbox.id, chosen, rng.choice("+-"), rng.choice(FLAG_SETS))
        elif action == "expunge":
            chosen = rng.sample(uids, min(len(uids), rng.randint(1, 3)))
            await storage.store_flags(inbox.id, chosen, "+", frozenset({"\\Deleted"}))
            assert await storage.expunge(inbox.id, chosen)
        else:
            await storage.copy(other.id, [1, 3], inbox.id)


def _never_read_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(conn: sqlite3.Connection, mailbox_id: int) -> MessageColumns:
        raise AssertionError("read in full although a snapshot is stored")

    monkeypatch.setattr(storage_sqlite, "_all_columns", refuse)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(70, 100))
def test_a_new_process_starts_from_the_stored_snapshot(
    tmp_path_factory: pytest.TempPathFactory, seed: int, count: int
) -> None:
    path = tmp_path_factory.mktemp("stored") / "test.db"
    rng = random.Random(seed)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _store_every_mailbox(monkeypatch)

        async def first_process(storage: SqliteStorage) -> Mailbox:
            inbox = await alice_inbox(storage)
            messages = [_message(i, rng.choice(FLAG_SETS)) for i in range(count)]
            await storage.append(inbox.id, messages)
            await storage.column_snapshot(inbox.id)  # read in full, then stored
            return inbox

        inbox = run_with_storage(path, first_process)
        assert _stored_row(path, inbox.id) is not None

        async def second_process(storage: SqliteStorage) -> None:
            await _random_changes(storage, inbox, rng)

        run_with_storage(path, second_process)

        async def third_process(storage: SqliteStorage) -> ColumnSnapshot:
            return await storage.column_snapshot(inbox.id)

        truth = _stored_columns_at(path, inbox.id)
        _never_read_in_full(monkeypatch)
        _assert_same(run_with_storage(path, third_process), truth)


def _stored_columns_at(path: Path, mailbox_id: int) -> MessageColumns:
    conn = sqlite3.connect(path)
    try:
        return storage_sqlite._all_columns(conn, mailbox_id)
    finally:
        conn.close()


def test_a_stored_snapshot_goes_with_its_mailbox_incarnation(
    tmp_path: Path, store_every_mailbox: None
) -> None:
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> None:
        user = (await alice_inbox(storage)).user_id
        work = await storage.create_mailbox(user, "Work")
        await storage.append(work.id, [_message(i, FLAG_SETS[i % 4]) for i in range(5)])
        await storage.store_column_snapshot(work.id)
        work = await storage.get_mailbox(user, "Work")
        assert _stored_row(path, work.id) == (work.uidvalidity, work.highest_modseq)

        await storage.rename_mailbox(user, "Work", "Play")  # a new UIDVALIDITY
        assert _stored_row(path, work.id) is None
        await storage.store_column_snapshot(work.id)
        assert _stored_row(path, work.id) is not None
        await storage.delete_mailbox(user, "Play")
        assert _stored_row(path, work.id) is None

    run_with_storage(path, scenario)


def test_an_earlier_snapshot_never_replaces_a_later_one(
    tmp_path: Path, store_every_mailbox: None
) -> None:
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> tuple[Mailbox, ColumnSnapshot]:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_message(1, FLAG_SETS[0])])
        earlier = await storage.column_snapshot(inbox.id)
        await storage.append(inbox.id, [_message(2, FLAG_SETS[1])])
        await storage.store_column_snapshot(inbox.id)
        return inbox, earlier

    inbox, earlier = run_with_storage(path, scenario)
    uidvalidity, later_modseq = _stored_row(path, inbox.id)
    assert later_modseq > earlier.modseq
    conn = sqlite3.connect(path)
    with conn:
        data = stored_columns.encode(earlier)
        stored_columns.store(conn, inbox.id, uidvalidity, data, earlier.modseq)
    conn.close()
    assert _stored_row(path, inbox.id) == (uidvalidity, later_modseq)


def test_stored_again_once_many_changes_were_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "test.db"
    monkeypatch.setattr(stored_columns, "STORE_AT_MESSAGES", 1)
    monkeypatch.setattr(stored_columns, "STORE_AGAIN_AFTER_CHANGES", 3)

    async def fill(storage: SqliteStorage) -> Mailbox:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_message(i, FLAG_SETS[0]) for i in range(4)])
        await storage.column_snapshot(inbox.id)
        return inbox

    async def change(storage: SqliteStorage, uids: list[int]) -> None:
        await storage.store_flags(inbox.id, uids, "+", frozenset({"\\Seen"}))

    async def select(storage: SqliteStorage) -> None:
        await storage.column_snapshot(inbox.id)

    inbox = run_with_storage(path, fill)
    stored = _stored_row(path, inbox.id)
    run_with_storage(path, lambda storage: change(storage, [1, 2]))
    run_with_storage(path, select)
    assert _stored_row(path, inbox.id) == stored  # two changes: caught up, not stored
    run_with_storage(path, lambda storage: change(storage, [3]))
    run_with_storage(path, select)
    assert _stored_row(path, inbox.id)[1] > stored[1]  # three: stored again


def test_an_import_stores_the_snapshot(tmp_path: Path, store_every_mailbox: None) -> None:
    maildir = tmp_path / "Maildir"
    make_dovecot_maildir(maildir)
    data_dir = tmp_path / "data"
    run(data_dir, "user", "add", "alice", "--password-stdin", stdin="x\n")
    assert run(data_dir, "import", "alice", str(maildir)) == 0
    path = data_dir / "mailhaven.db"
    conn = sqlite3.connect(path)
    mailboxes = conn.execute(
        "SELECT id, uidvalidity, highest_modseq FROM mailboxes"
        " WHERE id IN (SELECT mailbox_id FROM messages)"
    ).fetchall()
    conn.close()
    assert len(mailboxes) == 3
    for mailbox_id, uidvalidity, modseq in mailboxes:
        assert _stored_row(path, mailbox_id) == (uidvalidity, modseq)


def test_a_restarted_server_answers_from_the_stored_snapshot(
    tmp_path: Path, store_every_mailbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ServerThread(tmp_path).start()
    server.add_user("alice")
    imap = server.imaplib_client("alice")
    for n in range(6):
        imap.append("INBOX", "(\\Seen)" if n < 2 else None, None, mail(n))
    imap.select("INBOX")  # read in full, and stored
    imap.logout()
    server.stop()

    server = ServerThread(tmp_path).start()  # a later process changes the mailbox
    imap = server.imaplib_client("alice")
    imap.select("INBOX")
    imap.store("1,3", "+FLAGS", "(\\Deleted $Later)")
    imap.expunge()
    imap.append("INBOX", "(\\Seen)", None, mail(7))
    imap.logout()
    server.stop()

    _never_read_in_full(monkeypatch)
    server = ServerThread(tmp_path).start()
    imap = server.imaplib_client("alice")
    typ, data = imap.select("INBOX")
    assert (typ, data) == ("OK", [b"5"])
    assert imap.untagged_responses["UNSEEN"] == [b"2"]
    typ, data = imap.fetch("1:*", "(UID FLAGS)")
    assert typ == "OK"
    assert data == [
        b"1 (UID 2 FLAGS (\\Seen))",
        b"2 (UID 4 FLAGS ())",
        b"3 (UID 5 FLAGS ())",
        b"4 (UID 6 FLAGS ())",
        b"5 (UID 7 FLAGS (\\Seen))",
    ]
    imap.logout()
    server.stop()


def test_fsck_finds_a_stored_snapshot_that_differs_from_the_messages(
    tmp_path: Path, store_every_mailbox: None
) -> None:
    path = tmp_path / "test.db"

    async def scenario(storage: SqliteStorage) -> Mailbox:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_message(i, FLAG_SETS[i % 4]) for i in range(5)])
        await storage.store_column_snapshot(inbox.id)
        await storage.store_flags(inbox.id, [2], "+", frozenset({"\\Answered"}))
        return inbox

    inbox = run_with_storage(path, scenario)
    assert _snapshot_problems(path) == []  # behind by one change, which catches it up
    conn = sqlite3.connect(path)
    with conn:
        modseq, data = conn.execute("SELECT modseq, data FROM column_snapshots").fetchone()
        snapshot = stored_columns.decode(data, modseq)
        columns = snapshot.columns
        wrong = ColumnSnapshot(
            MessageColumns(
                columns.uids,
                (FLAG_SETS[3], *columns.flags[1:]),
                columns.modseqs,
                columns.internal_dates,
                columns.tz_offsets,
                columns.sizes,
            ),
            modseq,
        )
        conn.execute(
            "UPDATE column_snapshots SET data = ? WHERE mailbox_id = ?",
            (stored_columns.encode(wrong), inbox.id),
        )
    conn.close()
    assert _snapshot_problems(path) == [
        f"stored column snapshot differs from its messages: mailbox {inbox.id}"
    ]


def _snapshot_problems(path: Path) -> list[str]:
    # The test's messages carry placeholder metadata, which fsck reports on its own.
    return [line for line in check_database(path) if "column snapshot" in line]
