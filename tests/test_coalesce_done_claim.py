"""A \\Recent claim that has finished but whose done callback has not run yet
(mailhaven/storage/coalesce.py): a session asking for a later claim at that moment
must not spin.  Awaiting a done future does not yield to the event loop, so the
callback that would clear the claim never ran and the server hung (seen under the
mixed load of benchmarks/imapbench.py: the event loop at 100% CPU in
``RecentClaims.claim``)."""

from __future__ import annotations

import asyncio

import pytest

from mailhaven.storage.coalesce import Claim, RecentClaims


@pytest.mark.timeout(20)
def test_a_later_claim_behind_a_finished_one_starts_its_own() -> None:
    async def scenario() -> tuple[set[int], set[int], int]:
        claims = RecentClaims()
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Claim] = loop.create_future()
        finished.set_result(({1, 2}, 5))  # a claim covering modseq 5
        started = 0

        async def later_claim() -> Claim:
            nonlocal started
            started += 1
            return {3}, 9

        # The first claim completes at once; its done callback is only scheduled.
        first = await claims.claim(1, 5, lambda: finished)
        # In the same step, a session that has seen modseq 9 asks: the finished
        # claim did not cover it, so it must make its own.
        second = await claims.claim(1, 9, later_claim)
        return first, second, started

    first, second, started = asyncio.run(scenario())
    assert first == {1, 2}
    assert second == {3}
    assert started == 1
