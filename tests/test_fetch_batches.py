"""FETCH reads message text in batches bounded in count and in bytes
(mailhaven/imap/commands/fetch.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailhaven.imap.commands import fetch
from tests.support import ServerThread, count_reads, mail


def _bodies(data: list) -> dict[int, bytes]:
    """UID -> BODY[] of imaplib's FETCH answer."""
    found = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            found[uid] = item[1]
    return found


def test_a_download_larger_than_a_batch_comes_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [mail(n) + b"x" * (n * 10) for n in range(1, 31)]
    # Three or four messages a batch by size, and 7 at most by count.
    monkeypatch.setattr(fetch, "BATCH_BYTES", 3 * len(messages[-1]))
    monkeypatch.setattr(fetch, "BATCH", 7)
    server = ServerThread(tmp_path).start()
    try:
        server.add_user("alice")
        imap = server.imaplib_client("alice")
        for raw in messages:
            assert imap.append("INBOX", None, None, raw)[0] == "OK"
        imap.select("INBOX")
        reads = count_reads(server.storage)
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        assert typ == "OK"
        assert _bodies(data) == {uid: raw for uid, raw in enumerate(messages, start=1)}
        numbers = [int(item[0].split()[0]) for item in data if isinstance(item, tuple)]
        assert numbers == list(range(1, 31))
        loads = reads.count("_fetch_content")
        assert loads > 5  # more than the count bound alone makes
        # A listing that reads no message text is batched by count alone.
        reads.clear()
        typ, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE ENVELOPE)")
        assert typ == "OK" and len(data) == 30
        assert reads.count("_fetch_wire") == 5
        imap.logout()
    finally:
        server.stop()


def test_batches_hold_one_message_even_when_it_alone_is_over_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "BATCH_BYTES", 10)
    server = ServerThread(tmp_path).start()
    try:
        server.add_user("alice")
        imap = server.imaplib_client("alice")
        for n in range(3):
            imap.append("INBOX", None, None, mail(n))
        imap.select("INBOX")
        reads = count_reads(server.storage)
        typ, data = imap.fetch("1:3", "(BODY.PEEK[])")
        assert typ == "OK"
        assert list(_bodies_by_number(data).values()) == [mail(n) for n in range(3)]
        assert reads.count("_fetch_content") == 3
        imap.logout()
    finally:
        server.stop()


def _bodies_by_number(data: list) -> dict[int, bytes]:
    return {int(item[0].split()[0]): item[1] for item in data if isinstance(item, tuple)}
