"""Repeated commands on one connection to a large mailbox: the per-command cost of the
selected view (SELECT, FETCH FLAGS of everything, SEARCH UNSEEN, STORE one message).

    python -m benchmarks.viewbench --messages 10000 [--rounds 15] [--server HOST:PORT]

Loads N small messages (MULTIAPPEND, 1,000 per command; one in four unseen, a few
keywords) into a fresh Mailhaven, then times each command ``--rounds`` times on one
connection and prints the minimum and median in milliseconds.  ``imapbench`` measures
the same commands once or thrice among other work; this isolates them, so that a
before/after comparison on a loaded machine can rest on medians of many runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import servers
from benchmarks.client import ImapClient, literal_plus, search_uids

BATCH = 1000
KEYWORDS = (b"", b"", b"", b" $Forwarded", b" $Junk", b" $Label1 $Label2")


def _message(i: int) -> bytes:
    return (
        b"From: Sender %d <s%d@example.com>\r\nTo: bench@example.com\r\n"
        b"Subject: message %d\r\nMessage-ID: <%d@bench>\r\n"
        b"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n\r\nBody of message %d.\r\n" % (i, i, i, i, i)
    )


def _flags(i: int) -> bytes:
    seen = b"" if i % 4 == 0 else b"\\Seen"
    return b"(" + (seen + KEYWORDS[i % len(KEYWORDS)]).strip() + b")"


async def load(client: ImapClient, count: int) -> None:
    for start in range(0, count, BATCH):
        parts = [
            b"%s %s" % (_flags(i), literal_plus(_message(i)))
            for i in range(start, min(start + BATCH, count))
        ]
        await client.command(b"APPEND INBOX " + b" ".join(parts))


async def timed(rounds: int, action: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for round_number in range(rounds):
        began = time.perf_counter()
        await action(round_number)
        times.append((time.perf_counter() - began) * 1e3)
    return times


async def measure(host: str, port: int, user: str, password: str, args: argparse.Namespace) -> None:
    client = await ImapClient.login(host, port, user, password)
    await load(client, args.messages)
    unseen = (args.messages + 3) // 4

    async def select(_: int) -> None:
        response = await client.command(b"SELECT INBOX")
        if not any(line.endswith(b" %d EXISTS\r\n" % args.messages) for line in response.untagged):
            raise RuntimeError("wrong EXISTS")

    async def flags(_: int) -> None:
        response = await client.command(b"UID FETCH 1:* (FLAGS)")
        if len(response.untagged) < args.messages:
            raise RuntimeError("missing FETCH responses")

    async def search_unseen(_: int) -> None:
        if len(search_uids(await client.command(b"UID SEARCH UNSEEN"))) != unseen:
            raise RuntimeError("wrong SEARCH UNSEEN")

    async def store_one(round_number: int) -> None:
        sign = b"+" if round_number % 2 == 0 else b"-"
        await client.command(b"UID STORE %d %sFLAGS (\\Flagged)" % (args.messages // 2, sign))

    async def noop(_: int) -> None:
        await client.command(b"NOOP")

    scenarios = [
        ("SELECT", select),
        ("UID FETCH 1:* (FLAGS)", flags),
        ("UID SEARCH UNSEEN", search_unseen),
        ("UID STORE one", store_one),
        ("NOOP", noop),
    ]
    print(f"{args.messages} messages, {args.rounds} rounds: min / median ms")
    await select(0)
    for name, action in scenarios:
        times = await timed(args.rounds, action)
        print(f"{name:24} {min(times):8.2f} {statistics.median(times):8.2f}")
    await client.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--server", metavar="HOST:PORT", help="a running server (empty INBOX)")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="bench-password-1")
    args = parser.parse_args()
    if args.server:
        host, _, port = args.server.rpartition(":")
        asyncio.run(measure(host, int(port), args.user, args.password, args))
        return
    account = servers.Account(args.user, args.password)
    with tempfile.TemporaryDirectory() as workdir, servers.mailhaven([account], Path(workdir)) as t:
        asyncio.run(measure(t.host, t.imap_port, account.user, account.password, args))


if __name__ == "__main__":
    main()
