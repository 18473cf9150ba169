"""Repeated commands on one connection to a large mailbox: the per-command cost of the
selected view (SELECT, FETCH FLAGS of everything, SEARCH UNSEEN, STORE one message).

    python -m benchmarks.viewbench --messages 10000 [--rounds 15] [--reference dovecot]

Loads N small messages (MULTIAPPEND, 1,000 per command; one in four unseen, a few
keywords) into a fresh Mailhaven (and Dovecot), then times each command ``--rounds``
times on one connection per server, alternating between the servers, and prints the
minimum and median in milliseconds (and the ratio of the medians).  ``imapbench`` measures
the same commands once or thrice among other work; this isolates them, so that a
before/after comparison on a loaded machine can rest on medians of many runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from argparse import Namespace
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import servers
from benchmarks.client import ImapClient, literal_plus, search_uids

BATCH = 1000
Action = Callable[[int], Awaitable[None]]
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


def scenarios(client: ImapClient, messages: int) -> list[tuple[str, Action]]:
    """The timed commands, each checking its answer."""
    unseen = (messages + 3) // 4

    async def select(_: int) -> None:
        response = await client.command(b"SELECT INBOX")
        if not any(line.endswith(b" %d EXISTS\r\n" % messages) for line in response.untagged):
            raise RuntimeError("wrong EXISTS")

    async def flags(_: int) -> None:
        response = await client.command(b"UID FETCH 1:* (FLAGS)")
        if len(response.untagged) < messages:
            raise RuntimeError("missing FETCH responses")

    async def search_unseen(_: int) -> None:
        if len(search_uids(await client.command(b"UID SEARCH UNSEEN"))) != unseen:
            raise RuntimeError("wrong SEARCH UNSEEN")

    async def store_one(round_number: int) -> None:
        sign = b"+" if round_number % 2 == 0 else b"-"
        await client.command(b"UID STORE %d %sFLAGS (\\Flagged)" % (messages // 2, sign))

    async def noop(_: int) -> None:
        await client.command(b"NOOP")

    return [
        ("SELECT", select),
        ("UID FETCH 1:* (FLAGS)", flags),
        ("UID SEARCH UNSEEN", search_unseen),
        ("UID STORE one", store_one),
        ("NOOP", noop),
    ]


async def measure(targets: list[servers.Target], account: servers.Account, args: Namespace) -> None:
    """Each round runs the command once on every target in turn, so that the machine's
    load, which moves from second to second, falls alike on all of them."""
    clients = []
    first_select = []
    for target in targets:
        client = await ImapClient.login(
            target.host, target.imap_port, account.user, account.password
        )
        await load(client, args.messages)
        # The first SELECT reads the mailbox afresh (no cache yet) and claims \\Recent
        # of every message.
        began = time.perf_counter()
        await client.command(b"SELECT INBOX")
        first_select.append((time.perf_counter() - began) * 1e3)
        clients.append(client)
    plans = [scenarios(client, args.messages) for client in clients]
    names = [target.name for target in targets]
    print(f"{args.messages} messages, {args.rounds} rounds; min / median ms per server")
    print(f"{'command':24}" + "".join(f"{name:>22}" for name in names))
    print(f"{'first SELECT (once)':24}" + "".join(f"{ms:21.2f} " for ms in first_select))
    for step, (label, _) in enumerate(plans[0]):
        times: list[list[float]] = [[] for _ in targets]
        for round_number in range(args.rounds):
            for server, plan in enumerate(plans):
                began = time.perf_counter()
                await plan[step][1](round_number)
                times[server].append((time.perf_counter() - began) * 1e3)
        cells = "".join(f"{min(t):10.2f} {statistics.median(t):10.2f} " for t in times)
        medians = [statistics.median(t) for t in times]
        ratio = f"  median ratio {medians[0] / medians[1]:.2f}" if len(medians) == 2 else ""
        print(f"{label:24}{cells}{ratio}")
    for client in clients:
        await client.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reference", choices=["dovecot"], help="also measure Dovecot")
    args = parser.parse_args()
    account = servers.Account("bench", "bench-password-1")
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        root = Path(workdir)
        root.chmod(0o755)  # Dovecot's unprivileged processes must reach their files
        (root / "mailhaven").mkdir()
        targets = [stack.enter_context(servers.mailhaven([account], root / "mailhaven"))]
        if args.reference == "dovecot":
            (root / "dovecot").mkdir()
            targets.append(stack.enter_context(servers.dovecot([account], root / "dovecot")))
        asyncio.run(measure(targets, account, args))


if __name__ == "__main__":
    main()
