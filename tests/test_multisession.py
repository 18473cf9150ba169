"""Several sessions on one mailbox stay consistent (RFC 9051 sections 5.2, 7.5.1)."""

from __future__ import annotations

import threading
import time

from imapclient import IMAPClient

from tests.support import PASSWORD, ServerThread, count_reads, mail


def connect(server: ServerThread) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    client.login("alice", PASSWORD)
    return client


def wait_for(idler: IMAPClient, wanted, limit: float = 10.0) -> list:
    """IDLE responses until one satisfies *wanted* (or the time limit passes)."""
    deadline = time.monotonic() + limit
    seen: list = []
    while time.monotonic() < deadline and not any(wanted(r) for r in seen):
        seen += idler.idle_check(timeout=max(0.1, deadline - time.monotonic()))
    return seen


def test_changes_reach_other_session_at_noop(server):
    phone, laptop = connect(server), connect(server)
    for n in range(3):
        laptop.append("INBOX", mail(n))
    phone.select_folder("INBOX")
    laptop.select_folder("INBOX")
    laptop.add_flags([1], [b"\\Seen"])
    laptop.append("INBOX", mail(4))
    laptop.delete_messages([2])
    laptop.expunge()
    responses = phone.noop()[1]
    assert (2, b"EXPUNGE") in responses
    assert (3, b"EXISTS") in responses  # 3 - 1 expunged + 1 new
    fetches = [r for r in responses if r[1] == b"FETCH"]
    assert fetches and fetches[0][0] == 1 and b"\\Seen" in fetches[0][2][3]
    # Sequence numbers now agree between the two sessions.
    assert phone.search() == laptop.search()

    def numbering(client: IMAPClient) -> dict[int, int]:
        return {uid: data[b"SEQ"] for uid, data in client.fetch(client.search(), ["UID"]).items()}

    assert numbering(phone) == numbering(laptop) == {1: 1, 3: 2, 4: 3}


def test_no_expunge_during_fetch_store_search(server):
    """RFC 9051 7.5.1: EXPUNGE waits until a command that allows it (not FETCH,
    STORE or SEARCH by sequence number), so pipelined sequence numbers stay valid."""
    phone, laptop = server.raw(), server.raw()
    phone.login("alice")
    laptop.login("alice")
    for n in range(3):
        laptop.command(b"a", b"APPEND INBOX {%d+}\r\n%s" % (len(mail(n)), mail(n)))
    phone.command(b"s", b"SELECT INBOX")
    laptop.command(b"s", b"SELECT INBOX")
    laptop.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    laptop.command(b"e", b"EXPUNGE")
    assert phone.command(b"f", b"FETCH 3 (UID)") == [b"* 3 FETCH (UID 3)", b"f OK FETCH completed"]
    assert b"EXPUNGE" not in b"".join(phone.command(b"t", b"STORE 3 +FLAGS.SILENT (x)"))
    assert phone.command(b"q", b"SEARCH UID 3") == [b"* SEARCH 3", b"q OK SEARCH completed"]
    assert phone.command(b"n", b"NOOP")[0] == b"* 1 EXPUNGE"
    assert phone.command(b"g", b"FETCH 2 (UID)")[0] == b"* 2 FETCH (UID 3)"
    # UID FETCH may carry the EXPUNGE at once.
    laptop.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    laptop.command(b"e", b"EXPUNGE")
    assert phone.command(b"u", b"UID FETCH 3 (UID)")[:2] == [
        b"* 2 FETCH (UID 3)",
        b"* 1 EXPUNGE",
    ]


def test_idle_sees_append_from_other_session_immediately(server):
    idler, writer = connect(server), connect(server)
    idler.select_folder("INBOX")
    idler.idle()
    done = threading.Event()

    def append_later() -> None:
        writer.append("INBOX", mail(1))
        done.set()

    threading.Timer(0.2, append_later).start()
    responses = idler.idle_check(timeout=10)
    idler.idle_done()
    # The idler may hear of the message before the writer has read its APPEND's OK.
    assert done.wait(10)
    assert (1, b"EXISTS") in responses


