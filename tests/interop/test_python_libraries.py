"""Python IMAP libraries as applications use them: imaplib (the standard library),
IMAPClient, imap-tools and aioimaplib (IDLE)."""

from __future__ import annotations

import asyncio
import importlib
import re
import ssl
from types import ModuleType

import pytest

from mailhaven.codec.mailbox_names import encode_mutf7
from tests.interop.helpers import (
    TRICKY_NAMES,
    USER,
    append_all,
    corpus_sample,
    imap_session,
    imapclient_session,
    missing,
    ok,
    password,
    quote,
)
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(60)


def require_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python package {name!r}")
        raise


def test_imaplib_fetches_corpus_byte_for_byte(server: ServerThread) -> None:
    """RFC 3501 6.4.5: BODY[] is the message exactly as appended; imaplib keeps
    the literal's bytes untouched, so every byte is compared."""
    messages = [path.read_bytes() for path in corpus_sample(60, step=11)]
    with imap_session(server) as client:
        append_all(client, "INBOX", messages)
        ok(client.select("INBOX", readonly=True))
        data = ok(client.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])"))
    fetched = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            size = int(re.search(rb"RFC822\.SIZE (\d+)", item[0]).group(1))
            assert size == len(item[1])
            fetched[uid] = item[1]
    assert [fetched[uid] for uid in sorted(fetched)] == messages


def test_imaplib_mailbox_names_in_modified_utf7(server: ServerThread) -> None:
    """imaplib sends names as given: the application encodes modified UTF-7
    (RFC 3501 5.1.3) and quotes; create, list, select, rename and delete."""
    with imap_session(server) as client:
        for name in TRICKY_NAMES:
            wire = quote(encode_mutf7(name).decode())
            ok(client.create(wire))
            ok(client.select(wire))
            append_all(client, wire, [b"Subject: in " + name.encode() + b"\r\n\r\nx\r\n"])
            assert ok(client.search(None, "ALL")) == [b"1"]
            ok(client.close())
        listed = b"\n".join(ok(client.list('""', "*")))
        for name in TRICKY_NAMES:
            assert quote(encode_mutf7(name).decode()).encode() in listed or (
                encode_mutf7(name) in listed
            )
        for name in TRICKY_NAMES:
            old = quote(encode_mutf7(name).decode())
            new = quote(encode_mutf7(name + " (old)").decode())
            ok(client.rename(old, new))
            typ, _ = client.select(old)
            assert typ == "NO"
            ok(client.select(new))
            assert ok(client.search(None, "ALL")) == [b"1"]
            ok(client.close())
            ok(client.delete(new))
        assert not any(b"(old)" in line for line in ok(client.list('""', "*")))


def test_imapclient_folders_flags_move(server: ServerThread) -> None:
    """IMAPClient encodes folder names itself; it also drives MOVE and flags."""
    client = imapclient_session(server)
    try:
        for name in TRICKY_NAMES:
            assert client.create_folder(name)
        listed = {folder for _, _, folder in client.list_folders()}
        assert set(TRICKY_NAMES) <= listed
        assert {"Deep", "Deep/er", "日本語"} <= listed  # the hierarchy is complete
        client.append("INBOX", b"Subject: one\r\n\r\nbody\r\n", flags=[b"$Label1"])
        client.select_folder("INBOX")
        uid = client.search(["SUBJECT", "one"])[0]
        client.add_flags([uid], [b"\\Flagged"])
        assert set(client.get_flags([uid])[uid]) - {b"\\Recent"} == {b"\\Flagged", b"$Label1"}
        client.move([uid], "日本語/受信箱")
        assert client.search() == []
        info = client.select_folder("日本語/受信箱")
        assert info[b"EXISTS"] == 1
        client.unselect_folder()
        for name in sorted(TRICKY_NAMES, reverse=True):
            client.rename_folder(name, name + "-renamed")
            assert client.folder_exists(name + "-renamed")
            assert not client.folder_exists(name)
    finally:
        client.logout()


