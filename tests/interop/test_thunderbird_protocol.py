"""Thunderbird's behaviour at the protocol level (it cannot run headless here): the
commands and the pipelining its IMAP code (nsImapProtocol) sends, in its spelling
(lower case, its tag numbering, its header field list)."""

from __future__ import annotations

import re

from tests.interop.helpers import USER, append_all, corpus_sample, imap_session, password
from tests.support import RawClient, ServerThread

HEADER_FIELDS = (
    b"From To Cc Bcc Subject Date Message-ID Priority X-Priority References "
    b"Newsgroups In-Reply-To Content-Type Reply-To"
)


def thunderbird_login(server: ServerThread) -> tuple[RawClient, set[bytes]]:
    """Thunderbird asks for CAPABILITY first, logs in, and asks again unless the
    tagged OK carried a CAPABILITY response code."""
    raw = server.raw()
    assert raw.greeting.startswith(b"* OK")
    first = raw.command(b"1", b"capability")
    assert first[-1] == b"1 OK CAPABILITY completed"
    assert b"IMAP4rev1" in first[0].split()
    login = raw.command(b"2", b'login "%s" "%s"' % (USER.encode(), password().encode()))
    assert login[-1].startswith(b"2 OK")
    code = re.search(rb"\[CAPABILITY ([^\]]*)\]", login[-1])
    if code is None:
        response = raw.command(b"3", b"capability")
        assert response[-1].startswith(b"3 OK")
        return raw, set(response[0].split()[2:])
    return raw, set(code.group(1).split())


def test_capability_probe_and_enable_fallback(server: ServerThread) -> None:
    raw, capabilities = thunderbird_login(server)
    try:
        for wanted in (b"IDLE", b"UIDPLUS", b"MOVE", b"LIST-EXTENDED", b"SPECIAL-USE", b"ID"):
            assert wanted in capabilities
        identity = raw.command(b"4", b'ID ("name" "Thunderbird" "version" "128.0")')
        assert identity[0].startswith(b'* ID ("name" "Mailhaven"')
        # Thunderbird enables CONDSTORE/QRESYNC only when advertised; a client that
        # asks anyway gets OK and an empty ENABLED (RFC 5161 3.1), and must fall
        # back to fetching all flags, which it does with UID FETCH 1:* (FLAGS).
        enabled = raw.command(b"5", b"ENABLE CONDSTORE QRESYNC")
        assert enabled[-1].startswith(b"5 OK")
        advertised = {b"CONDSTORE", b"QRESYNC"} & capabilities
        assert set(enabled[0].split()[2:]) == advertised
        if not advertised:
            select = raw.command(b"6", b'select "INBOX"')
            assert not any(b"HIGHESTMODSEQ" in line for line in select)
            assert raw.command(b"7", b"UID fetch 1:* (FLAGS)")[-1].startswith(b"7 OK")
    finally:
        raw.close()


def test_list_extended_with_special_use(server: ServerThread) -> None:
    raw, _ = thunderbird_login(server)
    try:
        assert raw.command(b"4", b'create "Work/Reports"')[-1].startswith(b"4 OK")
        special = raw.command(b"5", b'list (special-use) "" "*"')
        assert special[-1].startswith(b"5 OK")
        uses = {re.search(rb'"/" (.*)$', line).group(1): line for line in special[:-1]}
        assert set(uses) == {b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"}
        assert b"\\Sent" in uses[b"Sent"] and b"\\Trash" in uses[b"Trash"]
        every = raw.command(b"6", b'list "" "*" return (special-use subscribed children)')
        names = [re.search(rb'"/" (.*)$', line).group(1) for line in every[:-1]]
        assert names[0] == b"INBOX"
        assert {b"Work", b"Work/Reports", b"Sent"} <= set(names)
        assert any(b"\\HasChildren" in line and line.endswith(b" Work") for line in every)
        lsub = raw.command(b"7", b'lsub "" "*"')
        assert lsub[-1].startswith(b"7 OK")
    finally:
        raw.close()


def test_pipelined_select_and_fetch(server: ServerThread) -> None:
    """Thunderbird pipelines SELECT with the flag and header fetches; every response
    must come back complete and in order (RFC 9051 5.5)."""
    messages = [path.read_bytes() for path in corpus_sample(5, start=40)]
    with imap_session(server) as client:
        append_all(client, "INBOX", messages)
    raw, _ = thunderbird_login(server)
    try:
        raw.send(
            b'8 select "INBOX"\r\n'
            b"9 UID fetch 1:* (FLAGS)\r\n"
            b"10 UID fetch 1:5 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ("
            + HEADER_FIELDS
            + b")])\r\n"
            b"11 uid store 2 +Flags (\\Seen)\r\n"
            b'12 UID COPY 3 "Sent"\r\n'
            b"13 noop\r\n"
        )
        select = raw.read_until_tagged(b"8")
        assert b"* 5 EXISTS" in select and select[-1].startswith(b"8 OK [READ-WRITE]")
        flags = raw.read_until_tagged(b"9")
        assert len([line for line in flags if b"FETCH (" in line]) == 5
        assert flags[-1].startswith(b"9 OK")
        headers = raw.read_until_tagged(b"10")
        sizes = [int(m) for m in re.findall(rb"RFC822\.SIZE (\d+)", b"\n".join(headers))]
        assert sizes == [len(m) for m in messages]
        assert headers[-1].startswith(b"10 OK")
        stored = raw.read_until_tagged(b"11")
        assert any(b"\\Seen" in line and b"UID 2" in line for line in stored)
        copied = raw.read_until_tagged(b"12")
        assert copied[-1].startswith(b"12 OK [COPYUID ")
        assert raw.read_until_tagged(b"13")[-1].startswith(b"13 OK")
        # IDLE as Thunderbird uses it, ended with DONE.
        raw.send(b"14 IDLE\r\n")
        assert raw.read_line().startswith(b"+ ")
        with imap_session(server) as other:
            append_all(other, "INBOX", [b"Subject: new\r\n\r\nnew\r\n"])
        assert raw.read_line() == b"* 6 EXISTS"
        raw.send(b"DONE\r\n")
        assert raw.read_until_tagged(b"14")[-1].startswith(b"14 OK")
    finally:
        raw.close()
