"""The text index's hits as a mailbox's UIDs (mailhaven/storage/text_hits.py, the
lone BODY/TEXT path of mailhaven/imap/search.py): the content id -> UID map, kept per
process and brought up to date from appends, copies and expunges, must give exactly
what the one-message-at-a-time definition gives, and a SEARCH answered from the hits
as they are must be the answer the view's own messages give."""

from __future__ import annotations

import contextlib
import datetime
import functools
import imaplib
import itertools
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhaven.codec import wire
from mailhaven.imap.search import _hits_in_view
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage import text_backlog, text_hits
from mailhaven.storage.interface import Changes, Mailbox, NewMessage, TextHits
from mailhaven.storage.sqlite import SqliteStorage
from mailhaven.storage.text_hits import ContentUids, ContentUidsCache
from tests.support import ServerThread, alice_inbox, run_with_storage, view_of

# ----------------------------------------------------------------- the map alone

# One step of a mailbox's life: messages added (a new content, or a copy of an earlier
# one, which the mailbox may still hold or not), then some of its UIDs expunged.
Step = tuple[list[int | None], list[int]]


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        added = draw(st.lists(st.one_of(st.none(), st.integers(0, 60)), max_size=30))
        expunged = draw(st.lists(st.integers(1, 120), max_size=15))
        steps.append((added, expunged))
    return steps


def _replay(history: list[Step]) -> list[tuple[dict[int, int], list[tuple[int, int]], list[int]]]:
    """The mailbox (UID -> content id) after each step, with what the step added and
    which of its UIDs it expunged."""
    mailbox: dict[int, int] = {}
    contents: list[int] = []
    next_uid, states = 1, []
    for added, expunged in history:
        pairs = []
        for copied in added:
            if copied is None or not contents:
                contents.append(1000 + len(contents))
                content_id = contents[-1]
            else:
                content_id = contents[copied % len(contents)]
            pairs.append((next_uid, content_id))
            mailbox[next_uid] = content_id
            next_uid += 1
        gone = [uid for uid in expunged if mailbox.pop(uid, None) is not None]
        states.append((dict(mailbox), pairs, gone))
    return states


@given(histories(), st.sets(st.integers(990, 1200)), st.data())
def test_maps_of_every_modseq_give_the_holders_of_each_content(
    history: list[Step], asked: set[int], data: st.DataObject
) -> None:
    """Each step brings the map of some earlier modseq (as a reader whose transaction
    saw it would: the cache's latest, or an older one) up to date from the rows above
    its last UID and the expunges since; every map made so far must still answer as
    its own modseq's mailbox, though they share what they hold."""
    content_ids = [str(content_id) for content_id in sorted(asked)]
    versions = [(ContentUids.of_pairs(7, 1, []), {}, set())]
    expunged_so_far: set[int] = set()
    for modseq, (mailbox, _, gone) in enumerate(_replay(history), start=2):
        expunged_so_far |= set(gone)
        base, _, base_expunged = versions[data.draw(st.integers(0, len(versions) - 1))]
        added = sorted((uid, cid) for uid, cid in mailbox.items() if uid > base.last_uid)
        expunged = sorted(expunged_so_far - base_expunged)
        current = base.advanced(added, expunged, modseq) or ContentUids.of_pairs(
            7, modseq, sorted(mailbox.items())
        )
        assert current.modseq == modseq
        versions.append((current, dict(mailbox), set(expunged_so_far)))
        for version, held, _ in versions:
            expected = sorted(uid for uid, content_id in held.items() if content_id in asked)
            assert version.uids_of(content_ids) == expected


def test_a_copy_within_the_mailbox_answers_for_both_and_outlives_its_original() -> None:
    contents = ContentUids.of_pairs(1, 1, [(1, 10), (2, 11), (3, 10)])
    assert contents.uids_of(["10"]) == [1, 3]
    after = contents.advanced([(4, 10)], [1], 2)
    assert after is not None
    assert after.uids_of(["10", "11"]) == [2, 3, 4]
    alone = after.advanced([], [3], 3)
    assert alone is not None and alone.uids_of(["10"]) == [4]
    assert contents.uids_of(["10"]) == [1, 3]  # the older map is not changed


