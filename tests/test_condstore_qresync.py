"""CONDSTORE and QRESYNC (RFC 7162) over real sockets: the RFC's examples adapted to
real mod-sequences, and the multi-session edge cases that break synchronisation."""

from __future__ import annotations

import datetime
import re
from dataclasses import replace

from mailhaven.mime import analyze
from mailhaven.storage.interface import NewMessage
from tests.support import RawClient, ServerThread, mail


def connect(server: ServerThread) -> RawClient:
    client = server.raw()
    client.login("alice")
    return client


def append(server: ServerThread, count: int, mailbox: str = "INBOX") -> None:
    """Deliver *count* messages straight into the store (as delivery would) and take
    their \\Recent flag, so the flags the tests compare are only the ones they set.
    Logins cost an argon2 verification each; this keeps the tests fast."""
    storage = server.storage
    user = server.call(storage.get_user("alice"))
    target = server.call(storage.get_mailbox(user.id, mailbox))
    messages = []
    for n in range(count):
        analyzed = analyze(mail(n))
        messages.append(
            NewMessage(
                raw=mail(n),
                flags=frozenset(),
                internal_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
                metadata=analyzed.metadata.to_bytes(),
                body_text=analyzed.body_text,
                header_text=analyzed.header_text,
            )
        )
    server.call(storage.append(target.id, messages))
    server.call(storage.claim_recent(target.id))


def ok(lines: list[bytes]) -> list[bytes]:
    assert lines[-1].split(b" ")[1] == b"OK", lines
    return lines


