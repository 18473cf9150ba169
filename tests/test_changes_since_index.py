"""changes_since runs after every command of every session with a mailbox selected:
it must find the changes through the modseq indexes, not by visiting every message
(or every expunge ever recorded) of the mailbox."""

from __future__ import annotations

import sqlite3

import pytest

from mailhaven.storage import sqlite as storage_sqlite


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (storage_sqlite._CHANGED_SINCE, "messages_by_modseq"),
        (storage_sqlite._EXPUNGED_SINCE, "expunged_by_modseq"),
    ],
)
def test_changes_since_uses_the_modseq_indexes(query: str, index: str) -> None:
    conn = sqlite3.connect(":memory:")
    for script in storage_sqlite._MIGRATIONS:
        conn.executescript(script)
    details = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + query, (1, 5)))
    assert f"INDEX {index} (mailbox_id=? AND modseq>?)" in details, details
