"""Download clients: fetchmail and getmail6 fetch every message over implicit TLS
with the certificate verified, first keeping the mail on the server and then
deleting it there; the delivered bytes are compared with the corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.interop.helpers import (
    USER,
    append_all,
    corpus_sample,
    imap_session,
    ok,
    password,
    require_program,
    run,
)
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(90)


def seeded(server: ServerThread, count: int, start: int) -> list[bytes]:
    messages = [path.read_bytes() for path in corpus_sample(count, start=start, step=37)]
    with imap_session(server) as client:
        append_all(client, "INBOX", messages)
    return messages


def inbox_count(server: ServerThread) -> int:
    with imap_session(server) as client:
        return int(ok(client.select("INBOX"))[0])


def as_fetchmail_delivers(messages: list[bytes]) -> list[bytes]:
    """fetchmail hands messages to the MDA with LF line ends, drops a leading mbox
    "From " line (not a header) and ends an unterminated last line."""
    delivered = (re.sub(rb"^From .*\n", b"", raw.replace(b"\r\n", b"\n")) for raw in messages)
    return sorted(raw if raw.endswith(b"\n") else raw + b"\n" for raw in delivered)


def rewritten_by_getmail(message: bytes) -> bytes:
    """getmail6 re-serialises each message through Python's email package: it
    refolds long header lines, spaces "To:A" as "To: A", and adds Return-Path when
    there is none; compared without whitespace and that header."""
    return re.sub(rb"\s+", b"", re.sub(rb"^Return-Path: <unknown>\n", b"", message))


def fetchmailrc(server: ServerThread, cert_file: Path, out: Path, *, keep: bool) -> str:
    # Each message goes to the MDA on stdin; the MDA writes it to its own file.
    mda = f"/bin/sh -c 'cat > $(mktemp {out}/msg.XXXXXXXX)'"
    return (
        # A corpus message starts with an mbox "From " line, which fetchmail
        # refuses as a header unless told to accept it (bad-header accept).
        f"poll 127.0.0.1 protocol IMAP port {server.imaps_port} bad-header accept\n"
        f'  user "{USER}" password "{password()}" is "{USER}" here\n'
        # The certificate names localhost; fetchmail compares that with the host polled.
        f"  ssl sslcertck sslcertfile {cert_file} sslcommonname localhost\n"
        f'  fetchall {"keep" if keep else "nokeep"} no rewrite mda "{mda}"\n'
    )


def test_fetchmail_downloads_then_deletes(
    server: ServerThread, cert_file: Path, tmp_path: Path
) -> None:
    fetchmail = require_program("fetchmail")
    messages = seeded(server, 10, start=3)
    out = tmp_path / "delivered"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    env = {"HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    # fetchmail insists its configuration is private; --invisible keeps it from
    # adding a Received header, so the bytes can be compared.
    for keep in (True, False):
        for stale in out.iterdir():
            stale.unlink()
        rc.write_text(fetchmailrc(server, cert_file, out, keep=keep))
        rc.chmod(0o600)
        run([fetchmail, "--nodetach", "--invisible", "-f", rc], env=env)
        delivered = sorted(path.read_bytes() for path in out.iterdir())
        assert delivered == as_fetchmail_delivers(messages)
        assert inbox_count(server) == (len(messages) if keep else 0)


def getmailrc(server: ServerThread, cert_file: Path, out: Path, *, delete: bool) -> str:
    return f"""\
[retriever]
type = SimpleIMAPSSLRetriever
server = localhost
port = {server.imaps_port}
username = {USER}
password = {password()}
mailboxes = ("INBOX", "Grüße")
ca_certs = {cert_file}
record_mailbox = false

[destination]
# getmail refuses Maildir delivery as root (as CI runs); an external MDA writing
# each message to its own file works for any user.
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat > $(mktemp {out}/msg.XXXXXXXX)")
allow_root_commands = true

[options]
read_all = true
delete = {str(delete).lower()}
delivered_to = false
received = false
message_log_syslog = false
"""


def test_getmail_downloads_then_deletes(
    server: ServerThread, cert_file: Path, tmp_path: Path
) -> None:
    getmail = require_program("getmail")
    messages = seeded(server, 8, start=9)
    extra = [path.read_bytes() for path in corpus_sample(2, start=500)]
    with imap_session(server) as client:
        ok(client.create("Gr&APwA3w-e"))
        append_all(client, "Gr&APwA3w-e", extra)
    out = tmp_path / "delivered"
    out.mkdir()
    rc_dir = tmp_path / "getmail"
    rc_dir.mkdir()
    for delete in (False, True):
        for stale in out.iterdir():
            stale.unlink()
        (rc_dir / "getmailrc").write_text(getmailrc(server, cert_file, out, delete=delete))
        # Without delete, getmail remembers what it fetched; start afresh each time.
        for state in rc_dir.glob("oldmail-*"):
            state.unlink()
        run([getmail, "--getmaildir", rc_dir, "--rcfile", "getmailrc"])
        delivered = sorted(path.read_bytes() for path in out.iterdir())
        expected = [raw.replace(b"\r\n", b"\n") for raw in messages + extra]
        assert sorted(map(rewritten_by_getmail, delivered)) == sorted(
            map(rewritten_by_getmail, expected)
        )
        assert inbox_count(server) == (0 if delete else len(messages))