@pytest.mark.skipif(not sqlite_backend.fts5_trigram_available(), reason="no FTS5 trigram")
def test_the_index_is_asked_only_within_the_mailboxs_content_ids(tmp_path: Path) -> None:
    """The index covers every mailbox: a search asks it only for the range of content
    ids the mailbox holds (a copy of an older message widens it), and an empty mailbox
    does not ask it at all."""
    contents = ContentUids.of_pairs(1, 1, [(1, 40), (2, 12), (3, 41)])
    assert contents.content_range() == (12, 41)
    low, high = ContentUids.of_pairs(1, 1, []).content_range()
    assert low > high

    async def scenario(storage: SqliteStorage) -> tuple[int, int, int]:
        inbox = await alice_inbox(storage)
        empty = await storage.create_mailbox(inbox.user_id, "Empty")
        later = await storage.create_mailbox(inbox.user_id, "Later")
        await storage.append(inbox.id, [_new(f"harbor {i}") for i in range(6)])
        await storage.append(later.id, [_new("harbor later"), _new("no match")])
        await storage.copy(inbox.id, [2], later.id)
        return inbox.id, empty.id, later.id

    inbox_id, empty_id, later_id = run_with_storage(tmp_path / "test.db", scenario)
    cache = ContentUidsCache()
    statements: list[str] = []
    with contextlib.closing(sqlite3.connect(tmp_path / "test.db")) as conn:
        # Closed before the writer was idle: nothing indexed yet, the text is scanned.
        conn.set_trace_callback(statements.append)
        assert _search(conn, inbox_id, '"harbor"', cache).uids == [1, 2, 3, 4, 5, 6]
        assert not [sql for sql in statements if "MATCH" in sql]
        index_everything(conn)
        statements.clear()
        assert _search(conn, empty_id, '"harbor"', cache).uids == []
        assert not [sql for sql in statements if "MATCH" in sql]
        assert _search(conn, later_id, '"harbor"', cache).uids == [1, 3]
        assert _search(conn, inbox_id, '"harbor"', cache).uids == [1, 2, 3, 4, 5, 6]
        ranges = [sql for sql in statements if "MATCH" in sql]
    # Later holds contents 7 and 8 and the copy of content 2.
    assert "BETWEEN 2 AND 8" in ranges[0] and "BETWEEN 1 AND 6" in ranges[1]


def test_cache_answers_for_the_transactions_modseq_within_its_budget(tmp_path: Path) -> None:
    """The cache answers with the map of the modseq asked for, never a later one (none
    for an older one), and forgets the least recently used mailbox past its budget."""

    async def scenario(storage: SqliteStorage) -> tuple[int, int, int]:
        inbox = await alice_inbox(storage)
        other = await storage.create_mailbox(inbox.user_id, "Other")
        await storage.append(inbox.id, [_new(f"body {i}") for i in range(5)])
        await storage.append(other.id, [_new(f"body {i}") for i in range(5)])
        return inbox.id, other.id, inbox.uidvalidity

    inbox_id, other_id, uidvalidity = run_with_storage(tmp_path / "test.db", scenario)
    cache = ContentUidsCache(budget=8)
    with contextlib.closing(sqlite3.connect(tmp_path / "test.db")) as conn:
        first = cache.current(conn, inbox_id, uidvalidity, 50)
        assert len(first) == 5 and cache.current(conn, inbox_id, uidvalidity, 50) is first
        # An older modseq than the cached map's: not mapped (the search joins in SQL),
        # the cached one kept.
        assert cache.current(conn, inbox_id, uidvalidity, 40) is None
        assert cache.current(conn, inbox_id, uidvalidity, 50) is first
        # Another UIDVALIDITY (a new incarnation of the mailbox): read afresh.
        assert cache.current(conn, inbox_id, uidvalidity + 1, 50).uidvalidity == uidvalidity + 1
        # Ten messages over a budget of eight: the other mailbox's map pushes it out.
        cache.current(conn, inbox_id, uidvalidity, 50)
        cache.current(conn, other_id, 1, 1)
        again = cache.current(conn, inbox_id, uidvalidity, 50)
        assert again is not first and again.uids_of(["1", "5"]) == first.uids_of(["1", "5"])