def test_utf8_names_after_enable_imap4rev2(server: ServerThread) -> None:
    """RFC 9051 5.1: after ENABLE IMAP4rev2 names travel as UTF-8 (here from a raw
    client, as IMAPClient cannot send them), and IMAP4rev1 clients see the same
    names in modified UTF-7."""
    raw = server.raw()
    try:
        raw.login(USER)
        assert raw.command(b"E", b"ENABLE IMAP4rev2")[-1].startswith(b"E OK")
        name = "絵文字 🎉/子".encode()
        assert raw.command(b"C", b'CREATE "' + name + b'"')[-1].startswith(b"C OK")
        listed = raw.command(b"L", b'LIST "" "*"')
        assert b'* LIST (\\HasNoChildren) "/" "' + name + b'"' in listed
        assert raw.command(b"S", b'SELECT "' + name + b'"')[-1].startswith(b"S OK")
    finally:
        raw.close()
    client = imapclient_session(server)
    try:
        assert "絵文字 🎉/子" in {folder for _, _, folder in client.list_folders()}
    finally:
        client.logout()


def test_imap_tools_read_flag_move_delete(server: ServerThread) -> None:
    imap_tools = require_module("imap_tools")
    messages = [path.read_bytes() for path in corpus_sample(8, start=5)]
    context = ssl.create_default_context(cafile=str(server.config.tls_dir / "cert.pem"))
    with imap_tools.MailBox("127.0.0.1", server.imaps_port, ssl_context=context).login(
        USER, password(), initial_folder="INBOX"
    ) as mailbox:
        for raw in messages:
            mailbox.append(raw, "INBOX")
        mailbox.folder.create("Grüße/Archiv")
        assert "Grüße/Archiv" in {f.name for f in mailbox.folder.list()}
        fetched = list(mailbox.fetch(mark_seen=False))
        assert [m.obj.as_bytes() for m in fetched] == [
            imap_tools.MailMessage.from_bytes(raw).obj.as_bytes() for raw in messages
        ]
        uids = [m.uid for m in fetched]
        mailbox.flag(uids[:3], imap_tools.MailMessageFlags.FLAGGED, True)
        assert len(list(mailbox.fetch(imap_tools.AND(flagged=True)))) == 3
        mailbox.move(uids[:2], "Grüße/Archiv")
        mailbox.delete(uids[2:4])
        assert len(list(mailbox.fetch(headers_only=True))) == 4
        mailbox.folder.set("Grüße/Archiv")
        assert len(list(mailbox.fetch())) == 2


def test_aioimaplib_idle_sees_new_mail(server: ServerThread) -> None:
    """RFC 2177: a client in IDLE is told about a message appended by another
    session without asking."""
    aioimaplib = require_module("aioimaplib")

    async def scenario() -> list:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=server.imap_port, timeout=20)
        await client.wait_hello_from_server()
        assert (await client.login(USER, password())).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
        idle = await client.idle_start(timeout=20)
        with imap_session(server) as other:
            append_all(other, "INBOX", [b"Subject: pushed\r\n\r\nhello\r\n"])
        pushed = await client.wait_server_push(timeout=20)
        client.idle_done()
        await asyncio.wait_for(idle, 20)
        await client.logout()
        return pushed

    pushed = asyncio.run(scenario())
    assert any(b"EXISTS" in (line if isinstance(line, bytes) else line.encode()) for line in pushed)


def test_clients_agree_on_names(server: ServerThread) -> None:
    """A folder created by one client is found under the same name by the others."""
    client = imapclient_session(server)
    client.create_folder("Kraków/Żółw")
    client.logout()
    with imap_session(server) as client:
        listed = b"".join(ok(client.list('""', "Krak*")))
        assert encode_mutf7("Kraków/Żółw") in listed
