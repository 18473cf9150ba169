"""claim_recent (run on every SELECT) must find recent messages through the partial
index, not by visiting every message of the mailbox."""

from __future__ import annotations

import sqlite3

from mailhaven.storage import sqlite as storage_sqlite


def test_claim_recent_uses_the_partial_recent_index() -> None:
    conn = sqlite3.connect(":memory:")
    for script in storage_sqlite._MIGRATIONS:
        conn.executescript(script)
    plan = conn.execute("EXPLAIN QUERY PLAN " + storage_sqlite._CLAIM_RECENT, (1,)).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX messages_recent" in details, details


def test_changes_since_uses_the_modseq_indexes() -> None:
    """Every command refreshes the selected mailbox; the changes must be found
    through the modseq indexes, not by walking the mailbox in UID order."""
    conn = sqlite3.connect(":memory:")
    for script in storage_sqlite._MIGRATIONS:
        conn.executescript(script)
    for query, index in (
        (storage_sqlite._CHANGED_SINCE, "messages_by_modseq"),
        (storage_sqlite._EXPUNGED_SINCE, "expunged_by_modseq"),
    ):
        plan = conn.execute("EXPLAIN QUERY PLAN " + query, (1, 5)).fetchall()
        details = " ".join(row[-1] for row in plan)
        assert f"INDEX {index} (mailbox_id=? AND modseq>?)" in details, details