@pytest.mark.skipif(not sqlite_backend.fts5_trigram_available(), reason="no FTS5 trigram")
def test_a_search_older_than_the_cached_map_answers_for_its_own_modseq(tmp_path: Path) -> None:
    """A search whose transaction began before a change that a later search has
    already mapped gets the answer of its own modseq (joined in SQL), and the later
    map stays cached."""
    path = tmp_path / "test.db"

    async def first(storage: SqliteStorage) -> int:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_new("harbor one"), _new("other")])
        return inbox.id

    inbox_id = run_with_storage(path, first)
    cache = ContentUidsCache()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as older:
        older.execute("BEGIN")
        older.execute("SELECT count(*) FROM messages").fetchone()  # its snapshot starts
        run_with_storage(path, functools.partial(_expunge_first_and_append, inbox_id))
        with contextlib.closing(sqlite3.connect(path)) as later:
            assert _search(later, inbox_id, '"harbor"', cache).uids == [3]
        # The later map no longer holds UID 1, which this transaction still sees.
        assert _search(older, inbox_id, '"harbor"', cache).uids == [1]
        older.execute("ROLLBACK")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        inbox = sqlite_backend._mailbox_by_id(conn, inbox_id)
        assert cache.current(conn, inbox_id, inbox.uidvalidity, inbox.highest_modseq).uids_of(
            ["3"]
        ) == [3]


async def _expunge_first_and_append(inbox_id: int, storage: SqliteStorage) -> None:
    await storage.store_flags(inbox_id, [1], "+", frozenset({"\\Deleted"}))
    assert await storage.expunge(inbox_id, [1]) == [1]
    await storage.append(inbox_id, [_new("harbor two")])


def test_a_mailbox_larger_than_the_budget_is_joined_in_sql(tmp_path: Path) -> None:
    """Reading every pair for each search would cost more than the map saves: a
    mailbox over the whole budget is searched with the join, with the same answer."""

    async def scenario(storage: SqliteStorage) -> tuple[int, int]:
        inbox = await alice_inbox(storage)
        await storage.append(inbox.id, [_new(f"{word} {i}") for i, word in enumerate(WORDS)])
        copied = await storage.copy(inbox.id, [1, 2], inbox.id)  # a content held twice
        assert copied.destination_uids == (8, 9)
        return inbox.id, inbox.uidvalidity

    inbox_id, uidvalidity = run_with_storage(tmp_path / "test.db", scenario)
    cache = ContentUidsCache(budget=5)
    with contextlib.closing(sqlite3.connect(tmp_path / "test.db")) as conn:
        answers = [_search(conn, inbox_id, '"harbor"', cache) for _ in range(2)]
        assert cache.current(conn, inbox_id, uidvalidity, answers[1].modseq) is None
    assert answers[0] == answers[1]
    assert answers[0].uids == [1, 8]


# ----------------------------------------------------------------- the store


def _search(
    conn: sqlite3.Connection, mailbox_id: int, phrase: str, cache: ContentUidsCache
) -> TextHits:
    """text_hits.search with the mailbox's row read in *conn*'s transaction, as
    _search_text reads it."""
    mailbox = sqlite_backend._mailbox_by_id(conn, mailbox_id)
    return text_hits.search(conn, mailbox, phrase, cache, phrase.strip('"'), True)


def index_everything(conn: sqlite3.Connection) -> None:
    """Index every content not yet indexed (what the idle writer does), on *conn*."""
    with conn:
        while text_backlog.index_next(conn):
            pass


def _new(text: str) -> NewMessage:
    raw = f"Subject: s\r\n\r\n{text}\r\n".encode()
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return NewMessage(raw, frozenset(), when, b"meta", text, "subject: s")


WORDS = ("harbor", "view", "Straße", "ΣΊΣΥΦΟΣ", "hay", "stack", "ärger")
NEEDLES = ("harborview", "rbo", "viewhar", "strasse", "σίσυφος", "hay", "ΑΡΓ", "ck", "zzz")

# Operations on two mailboxes: append texts, copy UIDs (by position) from one to the
# other or within one, expunge UIDs (by position), search.
Operation = tuple[str, int, list[int]]


