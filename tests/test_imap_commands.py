"""Every command of RFC 3501 / RFC 9051 over a real socket, with Python's imaplib."""

from __future__ import annotations

import contextlib
import email
import imaplib
import re

import pytest

from tests.support import PASSWORD

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Lunch on Friday\r\n"
    b"Date: Mon, 7 Feb 2022 10:00:00 +0100\r\n"
    b"Message-ID: <lunch@example.org>\r\n"
    b"\r\n"
    b"Shall we meet at noon? The caf\xc3\xa9 is open.\r\n"
)


def message(subject: str, body: str = "Hello", sender: str = "alice@example.org") -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Date: Tue, 1 Mar 2022 09:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def client(server):
    imap = server.imaplib_client("alice")
    yield imap
    with contextlib.suppress(imaplib.IMAP4.abort, OSError):
        imap.logout()


def flatten(fetched: list) -> bytes:
    """imaplib splits a FETCH response around its literals; join the pieces."""
    return b"".join(b"".join(p) if isinstance(p, tuple) else p for p in fetched)


def ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def test_greeting_and_capabilities(server):
    imap = server.imaplib_client()
    caps = imap.capabilities
    assert "IMAP4REV1" in caps and "IMAP4REV2" in caps
    assert "STARTTLS" in caps
    # Loopback with allow_plaintext_on_loopback: PLAIN is offered.
    assert "AUTH=PLAIN" in caps
    imap.login("alice", PASSWORD)
    data = ok(imap.capability())[0].decode()
    for name in ("IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "SPECIAL-USE", "ESEARCH", "BINARY"):
        assert name in data.split()
    imap.logout()


def test_login_failures_use_response_codes(server):
    imap = server.imaplib_client()
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        imap.login("alice", "wrong")
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        imap.login("nobody", PASSWORD)
    imap.login("alice", PASSWORD)
    imap.logout()


def test_authenticate_plain_with_and_without_initial_response(server):
    imap = server.imaplib_client()
    # imaplib sends the response after a continuation (no SASL-IR).
    typ, _ = imap.authenticate("PLAIN", lambda _: b"\0alice\0" + PASSWORD.encode())
    assert typ == "OK"
    imap.logout()
    raw = server.raw()
    import base64

    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    lines = raw.command(b"a1", b"AUTHENTICATE PLAIN " + token)
    assert lines[-1].startswith(b"a1 OK"), lines
    raw.close()


def test_default_mailboxes_with_special_use(client):
    lines = [line.decode() for line in ok(client.list())]
    names = {line.rsplit(" ", 1)[-1].strip('"'): line for line in lines}
    assert set(names) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert "\\Sent" in names["Sent"] and "\\Trash" in names["Trash"]
    assert "\\HasNoChildren" in names["INBOX"]


def test_append_select_fetch_roundtrip_is_byte_exact(client):
    data = ok(client.append("INBOX", "(\\Flagged)", '"07-Feb-2022 10:00:00 +0100"', MESSAGE))
    assert re.search(rb"APPENDUID \d+ 1", data[0])
    data = ok(client.select("INBOX"))
    assert data == [b"1"]
    typ, fetched = client.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    header, body = fetched[0]
    assert body == MESSAGE
    assert b"\\Flagged" in header and b"\\Seen" not in header
    assert b'INTERNALDATE "07-Feb-2022 10:00:00 +0100"' in header
    assert b"RFC822.SIZE %d" % len(MESSAGE) in header


def test_fetch_envelope_bodystructure_and_sections(client):
    ok(client.append("INBOX", None, None, MESSAGE))
    client.select("INBOX")
    data = ok(client.fetch("1", "(ENVELOPE BODYSTRUCTURE)"))[0]
    assert b'"Lunch on Friday"' in data
    assert b'(("Alice" NIL "alice" "example.org"))' in data
    # No Content-Transfer-Encoding header means 7BIT (RFC 2045 section 6.1).
    assert re.search(rb'\("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" 43 1 ', data, re.I)
    data = ok(client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert data[0][1] == b"Subject: Lunch on Friday\r\n\r\n"
    data = ok(client.fetch("1", "(BODY.PEEK[TEXT]<0.5>)"))
    assert data[0][1] == b"Shall"
    assert b"BODY[TEXT]<0>" in data[0][0]
    data = ok(client.fetch("1", "(BINARY.SIZE[1])"))
    assert (
        b"BINARY.SIZE[1] %d" % len(b"Shall we meet at noon? The caf\xc3\xa9 is open.\r\n")
        in (data[0])
    )


def test_fetch_body_sets_seen_and_peek_does_not(client):
    ok(client.append("INBOX", None, None, MESSAGE))
    client.select("INBOX")
    ok(client.fetch("1", "(BODY.PEEK[])"))
    assert b"\\Seen" not in ok(client.fetch("1", "(FLAGS)"))[0]
    data = flatten(ok(client.fetch("1", "(BODY[])")))
    assert data.startswith(b"1 (BODY[] {%d}" % len(MESSAGE))
    assert re.search(rb"FLAGS \([^)]*\\Seen", data)


def test_examine_is_read_only(client):
    ok(client.append("INBOX", None, None, MESSAGE))
    client.select("INBOX", readonly=True)
    assert client.untagged_responses.get("READ-ONLY") is not None
    ok(client.fetch("1", "(BODY[])"))
    assert b"\\Seen" not in ok(client.fetch("1", "(FLAGS)"))[0]
    typ, data = client.store("1", "+FLAGS", "\\Deleted")
    assert typ == "NO"


def test_store_flags_and_keywords(client):
    ok(client.append("INBOX", None, None, MESSAGE))
    client.select("INBOX")
    data = ok(client.store("1", "+FLAGS", "(\\Seen $Important)"))
    assert b"\\Seen" in data[0] and b"$Important" in data[0]
    data = ok(client.store("1", "-FLAGS", "(\\seen)"))
    assert b"\\Seen" not in data[0]
    data = ok(client.store("1", "FLAGS", "(\\Answered)"))
    assert data == [b"1 (FLAGS (\\Answered \\Recent))"]
    assert ok(client.store("1", "+FLAGS.SILENT", "(\\Flagged)")) == [None]
    assert b"\\Flagged" in ok(client.fetch("1", "(FLAGS)"))[0]
    with pytest.raises(imaplib.IMAP4.error, match="Recent cannot be set"):
        client.store("1", "+FLAGS", "(\\Recent)")


def test_search_keys(client):
    ok(client.append("INBOX", None, None, message("Quarterly report", "numbers inside")))
    ok(client.append("INBOX", "(\\Seen)", None, message("Lunch", "Grüße aus Köln")))
    ok(client.append("INBOX", None, None, message("Report draft", "x" * 3000, "carol@x.org")))
    client.select("INBOX")
    assert ok(client.search(None, "ALL")) == [b"1 2 3"]
    assert ok(client.search(None, "SUBJECT", "report")) == [b"1 3"]
    assert ok(client.search(None, "FROM", "carol")) == [b"3"]
    assert ok(client.search(None, "UNSEEN")) == [b"1 3"]
    assert ok(client.search(None, "LARGER", "1000")) == [b"3"]
    assert ok(client.search(None, "OR", "SEEN", "FROM", "carol")) == [b"2 3"]
    assert ok(client.search(None, "NOT", "SUBJECT", "report")) == [b"2"]
    assert ok(client.search(None, "(SUBJECT report UNSEEN)", "2:*")) == [b"3"]
    client.literal = "GRÜSSE".replace("SS", "ß").encode()
    assert ok(client.search("UTF-8", "BODY")) == [b"2"]
    assert ok(client.search(None, "TEXT", "Lunch")) == [b"2"]
    assert ok(client.search(None, "HEADER", "To", "bob")) == [b"1 2 3"]
    assert ok(client.search(None, "SENTON", "1-Mar-2022")) == [b"1 2 3"]
    assert ok(client.search(None, "SENTBEFORE", "1-Mar-2022")) == [b""]
    typ, data = client.uid("SEARCH", "UID 2:*")
    assert typ == "OK" and data == [b"2 3"]
    typ, data = client.search("KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]


def test_esearch_return_options(server, client):
    for i in range(5):
        ok(client.append("INBOX", None, None, message(f"m{i}")))
    client.select("INBOX")
    typ, data = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK"
    line = client.untagged_responses.pop("ESEARCH")[0]
    assert b"MIN 1 MAX 5 COUNT 5" in line


def test_copy_move_expunge(client):
    for i in range(3):
        ok(client.append("INBOX", None, None, message(f"m{i}")))
    client.select("INBOX")
    data = ok(client.copy("1:2", "Archive"))
    assert re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0])
    typ, data = client._simple_command("MOVE", "3", "Trash")
    assert typ == "OK"
    assert client.untagged_responses.pop("EXPUNGE") == [b"3"]
    assert ok(client.status("Archive", "(MESSAGES)")) == [b"Archive (MESSAGES 2)"]
    assert b"MESSAGES 1" in ok(client.status("Trash", "(MESSAGES)"))[0]
    client.store("1", "+FLAGS", "\\Deleted")
    data = ok(client.expunge())
    assert data == [b"1"]
    assert ok(client.search(None, "ALL")) == [b"1"]
    typ, data = client.copy("1", "NoSuchBox")
    assert typ == "NO" and b"TRYCREATE" in data[0]


def test_uid_expunge_only_touches_named_uids(client):
    for i in range(3):
        ok(client.append("INBOX", "(\\Deleted)", None, message(f"m{i}")))
    client.select("INBOX")
    typ, data = client.uid("EXPUNGE", "2")
    assert typ == "OK"
    assert ok(client.uid("SEARCH", "ALL")) == [b"1 3"]


def test_create_rename_delete_hierarchy(client):
    ok(client.create("Projects/2024/Q1"))
    lines = b"\n".join(ok(client.list(pattern="Projects/*")))
    assert b"Projects/2024" in lines and b"Projects/2024/Q1" in lines
    typ, data = client.create("Projects/2024/Q1")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    ok(client.rename("Projects", "Work"))
    lines = b"\n".join(ok(client.list(pattern="*")))
    assert b"Work/2024/Q1" in lines and b"Projects" not in lines
    ok(client.delete("Work/2024/Q1"))
    typ, data = client.delete("Nothing")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    typ, data = client.delete("INBOX")
    assert typ == "NO"
    top = b"\n".join(ok(client.list(pattern="%")))
    assert b"\\HasChildren" in [line for line in top.split(b"\n") if b"Work" in line][0]


def test_rename_inbox_moves_messages(client):
    ok(client.append("INBOX", None, None, message("keep me")))
    ok(client.rename("INBOX", "Old-Inbox"))
    assert b"MESSAGES 0" in ok(client.status("INBOX", "(MESSAGES)"))[0]
    assert b"MESSAGES 1" in ok(client.status("Old-Inbox", "(MESSAGES)"))[0]


def test_mailbox_names_non_ascii_roundtrip_mutf7(client):
    name = "Entw&APw-rfe"  # "Entwürfe" in modified UTF-7
    ok(client.create(name))
    lines = b"\n".join(ok(client.list(pattern="*")))
    assert name.encode() in lines
    ok(client.append(name, None, None, message("x")))
    assert b"MESSAGES 1" in ok(client.status(name, "(MESSAGES)"))[0]


def test_subscribe_lsub(client):
    ok(client.create("Lists/python"))
    ok(client.subscribe("Lists/python"))
    lines = b"\n".join(ok(client.lsub(pattern="*")))
    assert b"Lists/python" in lines
    lines = b"\n".join(ok(client.lsub(pattern="%")))
    assert b'(\\Noselect) "/" Lists' in lines
    ok(client.unsubscribe("Lists/python"))
    assert b"Lists/python" not in b"\n".join(d or b"" for d in ok(client.lsub(pattern="*")))


def test_status_items(client):
    ok(client.append("INBOX", "(\\Seen)", None, MESSAGE))
    ok(client.append("INBOX", "(\\Deleted)", None, MESSAGE))
    data = ok(client.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE)"))
    text = data[0].decode()
    assert "MESSAGES 2" in text and "UIDNEXT 3" in text and "UNSEEN 1" in text
    assert "DELETED 1" in text and f"SIZE {2 * len(MESSAGE)}" in text


def test_namespace_and_noop_and_check(client):
    data = ok(client.namespace())
    assert data == [b'(("" "/")) NIL NIL']
    client.select("INBOX")
    ok(client.noop())
    ok(client.check())
    ok(client.close())


def test_commands_in_wrong_state_are_refused(server):
    raw = server.raw()
    assert raw.command(b"a", b"SELECT INBOX")[-1].startswith(b"a BAD")
    raw.login("alice")
    assert raw.command(b"b", b"FETCH 1 FLAGS")[-1].startswith(b"b BAD")
    assert raw.command(b"c", b"SELECT INBOX")[-1].startswith(b"c OK")
    assert raw.command(b"d", b"CLOSE")[-1].startswith(b"d OK")
    assert raw.command(b"e", b"FETCH 1 FLAGS")[-1].startswith(b"e BAD")
    assert raw.command(b"f", b'LOGIN alice "x"')[-1].startswith(b"f BAD")
    raw.close()


def test_rfc822_items(client):
    ok(client.append("INBOX", None, None, MESSAGE))
    client.select("INBOX")
    data = ok(client.fetch("1", "(RFC822.HEADER)"))
    parsed = email.message_from_bytes(data[0][1])
    assert parsed["Subject"] == "Lunch on Friday"
    data = ok(client.fetch("1", "(RFC822)"))
    assert data[0][1] == MESSAGE
