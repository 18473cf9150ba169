"""Isolation: a second user cannot reach the first user's mail by any name trick,
hostile mailbox names are refused, crafted search strings are only ever data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RawClient, ServerThread

SECRET = b"Subject: payroll\r\n\r\nthe secret word is xylophone\r\n"
HOSTILE_TARGETS = [
    b'"Private"',
    b'"../alice/Private"',
    b'"/alice/Private"',
    b'"~alice/Private"',
    b'"#shared/alice/Private"',
    b'"#user/alice/Private"',
    b'"alice/Private"',
    b'"INBOX/../Private"',
    b'"Other Users/alice/Private"',
    b'"../../mailhaven.db"',
    b'"/etc/passwd"',
]


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerThread]:
    data_dir.mkdir()
    running = ServerThread(data_dir).start()
    running.add_user("alice")
    running.add_user("bob")
    alice = running.raw()
    alice.login("alice")
    assert alice.command(b"c", b"CREATE Private")[-1].startswith(b"c OK")
    append = b"APPEND Private {%d+}\r\n%s" % (len(SECRET), SECRET)
    assert alice.command(b"a", append)[-1].startswith(b"a OK")
    alice.close()
    yield running
    running.stop()


@pytest.fixture
def bob(server: ServerThread) -> RawClient:
    client = server.raw()
    client.login("bob")
    note = b"Subject: hello\r\n\r\nbob's own note\r\n"
    client.command(b"a", b"APPEND INBOX {%d+}\r\n%s" % (len(note), note))
    return client


def alice_message_count(server: ServerThread) -> int:
    client = server.raw()
    client.login("alice")
    status = client.command(b"s", b"STATUS Private (MESSAGES)")[0]
    client.close()
    return int(status.rsplit(b"MESSAGES ", 1)[1].rstrip(b")"))


def test_no_name_trick_reaches_another_users_mailbox(server: ServerThread, bob: RawClient) -> None:
    for target in HOSTILE_TARGETS:
        for command in (b"SELECT ", b"EXAMINE ", b"STATUS ", b"DELETE ", b"SUBSCRIBE "):
            suffix = b" (MESSAGES)" if command == b"STATUS " else b""
            reply = bob.command(b"t", command + target + suffix)[-1]
            assert not reply.startswith(b"t OK") or command == b"SUBSCRIBE ", (target, reply)
            assert b"xylophone" not in reply
        message = b"Subject: x\r\n\r\ninjected\r\n"
        append = bob.command(b"p", b"APPEND %s {%d+}\r\n%s" % (target, len(message), message))
        assert not append[-1].startswith(b"p OK"), target
        assert bob.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
        for command in (b"COPY 1 ", b"MOVE 1 "):
            assert not bob.command(b"m", command + target)[-1].startswith(b"m OK"), target
    listing = b"\n".join(bob.command(b"l", b'LIST "" "*"'))
    assert b"Private" not in listing
    for reference in (b'"~alice"', b'"#shared"', b'"../alice"', b'"/"'):
        for line in bob.command(b"l", b"LIST " + reference + b' "*"')[:-1]:
            assert b"Private" not in line
    assert alice_message_count(server) == 1


HOSTILE_NAMES = [
    b'"../escape"',
    b'"a/../b"',
    b'"/rooted"',
    b'"~home"',
    b'"#news"',
    b'".hidden"',
    b'"a//b"',
    b'"tab\there"',
    b'"wild*card"',
    b'"per%cent"',
    b'"' + b"x" * 1000 + b'"',
    b'"' + b"/".join([b"d"] * 40) + b'"',
    b"{5+}\r\nab\x00cd",
    b"{5+}\r\nab\x7fcd",
    '"line\u2028sep"'.encode(),
    '"zero\u200bwidth"'.encode(),
]


def test_hostile_mailbox_names_are_refused(server: ServerThread) -> None:
    client = server.raw()
    client.login("bob")
    client.command(b"e", b"ENABLE IMAP4rev2")  # UTF-8 names, so U+2028 arrives as such
    for name in HOSTILE_NAMES:
        reply = client.command(b"c", b"CREATE " + name)[-1]
        assert reply.startswith((b"c NO", b"c BAD")), (name, reply)
        renamed = client.command(b"r", b"RENAME Drafts " + name)[-1]
        assert renamed.startswith((b"r NO", b"r BAD")), (name, renamed)
    names = b"\n".join(client.command(b"l", b'LIST "" "*"'))
    for fragment in (b"escape", b"rooted", b"home", b"hidden", b"x" * 100, b"sep", b"width"):
        assert fragment not in names


CRAFTED_NEEDLES = [
    b'"x\' OR 1=1 --"',
    b'"xylo\\" OR \\"phone"',
    b'"NEAR(xylophone bob)"',
    b'"*"',
    b'"xylophone"',
    b'"body_text : xylophone"',
    b'"%"',
    b'"_"',
    b'{12+}\r\n") OR ("" --',
]


def test_crafted_search_strings_stay_data(server: ServerThread, bob: RawClient) -> None:
    assert bob.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    for needle in CRAFTED_NEEDLES:
        for key in (b"BODY", b"TEXT", b"SUBJECT", b"FROM"):
            lines = bob.command(b"q", b"SEARCH " + key + b" " + needle)
            assert lines[-1].startswith(b"q OK"), lines
            assert lines[0] == b"* SEARCH", (key, needle, lines)  # no match, not alice's either
    assert bob.command(b"q", b'SEARCH BODY "own note"')[0] == b"* SEARCH 1"
