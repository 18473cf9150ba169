"""Many sessions woken by one change share the work (mailhaven/storage/coalesce.py):
one change read per question, one \\Recent claim per change, and every session still
gets what RFC 3501/9051 promise it."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from mailhaven.mailflow.messages import prepare
from mailhaven.storage.coalesce import RecentClaims, SharedReads
from mailhaven.storage.interface import NewMessage
from mailhaven.storage.sqlite import SqliteStorage
from tests.support import ServerThread, alice_inbox, count_reads, mail, run_with_storage

# ---------------------------------------------------------------------- SharedReads


def test_concurrent_reads_with_one_key_share_one_start() -> None:
    async def scenario() -> tuple[list[str], int]:
        reads = SharedReads()
        starts = 0

        async def start() -> str:
            nonlocal starts
            starts += 1
            await asyncio.sleep(0.01)
            return f"answer {starts}"

        answers = await asyncio.gather(*(reads.read("key", start) for _ in range(100)))
        return answers, starts

    answers, starts = asyncio.run(scenario())
    assert starts == 1
    assert answers == ["answer 1"] * 100


def test_reads_with_other_keys_or_later_start_their_own() -> None:
    async def scenario() -> list[int]:
        reads = SharedReads()
        counter = iter(range(100))

        async def start() -> int:
            await asyncio.sleep(0.01)
            return next(counter)

        first = await asyncio.gather(reads.read("a", start), reads.read("b", start))
        later = await reads.read("a", start)  # the first read of "a" is over
        return [*first, later]

    assert sorted(asyncio.run(scenario())) == [0, 1, 2]


def test_a_cancelled_caller_does_not_cancel_the_shared_read() -> None:
    async def scenario() -> str:
        reads = SharedReads()

        async def start() -> str:
            await asyncio.sleep(0.05)
            return "done"

        impatient = asyncio.ensure_future(reads.read("key", start))
        patient = asyncio.ensure_future(reads.read("key", start))
        await asyncio.sleep(0.01)
        impatient.cancel()
        return await patient

    assert asyncio.run(scenario()) == "done"


def test_a_failed_read_fails_every_caller() -> None:
    async def scenario() -> list[BaseException | str]:
        reads = SharedReads()

        async def start() -> str:
            await asyncio.sleep(0.01)
            raise LookupError("gone")

        return await asyncio.gather(
            *(reads.read("key", start) for _ in range(3)), return_exceptions=True
        )

    assert all(isinstance(result, LookupError) for result in asyncio.run(scenario()))


# ---------------------------------------------------------------------- RecentClaims


def test_many_sessions_seeing_one_change_make_one_claim() -> None:
    async def scenario() -> tuple[list[set[int]], int]:
        claims = RecentClaims()
        made = 0

        async def start() -> tuple[set[int], int]:
            nonlocal made
            made += 1
            await asyncio.sleep(0.01)
            return {7}, 5

        results = await asyncio.gather(*(claims.claim(1, 5, start) for _ in range(50)))
        again = await claims.claim(1, 5, start)  # covered by the finished claim
        return [*results, again], made

    results, made = asyncio.run(scenario())
    assert made == 1
    assert results.count({7}) == 1  # exactly one session gets \Recent (RFC 3501 2.3.2)
    assert all(result == set() for result in results if result != {7})


def test_a_later_change_is_claimed_again_after_an_earlier_claim_in_flight() -> None:
    async def scenario() -> list[set[int]]:
        claims = RecentClaims()
        covered = iter([(({1}, 5)), ({2}, 6)])

        async def start() -> tuple[set[int], int]:
            await asyncio.sleep(0.01)
            return next(covered)

        # The second session has seen modseq 6: the claim begun for 5 may miss it.
        return list(await asyncio.gather(claims.claim(1, 5, start), claims.claim(1, 6, start)))

    assert asyncio.run(scenario()) == [{1}, {2}]


# ---------------------------------------------------------------------- the store


def _new_message() -> NewMessage:
    return prepare(mail(1), internal_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))


def test_changes_since_shares_a_query_only_within_one_generation(tmp_path: Path) -> None:
    async def scenario(storage: SqliteStorage) -> tuple[list[str], int, int]:
        inbox = await alice_inbox(storage)
        calls = count_reads(storage)
        await asyncio.gather(*(storage.changes_since(inbox.id, 0) for _ in range(20)))
        shared = calls.count("_changes_since")
        # A read still running when a commit is published must not answer a
        # session that the publish woke: it starts a read of its own.
        before = asyncio.ensure_future(storage.changes_since(inbox.id, 0))
        await storage.append(inbox.id, [_new_message()])
        after = await storage.changes_since(inbox.id, 0)
        await before
        return calls, shared, len(after.changed)

    calls, shared, seen_after_publish = run_with_storage(tmp_path / "store.db", scenario)
    assert shared == 1
    assert calls.count("_changes_since") == 3
    assert seen_after_publish == 1


# ---------------------------------------------------------------------- over sockets

IDLERS = 30


@pytest.fixture
def idlers(server: ServerThread):  # noqa: ANN201
    clients = []
    for _ in range(IDLERS):
        client = server.raw()
        client.login("alice")
        assert client.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
        client.send(b"I IDLE\r\n")
        assert client.read_line().startswith(b"+ ")
        clients.append(client)
    yield clients
    for client in clients:
        client.close()


def test_one_append_reaches_every_idler_with_one_read_and_one_recent(server, idlers) -> None:
    calls = count_reads(server.storage)
    writer = server.imaplib_client("alice")
    writer.append("INBOX", None, None, mail(1))
    for client in idlers:
        assert client.read_line() == b"* 1 EXISTS"
    reads_during_fan_out = calls.count("_changes_since")
    answers = []
    for client in idlers:
        client.send(b"DONE\r\n")
        answers.append(client.read_until_tagged(b"I"))
    assert all(lines[-1].startswith(b"I OK") for lines in answers)
    # RFC 3501 section 2.3.2: exactly one session is told the message is recent.
    assert sum(b"* 1 RECENT" in lines for lines in answers) == 1
    # Woken together, the idlers share their reads (not one each).
    assert reads_during_fan_out < IDLERS / 2
    writer.logout()


def test_idlers_in_other_mailboxes_are_not_woken(server, idlers) -> None:
    writer = server.imaplib_client("alice")
    writer.append("Drafts", None, None, mail(1))
    writer.append("INBOX", None, None, mail(2))
    for client in idlers:
        assert client.read_line() == b"* 1 EXISTS"  # nothing about Drafts first
    writer.logout()