@st.composite
def operations(draw: st.DrawFn) -> list[Operation]:
    kinds = st.sampled_from(["append", "copy", "expunge", "search", "search"])
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(kinds)
        box = draw(st.integers(0, 1))
        picks = draw(st.lists(st.integers(0, 40), max_size=6))
        ops.append((kind, box, picks))
    return ops


@pytest.mark.skipif(not sqlite_backend.fts5_trigram_available(), reason="no FTS5 trigram")
@settings(max_examples=30, deadline=None)
@given(ops=operations(), rng=st.randoms(use_true_random=False))
def test_hits_are_the_matching_messages_at_their_modseq(
    ops: list[Operation], rng: random.Random
) -> None:
    """Against the definition, message by message: after any mix of appends, copies
    (within a mailbox and between two) and expunges, interleaved with searches that
    fill the process's map and bring it up to date, the hits are exactly the
    mailbox's messages whose text contains the needle, at the mailbox's modseq."""

    async def scenario(storage: SqliteStorage) -> None:
        inbox = await alice_inbox(storage)
        await storage.create_mailbox(inbox.user_id, "Other")
        other = await storage.get_mailbox(inbox.user_id, "Other")
        assert other is not None
        boxes = [inbox.id, other.id]
        texts: list[dict[int, str]] = [{}, {}]  # the definition: UID -> text per mailbox
        for kind, box, picks in ops:
            held = sorted(texts[box])
            if kind == "append":
                new = [" ".join(rng.choices(WORDS, k=rng.randint(1, 4))) for _ in picks or [0]]
                await storage.append(boxes[box], [_new(text) for text in new])
                first = max(texts[box], default=0) + 1
                uidnext = (await _mailbox(storage, boxes[box])).uidnext
                texts[box].update(zip(range(uidnext - len(new), uidnext), new, strict=True))
                assert uidnext - len(new) >= first
            elif kind == "copy" and held:
                target = rng.randint(0, 1)
                uids = sorted({held[pick % len(held)] for pick in picks})
                result = await storage.copy(boxes[box], uids, boxes[target])
                for source, copied in zip(result.source_uids, result.destination_uids, strict=True):
                    texts[target][copied] = texts[box][source]
            elif kind == "expunge" and held:
                uids = sorted({held[pick % len(held)] for pick in picks})
                await storage.store_flags(boxes[box], uids, "+", frozenset({"\\Deleted"}))
                for uid in await storage.expunge(boxes[box], uids):
                    del texts[box][uid]
            for index, mailbox_id in enumerate(boxes):
                needle = rng.choice(NEEDLES)
                hits = await storage.search_text_hits(mailbox_id, needle, headers=False)
                expected = [
                    uid
                    for uid, text in sorted(texts[index].items())
                    if needle.casefold() in text.casefold()
                ]
                assert hits.uids == expected, (needle, texts[index])
                assert hits.modseq == (await _mailbox(storage, mailbox_id)).highest_modseq

    with tempfile.TemporaryDirectory() as directory:
        run_with_storage(Path(directory) / "test.db", scenario)


async def _mailbox(storage: SqliteStorage, mailbox_id: int) -> Mailbox:
    return await storage._read(sqlite_backend._mailbox_by_id, mailbox_id)


# ----------------------------------------------------------------- the view


def test_hits_of_the_views_modseq_are_taken_as_they_are() -> None:
    view = view_of([1, 2, 4, 5, 9], known_modseq=12)
    hits = TextHits(12, [2, 5, 9])
    assert _hits_in_view(view, hits) is hits.uids


def test_hits_of_another_modseq_are_cut_to_what_the_view_holds() -> None:
    view = view_of([1, 2, 4, 5, 9], known_modseq=12)
    # Hits of a later modseq: 3 is not in the view (an earlier expunge it reported),
    # 11 arrived after the view was last brought up to date.
    assert _hits_in_view(view, TextHits(14, [2, 3, 5, 11])) == [2, 5]


def test_hits_beside_expunges_not_yet_reported_are_cut_to_the_view() -> None:
    view = view_of([1, 2, 4, 5, 9], known_modseq=12)
    view.apply_changes(_expunged_at(13, [4]))
    assert view.known_modseq == 13 and view.has_pending_expunges
    # Were it taken as it is, an answer with a UID the view has no number for could
    # come out; held() keeps the view's own.
    assert _hits_in_view(view, TextHits(13, [2, 5, 9])) == [2, 5, 9]
    assert view.sequence_numbers([2, 5, 9]) == [2, 4, 5]  # 4 keeps its number until reported