def test_idle_reports_flag_changes_and_expunges(server):
    idler, writer = connect(server), connect(server)
    for n in range(2):
        writer.append("INBOX", mail(n))
    idler.select_folder("INBOX")
    writer.select_folder("INBOX")
    idler.idle()
    writer.add_flags([2], [b"\\Flagged"])
    seen = wait_for(idler, lambda r: r[1] == b"FETCH" and r[0] == 2)
    writer.delete_messages([1])
    writer.expunge()
    seen += wait_for(idler, lambda r: r == (1, b"EXPUNGE"))
    idler.idle_done()
    assert any(r[1] == b"FETCH" and r[0] == 2 for r in seen)
    assert (1, b"EXPUNGE") in seen


def test_recent_belongs_to_one_session(server):
    first, second = connect(server), connect(server)
    first.append("INBOX", mail(1))
    assert first.select_folder("INBOX")[b"RECENT"] == 1
    assert second.select_folder("INBOX")[b"RECENT"] == 0


def test_concurrent_appends_get_distinct_uids(server):
    clients = [connect(server) for _ in range(4)]
    uids: list[int] = []
    lock = threading.Lock()

    def worker(client: IMAPClient, base: int) -> None:
        for n in range(10):
            result = client.append("INBOX", mail(base + n))
            uid = int(result.split(b"APPENDUID ")[1].split(b" ")[1].split(b"]")[0])
            with lock:
                uids.append(uid)

    threads = [threading.Thread(target=worker, args=(c, i * 100)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(uids) == list(range(1, 41))


def test_selected_mailbox_deleted_by_another_session(server):
    """RFC 2180 section 3.2: to a session with the mailbox selected, its messages
    are expunged; the session goes on working."""
    phone, laptop = server.raw(), server.raw()
    phone.login("alice")
    laptop.login("alice")
    laptop.command(b"c", b"CREATE Box")
    laptop.command(b"a", b"APPEND Box {%d+}\r\n%s" % (len(mail(1)), mail(1)))
    phone.command(b"s", b"SELECT Box")
    assert laptop.command(b"d", b"DELETE Box")[-1].startswith(b"d OK")
    assert phone.command(b"f", b"UID FETCH 1 (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent) UID 1)",  # from the view, before the refresh
        b"* 1 EXPUNGE",
        b"* 0 RECENT",
        b"f OK FETCH completed",
    ]
    lines = phone.command(b"t", b"UID STORE 1:* +FLAGS (\\Seen)")
    assert lines == [b"t NO [NONEXISTENT] The mailbox no longer exists"]
    lines = phone.command(b"x", b"APPEND Box {%d+}\r\n%s" % (len(mail(2)), mail(2)))
    assert lines[-1].startswith(b"x NO [TRYCREATE]")
    assert phone.command(b"i", b"SELECT INBOX")[-1].startswith(b"i OK")


def test_own_store_is_not_read_back_unless_something_came_between(server):
    """A STORE that took the mailbox's next modseq leaves the view current; one made
    after another session's change still reports that change."""
    laptop = connect(server)
    for n in range(3):
        laptop.append("INBOX", mail(n))
    laptop.select_folder("INBOX")
    phone = server.raw()
    phone.login("alice")
    phone.command(b"s", b"SELECT INBOX (CONDSTORE)")
    reads = count_reads(server.storage)
    phone.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Seen)")
    assert "_changes_since" not in reads  # its own change, nothing else: no read back
    laptop.add_flags([2], [b"\\Flagged"])  # the phone has not been told yet
    lines = phone.command(b"b", b"STORE 3 +FLAGS.SILENT (\\Answered)")
    assert "_changes_since" in reads
    assert any(line.startswith(b"* 2 FETCH") and b"\\Flagged" in line for line in lines)
    assert not any(line.startswith(b"* 3 FETCH") for line in lines)  # .SILENT
    lines = phone.command(b"c", b"NOOP")
    assert not any(b"FETCH" in line for line in lines)  # nothing reported twice
    status = laptop.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
    lines = phone.command(b"d", b"SELECT INBOX (CONDSTORE)")
    assert any(b"HIGHESTMODSEQ %d]" % status in line for line in lines)
