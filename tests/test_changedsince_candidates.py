"""FETCH (CHANGEDSINCE) and QRESYNC find their messages through the store's modseq index
(mailhaven/imap/condstore.changed_since) instead of scanning the view: the answers
must be exactly those of a scan, including for the cases a store query alone would
miss (a message expunged meanwhile whose EXPUNGE still waits)."""

from __future__ import annotations

import re

from mailhaven.imap.condstore import among
from tests.support import ServerThread
from tests.test_condstore_qresync import append, code_value, connect, fetch_lines, ok


def _fetched(lines: list[bytes]) -> dict[int, bytes]:
    """Sequence number -> FETCH response."""
    return {int(line.split(b" ")[1]): line for line in fetch_lines(lines)}


def test_among_keeps_only_members_in_order():
    assert among([2, 5, 9, 40], [1, 2, 3, 5, 8, 9, 10]) == [2, 5, 9]
    assert among([1, 7], []) == []
    assert among([], [1, 2]) == []


def test_changedsince_in_a_larger_mailbox_with_uid_ranges(server: ServerThread):
    client = connect(server)
    append(server, 300)
    since = code_value(ok(client.command(b"S", b"SELECT INBOX (CONDSTORE)")), b"HIGHESTMODSEQ")
    for uid in (3, 7, 150, 260, 299):
        ok(client.command(b"s", b"UID STORE %d +FLAGS.SILENT (\\Flagged)" % uid))
    ok(client.command(b"d", b"UID STORE 8 -FLAGS.SILENT (\\Flagged)"))  # no change: no modseq
    lines = ok(client.command(b"f", b"UID FETCH 5:10,250:* (FLAGS) (CHANGEDSINCE %d)" % since))
    assert sorted(_fetched(lines)) == [7, 260, 299]
    lines = ok(client.command(b"g", b"FETCH 1:* (UID) (CHANGEDSINCE %d)" % since))
    assert sorted(_fetched(lines)) == [3, 7, 150, 260, 299]
    assert all(b"MODSEQ (" in line for line in fetch_lines(lines))


def test_changedsince_reports_a_change_whose_expunge_waits(server: ServerThread):
    """Another session flags then expunges message 2.  While this session's EXPUNGE
    waits (none may be sent during FETCH), message 2 is still in its view with the
    flag change it was told about, and CHANGEDSINCE reports it as a scan would."""
    watcher, other = connect(server), connect(server)
    append(server, 3)
    since = code_value(ok(watcher.command(b"S", b"SELECT INBOX (CONDSTORE)")), b"HIGHESTMODSEQ")
    ok(other.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"s", b"STORE 2 +FLAGS.SILENT (\\Deleted \\Flagged)"))
    told = ok(watcher.command(b"n", b"NOOP"))
    assert any(re.match(rb"\* 2 FETCH \(.*\\Flagged", line) for line in told), told
    ok(other.command(b"e", b"EXPUNGE"))
    lines = ok(watcher.command(b"f", b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % since))
    fetched = _fetched(lines)
    assert list(fetched) == [2]
    assert b"\\Flagged" in fetched[2]
    assert not any(b"EXPUNGE" in line for line in lines)
    # The expunge is reported once a command allows it.
    assert any(line == b"* 2 EXPUNGE" for line in ok(watcher.command(b"n2", b"NOOP")))