def _expunged_at(modseq: int, uids: list[int]) -> Changes:
    return Changes(highest_modseq=modseq, uidnext=10, changed=(), expunged=tuple(uids))


# ----------------------------------------------------------------- over IMAP


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = ServerThread(tmp_path_factory.mktemp("text-hits")).start()
    server.add_user("alice")
    yield server
    server.stop()


def _numbers(data: list[bytes]) -> list[int]:
    return [int(n) for n in data[0].split()]


def test_copies_and_an_expunge_another_session_made(server: ServerThread) -> None:
    """Copies within the mailbox share their original's content and match with it;
    a message another session expunged is not in the answer, and sequence numbers
    stay those of the view until its EXPUNGE is reported."""
    imap = server.imaplib_client("alice")
    other = server.imaplib_client("alice")
    try:
        assert imap.create("Copies")[0] == "OK"
        bodies = ["alpha harborview", "beta", "gamma HarborView", "delta", "harborview e", "z"]
        for body in bodies:
            assert other.append("Copies", None, None, f"Subject: s\r\n\r\n{body}\r\n".encode())
        imap.select("Copies")
        assert imap.uid("COPY", "1,3", "Copies")[0] == "OK"  # UIDs 7 and 8
        imap.noop()
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview")[1]) == [1, 3, 5, 7, 8]

        other.select("Copies")
        assert other.uid("STORE", "3", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert other.expunge()[0] == "OK"
        # Not yet reported to imap: UID 3 keeps sequence number 3.
        assert _numbers(imap.search(None, "TEXT", "harborview")[1]) == [1, 5, 7, 8]
        assert _numbers(imap.search(None, "TEXT", "harborview")[1]) == [1, 5, 7, 8]
        imap.noop()  # now the EXPUNGE
        assert imap.response("EXPUNGE")[1] == [b"3"]
        assert _numbers(imap.search(None, "TEXT", "harborview")[1]) == [1, 4, 6, 7]
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview")[1]) == [1, 5, 7, 8]

        # The original of a copy goes; the copy still holds the content.
        assert other.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert other.expunge()[0] == "OK"
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview")[1]) == [5, 7, 8]
        # A message whose content lives on in another mailbox (a copy there) goes.
        assert other.create("Elsewhere")[0] == "OK"
        assert other.uid("COPY", "5", "Elsewhere")[0] == "OK"
        assert other.uid("STORE", "5", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert other.expunge()[0] == "OK"
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview")[1]) == [7, 8]
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview")[1]) == [7, 8]
        # Combined with other keys, the general path agrees.
        assert _numbers(imap.uid("SEARCH", "TEXT", "harborview", "NOT", "UID", "8")[1]) == [7]
        assert _numbers(imap.uid("SEARCH", "OR", "TEXT", "beta", "BODY", "gamma")[1]) == [2, 8]
    finally:
        for client in (imap, other):
            with contextlib.suppress(imaplib.IMAP4.abort, OSError):
                client.logout()


# ----------------------------------------------------------------- ESEARCH ALL


def _spans_of(encoded: bytes) -> list[tuple[int, int]]:
    spans = []
    for part in encoded.split(b",") if encoded else []:
        low, _, high = part.partition(b":")
        spans.append((int(low), int(high or low)))
    return spans


EVERY_THIRD = st.builds(lambda n: set(range(1, 3 * n, 3)), st.integers(0, 200))


@given(st.sets(st.integers(1, 400)) | EVERY_THIRD)
def test_sequence_set_lists_each_number_once_in_maximal_runs(numbers: set[int]) -> None:
    """ESEARCH ALL of a common word (RFC 4731): every number exactly once, ascending
    runs as low:high, no two runs that could be one, also when no two numbers are in
    a row (the single formatting call)."""
    spans = _spans_of(wire.sequence_set(numbers))
    listed = [n for low, high in spans for n in range(low, high + 1)]
    assert listed == sorted(numbers)
    assert all(later[0] > earlier[1] + 1 for earlier, later in itertools.pairwise(spans))
