"""FETCH output smaller than HOLD_BYTES goes out with the tagged response in one write
(each write wakes the client); more than that is written at once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mailhaven.codec.responses import Tagged, Untagged
from mailhaven.config import Config
from mailhaven.imap.session import HOLD_BYTES, ServerContext, Session
from mailhaven.storage import SqliteStorage


class RecordingChannel:
    """The part of a Channel that output uses."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


def new_session(tmp_path: Path) -> tuple[Session, RecordingChannel]:
    context = ServerContext(SqliteStorage(tmp_path / "db"), Config(data_dir=tmp_path))
    channel = RecordingChannel()
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    return Session(context, channel, log), channel  # type: ignore[arg-type]


def test_small_fetch_output_goes_out_with_the_tagged_response(tmp_path: Path) -> None:
    session, channel = new_session(tmp_path)

    async def scenario() -> None:
        await session.send_encoded(b"* 1 FETCH (UID 1)\r\n")
        await session.send_encoded(b"* 2 FETCH (UID 2)\r\n")
        await session.send_all([])  # no untagged updates: nothing to write yet
        assert channel.writes == []
        await session.send(Tagged("a", "OK", "FETCH completed"))
        await session.send_encoded(b"* 3 FETCH (UID 3)\r\n")
        await session.send_all([Untagged("OK", "update")])
        await session.send(Tagged("b", "OK", "FETCH completed"))

    asyncio.run(scenario())
    assert channel.writes == [
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\na OK FETCH completed\r\n",
        b"* 3 FETCH (UID 3)\r\n* OK update\r\n",
        b"b OK FETCH completed\r\n",
    ]


def test_large_fetch_output_is_written_at_once(tmp_path: Path) -> None:
    session, channel = new_session(tmp_path)
    big = b"* 1 FETCH (BODY[] {%d}\r\n" % HOLD_BYTES + b"x" * HOLD_BYTES + b")\r\n"

    async def scenario() -> None:
        await session.send_encoded(b"* 0 FETCH (UID 1)\r\n")
        await session.send_encoded(big)
        assert channel.writes == [b"* 0 FETCH (UID 1)\r\n" + big]
        await session.send(Tagged("a", "OK", "FETCH completed"))

    asyncio.run(scenario())
    assert channel.writes[1:] == [b"a OK FETCH completed\r\n"]