def code_value(lines: list[bytes], code: bytes) -> int:
    for line in lines:
        match = re.search(rb"\[" + code + rb" (\d+)\]", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no {code!r} in {lines}")


def modseqs(lines: list[bytes]) -> dict[int, int]:
    """UID -> MODSEQ from FETCH responses."""
    found = {}
    for line in lines:
        uid = re.search(rb"UID (\d+)", line)
        modseq = re.search(rb"MODSEQ \((\d+)\)", line)
        if b" FETCH " in line and uid and modseq:
            found[int(uid.group(1))] = int(modseq.group(1))
    return found


def fetch_lines(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if b" FETCH (" in line]


# ----------------------------------------------------------------- CONDSTORE


def test_capabilities_advertise_condstore_and_qresync(server):
    client = connect(server)
    capability = client.command(b"C", b"CAPABILITY")[0].split()
    assert b"CONDSTORE" in capability and b"QRESYNC" in capability and b"ENABLE" in capability


def test_select_condstore_reports_highestmodseq_example_18(server):
    client = connect(server)
    append(server, 3)
    lines = ok(client.command(b"A142", b"SELECT INBOX (CONDSTORE)"))
    highest = code_value(lines, b"HIGHESTMODSEQ")
    assert lines[-1].startswith(b"A142 OK [READ-WRITE]")
    # Every later SELECT reports it too (section 3.1.2.1), and EXAMINE as well.
    again = ok(client.command(b"A143", b"EXAMINE INBOX"))
    assert code_value(again, b"HIGHESTMODSEQ") == highest
    # FETCH MODSEQ agrees: the highest per-message modseq is at most the mailbox's.
    fetched = modseqs(ok(client.command(b"F", b"UID FETCH 1:* (MODSEQ)")))
    assert len(fetched) == 3 and max(fetched.values()) <= highest


def test_plain_select_has_no_highestmodseq_until_enabled(server):
    client = connect(server)
    lines = ok(client.command(b"S", b"SELECT INBOX"))
    assert not any(b"HIGHESTMODSEQ" in line for line in lines)
    # The first enabling command with a mailbox selected reports HIGHESTMODSEQ
    # (section 3.1), here FETCH MODSEQ (Example 13) on an empty mailbox.
    append(server, 2)
    assert ok(client.command(b"N", b"NOOP"))[0] == b"* 2 EXISTS"
    lines = ok(client.command(b"a", b"FETCH 1:2 (MODSEQ)"))
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")
    assert re.fullmatch(rb"\* 1 FETCH \(MODSEQ \(\d+\)\)", lines[1])
    # ... and only the first.
    assert ok(client.command(b"b", b"FETCH 1 (MODSEQ)"))[0].startswith(b"* 1 FETCH")


def test_status_highestmodseq_example_17(server):
    client = connect(server)
    append(server, 2)
    lines = ok(client.command(b"A042", b"STATUS INBOX (UIDNEXT MESSAGES HIGHESTMODSEQ)"))
    match = re.fullmatch(rb"\* STATUS INBOX \(UIDNEXT 3 MESSAGES 2 HIGHESTMODSEQ (\d+)\)", lines[0])
    assert match
    selected = ok(client.command(b"S", b"SELECT INBOX"))
    # STATUS HIGHESTMODSEQ was a CONDSTORE enabling command.
    assert code_value(selected, b"HIGHESTMODSEQ") == int(match.group(1))


def test_fetch_changedsince_example_12(server):
    client = connect(server)
    append(server, 4)
    ok(client.command(b"S", b"SELECT INBOX (CONDSTORE)"))
    before = modseqs(ok(client.command(b"F", b"UID FETCH 1:* (MODSEQ)")))
    since = max(before.values())
    ok(client.command(b"s1", b"UID STORE 2 +FLAGS.SILENT (\\Seen)"))
    ok(client.command(b"s2", b"STORE 4 +FLAGS.SILENT ($Important)"))
    lines = ok(client.command(b"s100", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % since))
    fetched = fetch_lines(lines)
    assert len(fetched) == 2
    assert re.fullmatch(
        rb"\* 2 FETCH \(FLAGS \(\\Seen(?: \\Recent)?\) UID 2 MODSEQ \(\d+\)\)", fetched[0]
    )
    assert re.fullmatch(
        rb"\* 4 FETCH \(FLAGS \(\$Important(?: \\Recent)?\) UID 4 MODSEQ \(\d+\)\)", fetched[1]
    )
    assert all(m > since for m in modseqs(lines).values())
    # Setting a flag that is already set does not change the modseq (section 3.1).
    after = modseqs(lines)
    ok(client.command(b"s3", b"UID STORE 2 +FLAGS.SILENT (\\Seen)"))
    assert modseqs(ok(client.command(b"F2", b"UID FETCH 2 (MODSEQ)"))) == {2: after[2]}


def test_store_unchangedsince_examples_3_to_8(server):
    client = connect(server)
    append(server, 5)
    lines = ok(client.command(b"S", b"SELECT INBOX (CONDSTORE)"))
    highest = code_value(lines, b"HIGHESTMODSEQ")
    # Example 3: all pass; FETCH with MODSEQ even though .SILENT.
    lines = ok(
        client.command(
            b"a103", b"UID STORE 4,2,5 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % highest
        )
    )
    assert lines[-1] == b"a103 OK STORE completed"
    stored = modseqs(lines)
    assert set(stored) == {2, 4, 5} and all(m > highest for m in stored.values())
    assert all(b"FLAGS" not in line for line in fetch_lines(lines))
    # Example 6: 2, 4 and 5 changed since `highest`; 1 and 3 did not.
    lines = client.command(
        b"d105", b"STORE 1:5 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($Processed)" % highest
    )
    assert lines[-1] == b"d105 OK [MODIFIED 2,4:5] Conditional STORE failed for some messages"
    assert set(modseqs(lines)) == {1, 3}
    # Example 7: UNCHANGEDSINCE 0 always fails.
    lines = client.command(b"a102", b"STORE 3 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)")
    assert lines == [b"a102 OK [MODIFIED 3] Conditional STORE failed for some messages"]
    # Without .SILENT the FETCH carries FLAGS, UID and MODSEQ.
    current = modseqs(ok(client.command(b"F", b"UID FETCH 1 (MODSEQ)")))[1]
    lines = ok(client.command(b"c101", b"STORE 1 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % current))
    assert re.fullmatch(
        rb"\* 1 FETCH \(UID 1 FLAGS \(\$Processed\) MODSEQ \(%d\)\)" % current, lines[0]
    )


def test_unchangedsince_race_between_two_sessions(server):
    """Two sessions read the same modseq and both try a conditional STORE: exactly
    one wins, the other gets [MODIFIED] and learns the winner's flags."""
    first, second = connect(server), connect(server)
    append(server, 1)
    for client in (first, second):
        ok(client.command(b"S", b"SELECT INBOX (CONDSTORE)"))
    seen = modseqs(ok(first.command(b"F", b"UID FETCH 1 (MODSEQ)")))[1]
    assert modseqs(ok(second.command(b"F", b"UID FETCH 1 (MODSEQ)")))[1] == seen
    won = ok(first.command(b"W", b"UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS ($Label1)" % seen))
    assert won[-1] == b"W OK STORE completed"
    lost = second.command(b"L", b"UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS ($Label2)" % seen)
    assert lost[-1] == b"L OK [MODIFIED 1] Conditional STORE failed for some messages"
    # The loser is told the current state with the modseq to retry with (Example 10).
    winner_modseq = modseqs(won)[1]
    assert any(
        b"$Label1" in line and b"MODSEQ (%d)" % winner_modseq in line for line in fetch_lines(lost)
    )
    retry = ok(
        second.command(b"R", b"UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS ($Label2)" % winner_modseq)
    )
    assert b"$Label1 $Label2" in retry[0]
    # The first session hears about it, with UID and MODSEQ (section 3.2.4).
    update = fetch_lines(ok(first.command(b"N", b"NOOP")))
    assert len(update) == 1
    assert re.fullmatch(
        rb"\* 1 FETCH \(UID 1 FLAGS \(\$Label1 \$Label2\) MODSEQ \(\d+\)\)", update[0]
    )


def test_silent_store_reports_flags_changed_by_another_session(server):
    mine, other = connect(server), connect(server)
    append(server, 1)
    ok(mine.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"O", b"STORE 1 +FLAGS.SILENT (\\Flagged)"))
    # FETCH does not report others' changes before the response ends, so the
    # STORE below is the first this session hears of \Flagged.
    lines = ok(mine.command(b"M", b"UID STORE 1 +FLAGS.SILENT (\\Seen)"))
    assert any(b"\\Flagged \\Seen" in line for line in fetch_lines(lines))


def test_search_modseq_examples_15_and_19(server):
    client = connect(server)
    append(server, 3)
    ok(client.command(b"S", b"SELECT INBOX"))
    base = code_value(ok(client.command(b"x", b"STATUS INBOX (HIGHESTMODSEQ)")), b"HIGHESTMODSEQ")
    ok(client.command(b"s", b"STORE 2 +FLAGS (\\Draft)"))
    changed = modseqs(ok(client.command(b"F", b"UID FETCH 2 (MODSEQ)")))[2]
    lines = ok(client.command(b"a", b'SEARCH MODSEQ "/flags/\\\\draft" all %d' % (base + 1)))
    assert lines[0] == b"* SEARCH 2 (MODSEQ %d)" % changed
    lines = ok(client.command(b"t", b"SEARCH OR NOT MODSEQ %d LARGER 50000" % changed))
    # Section 3.1.5: a MODSEQ criterion anywhere, even negated, adds the modseq.
    assert lines[0].startswith(b"* SEARCH 1 3 (MODSEQ ")
    lines = ok(client.command(b"e", b"SEARCH RETURN (ALL) MODSEQ %d" % (base + 1)))
    assert lines[0] == b'* ESEARCH (TAG "e") ALL 2 MODSEQ %d' % changed
    assert ok(client.command(b"n", b"SEARCH MODSEQ %d" % (changed + 1)))[0] == b"* SEARCH"


# ----------------------------------------------------------------- QRESYNC


def qresync_client(server: ServerThread) -> RawClient:
    client = connect(server)
    lines = ok(client.command(b"E", b"ENABLE QRESYNC"))
    assert lines[0] == b"* ENABLED QRESYNC"
    return client


def test_qresync_parameter_and_vanished_modifier_need_enable(server):
    client = connect(server)
    append(server, 1)
    lines = client.command(b"Q", b"SELECT INBOX (QRESYNC (1 1))")
    assert lines[-1].startswith(b"Q BAD")
    ok(client.command(b"S", b"SELECT INBOX"))
    lines = client.command(b"V", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert lines[-1].startswith(b"V BAD")
    assert client.command(b"V2", b"FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith(
        b"V2 BAD"
    )


def test_enable_qresync_while_selected_reports_highestmodseq(server):
    client = connect(server)
    append(server, 1)
    ok(client.command(b"S", b"SELECT INBOX"))
    lines = ok(client.command(b"E", b"ENABLE QRESYNC CONDSTORE"))
    assert lines[0] == b"* ENABLED QRESYNC CONDSTORE"
    assert lines[1].startswith(b"* OK [HIGHESTMODSEQ ")
    assert ok(client.command(b"E2", b"ENABLE QRESYNC"))[0] == b"* ENABLED"


def test_qresync_select_after_expunges_from_another_session(server):
    """A device syncs, goes away; another session flags and expunges; the device
    comes back and learns everything from one SELECT (section 3.2.5.1)."""
    device = qresync_client(server)
    append(server, 10)
    lines = ok(device.command(b"S", b"SELECT INBOX"))
    uidvalidity = code_value(lines, b"UIDVALIDITY")
    known = code_value(lines, b"HIGHESTMODSEQ")
    ok(device.command(b"L", b"LOGOUT"))

    other = connect(server)
    ok(other.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"a", b"STORE 2,4,6 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"b", b"EXPUNGE"))
    ok(other.command(b"c", b"UID STORE 8 +FLAGS.SILENT (\\Answered)"))
    ok(other.command(b"d", b"UID STORE 9 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"e", b"UID EXPUNGE 9"))
    append(server, 1)  # UID 11

    device = qresync_client(server)
    lines = ok(
        device.command(b"A03", b"SELECT INBOX (QRESYNC (%d %d 1:10))" % (uidvalidity, known))
    )
    assert b"* VANISHED (EARLIER) 2,4,6,9" in lines
    fetched = fetch_lines(lines)
    # UID 11 is outside the known UIDs, so only UID 8 changed among them.
    assert fetched == [
        b"* 5 FETCH (UID 8 FLAGS (\\Answered) MODSEQ (%d))"
        % modseqs(ok(other.command(b"f", b"UID FETCH 8 (MODSEQ)")))[8]
    ]
    # VANISHED (EARLIER) comes after the mailbox data and before the FETCHes.
    assert lines.index(b"* VANISHED (EARLIER) 2,4,6,9") > lines.index(b"* 7 EXISTS")
    new_known = code_value(lines, b"HIGHESTMODSEQ")
    # Without known UIDs the server assumes 1:UIDNEXT-1, so UID 11 is reported.
    lines = ok(device.command(b"A04", b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, known)))
    assert lines[0] == b"* OK [CLOSED] Previous mailbox is now closed"
    assert b"* VANISHED (EARLIER) 2,4,6,9" in lines
    assert [re.search(rb"UID (\d+)", f).group(1) for f in fetch_lines(lines)] == [b"8", b"11"]
    # Nothing changed since the new HIGHESTMODSEQ: nothing to report.
    lines = ok(device.command(b"A05", b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, new_known)))
    assert not any(b"VANISHED" in line or b"FETCH" in line for line in lines)


def test_qresync_with_wrong_uidvalidity_reports_nothing(server):
    device = qresync_client(server)
    append(server, 3)
    ok(device.command(b"S", b"SELECT INBOX"))
    ok(device.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted)"))
    ok(device.command(b"b", b"EXPUNGE"))
    lines = ok(device.command(b"A02", b"SELECT INBOX (QRESYNC (67890007 1 1:3))"))
    assert not any(b"VANISHED" in line or b"FETCH" in line for line in lines)
    assert any(b"HIGHESTMODSEQ" in line for line in lines)


def test_qresync_sequence_match_data_narrows_vanished(server):
    """Section 3.2.5.2: pairs that still match tell the server the client already
    knows the expunges below them."""
    device = qresync_client(server)
    append(server, 10)
    lines = ok(device.command(b"S", b"SELECT INBOX"))
    uidvalidity = code_value(lines, b"UIDVALIDITY")
    ok(device.command(b"a", b"UID STORE 2,8 +FLAGS.SILENT (\\Deleted)"))
    ok(device.command(b"b", b"EXPUNGE"))
    # The client knew UID 2 was gone (message 4 is UID 5) but missed UID 8.
    # Its view: message 1 is UID 1, 4 is UID 5, 8 is UID 9; the server has UID 10
    # as message 8, so only the first two pairs match and UIDs up to 5 are settled.
    match = b"(1,4,8 1,5,9)"
    query = b"SELECT INBOX (QRESYNC (%d 1 1:10 %s))" % (uidvalidity, match)
    lines = ok(device.command(b"A", query))
    assert b"* VANISHED (EARLIER) 8" in lines
    # Without match data both are reported.
    lines = ok(device.command(b"B", b"SELECT INBOX (QRESYNC (%d 1 1:10))" % uidvalidity))
    assert b"* VANISHED (EARLIER) 2,8" in lines


def test_vanished_replaces_expunge_and_expunge_reports_highestmodseq(server):
    device, other = qresync_client(server), connect(server)
    append(server, 6)
    ok(device.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"S", b"SELECT INBOX"))
    ok(device.command(b"a", b"STORE 3:4 +FLAGS.SILENT (\\Deleted)"))
    lines = ok(device.command(b"B202", b"EXPUNGE"))
    assert lines[0] == b"* VANISHED 3:4"
    highest = code_value([lines[-1]], b"HIGHESTMODSEQ")
    assert lines[-1].startswith(b"B202 OK [HIGHESTMODSEQ ")
    # Expunges by another session arrive as VANISHED (no EXISTS needed).
    ok(other.command(b"c", b"UID STORE 6 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"d", b"UID EXPUNGE 6"))
    lines = ok(device.command(b"N", b"NOOP"))
    assert lines[0] == b"* VANISHED 6"
    assert not any(b"EXISTS" in line for line in lines)
    # MOVE under QRESYNC: VANISHED and HIGHESTMODSEQ in the tagged OK too.
    lines = ok(device.command(b"M", b"UID MOVE 1 Trash"))
    assert b"* VANISHED 1" in lines and lines[-1].startswith(b"M OK [HIGHESTMODSEQ ")
    assert code_value([lines[-1]], b"HIGHESTMODSEQ") > highest


def test_uid_fetch_vanished_modifier_example(server):
    device = qresync_client(server)
    append(server, 8)
    lines = ok(device.command(b"S", b"SELECT INBOX"))
    since = code_value(lines, b"HIGHESTMODSEQ")
    ok(device.command(b"a", b"UID STORE 1,5 +FLAGS.SILENT (\\Deleted)"))
    ok(device.command(b"b", b"EXPUNGE"))
    ok(device.command(b"c", b"UID STORE 4 +FLAGS.SILENT (\\Seen)"))
    lines = ok(device.command(b"s100", b"UID FETCH 3:8 (FLAGS) (CHANGEDSINCE %d VANISHED)" % since))
    assert lines[0] == b"* VANISHED (EARLIER) 5"
    assert re.fullmatch(rb"\* 3 FETCH \(FLAGS \(\\Seen\) UID 4 MODSEQ \(\d+\)\)", lines[1])
    assert len(lines) == 3


def test_pending_expunge_holds_back_highestmodseq(server):
    """Section 3.2: while an expunge waits (FETCH in progress), the client is told
    a HIGHESTMODSEQ below it, so a disconnect then cannot lose the expunge."""
    device, other = qresync_client(server), connect(server)
    append(server, 3)
    ok(device.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"S", b"SELECT INBOX"))
    ok(other.command(b"a", b"UID STORE 2 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"b", b"EXPUNGE"))
    status = ok(other.command(b"c", b"STATUS INBOX (HIGHESTMODSEQ)"))[0]
    expunge_modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", status).group(1))
    lines = ok(device.command(b"A150", b"STORE 1 +FLAGS (\\Seen)"))
    assert modseqs(lines)[1] > expunge_modseq
    assert code_value(lines, b"HIGHESTMODSEQ") < expunge_modseq
    assert not any(b"VANISHED" in line for line in lines)
    lines = ok(device.command(b"A152", b"NOOP"))
    assert lines[0] == b"* VANISHED 2"


def test_idle_keepalive_is_configurable(tmp_path):
    running = ServerThread(tmp_path)
    running.server.config = replace(running.config, idle_keepalive_seconds=1)
    running.start()
    try:
        running.add_user("alice")
        client = connect(running)
        ok(client.command(b"S", b"SELECT INBOX"))
        client.send(b"I IDLE\r\n")
        assert client.read_line().startswith(b"+ ")
        assert client.read_line() == b"* OK Still here"
        client.send(b"DONE\r\n")
        assert client.read_until_tagged(b"I")[-1] == b"I OK IDLE terminated"
    finally:
        running.stop()
