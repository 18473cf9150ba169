"""Import from a live IMAP server and a Dovecot Maildir; Dovecot passwd-file accounts
with rehash at login; backup while the server writes, and restore."""

from __future__ import annotations

import datetime
import io
import os
import threading
from pathlib import Path

import pytest

from mailhaven.cli import main
from mailhaven.passwords import hash_password
from tests.mailflow_support import FLAG_CYCLE, corpus_files, snapshot
from tests.support import PASSWORD, ServerThread

# Generated with Dovecot 2.3's `doveadm pw -s SCHEME -p pw` (password "pw").
DOVECOT_HASHES = {
    "sha512": "{SHA512-CRYPT}$6$Rk.ld.x0/gvpGR94$jHyPHduFYoWR6/3Tw6K3mT53LoODGt9.sNNjz3HMSmTA6kX0"
    "VSGqXothnLrMzMmovjbEMtTQ0Epr3k.Jl43LD1",
    "sha256": "{SHA256-CRYPT}$5$KMsKXqqew6MKGb/p$x8q9qRHbNsIZ8SQ5va/LX11y4qKWllvvWXOtcTR3NED",
    "blf": "{BLF-CRYPT}$2y$05$wpq/Yds2ra4UJOlM/kjma..aJx2fJ/VjmARIJQz9/qFwv3SHBs6fq",
    "ssha512": "{SSHA512}YYqGAklnKl2fjVcwk42sfsJhY3r8D/zG56C2/WneUZEwSA8tMlGVqeEBjzH/L/8R1wOd1/"
    "hj7KqYe6Ube/l93D/HihY=",
    "argon": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$A5MnbUu+FbOxLsFMiS/kRQ$2Csw9XrpAWU/p6q8s"
    "+MZf9YU5jOlkKjFNeQzzucKfno",
    "plain": "{PLAIN}pw",
}


def start_server(data_dir: Path) -> ServerThread:
    data_dir.mkdir(parents=True, exist_ok=True)
    return ServerThread(data_dir).start()


def run(data_dir: Path, *args: str, stdin: str = "") -> int:
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(["--data-dir", str(data_dir), *args])
    finally:
        sys.stdin = saved


# ---------------------------------------------------------------------- IMAP source


def test_import_from_live_imap_server_is_complete_and_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = start_server(tmp_path / "source")
    try:
        source.add_user("remote")
        files = corpus_files()[:30]
        client = source.imaplib_client("remote")
        client.create("Lists/python")
        date = datetime.datetime(
            2023, 5, 6, 7, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        )
        for index, file in enumerate(files):
            folder = "INBOX" if index % 2 else "Lists/python"
            flags = " ".join(sorted(FLAG_CYCLE[index % len(FLAG_CYCLE)]))
            client.append(folder, f"({flags})", date, file.read_bytes())
        client.logout()
        url = f"imap://remote@127.0.0.1:{source.imap_port}"
        target = tmp_path / "target"
        assert run(target, "user", "add", "local", "--password-stdin", stdin="x\n") == 0
        assert (
            run(target, "import", "local", url, "--password-stdin", "--insecure", stdin=PASSWORD)
            == 0
        )
        remote, _ = snapshot(source.config.data_dir, "remote")
        local, _ = snapshot(target, "local")
        for name in ("INBOX", "Lists/python"):
            assert [m[1:] for m in local[name]] == [m[1:] for m in remote[name]]
        assert sum(len(local[name]) for name in local) == 30
        capsys.readouterr()

        # A rerun copies nothing; a new source message is the only one copied.
        client = source.imaplib_client("remote")
        client.append("INBOX", "(\\Flagged)", date, b"Subject: late\r\n\r\nnew\r\n")
        client.logout()
        assert (
            run(target, "import", "local", url, "--password-stdin", "--insecure", stdin=PASSWORD)
            == 0
        )
        assert "imported 1 messages" in capsys.readouterr().err
        local, _ = snapshot(target, "local")
        assert sum(len(local[name]) for name in local) == 31
        assert local["INBOX"][-1][1:3] == (
            b"Subject: late\r\n\r\nnew\r\n",
            frozenset({"\\Flagged"}),
        )
    finally:
        source.stop()


def test_import_refuses_bad_source_password(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    source = start_server(tmp_path / "source")
    try:
        source.add_user("remote")
        target = tmp_path / "target"
        run(target, "user", "add", "local", "--password-stdin", stdin="x\n")
        url = f"imap://remote@127.0.0.1:{source.imap_port}"
        assert (
            run(target, "import", "local", url, "--password-stdin", "--insecure", stdin="wrong")
            == 1
        )
        assert "AUTHENTICATIONFAILED" in capsys.readouterr().err
    finally:
        source.stop()


# ---------------------------------------------------------------------- Dovecot Maildir


def make_dovecot_maildir(root: Path) -> None:
    """A Maildir as Dovecot 2.3 leaves it: uidlist v3, keywords, Maildir++ folders."""
    for directory in (root, root / ".Lists.python", root / ".Entw&APw-rfe"):
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True)
    (root / "dovecot-uidlist").write_text(
        "3 V1700000000 N12 G3085f01b7f11094c501100008c4a11c1\n"
        "5 :1700000001.M1P1.host,S=30,W=32\n"
        "9 :1700000002.M2P1.host,S=31,W=33\n"
    )
    (root / "dovecot-keywords").write_text("0 $Label1\n1 work\n")
    (root / "cur" / "1700000001.M1P1.host,S=30,W=32:2,RSb").write_bytes(b"Subject: one\n\nfirst\n")
    (root / "cur" / "1700000002.M2P1.host,S=31,W=33:2,Fa").write_bytes(b"Subject: two\n\nsecond\n")
    (root / "new" / "1700000003.M3P1.host").write_bytes(b"Subject: three\n\nnew, no uid yet\n")
    os.utime(root / "cur" / "1700000001.M1P1.host,S=30,W=32:2,RSb", (1700000001, 1700000001))
    (root / ".Lists.python" / "cur" / "1.M1.host:2,S").write_bytes(b"Subject: py\n\nlist\n")
    (root / ".Entw&APw-rfe" / "cur" / "1.M1.host:2,D").write_bytes(b"Subject: d\n\ndraft\n")


def test_import_dovecot_maildir_keeps_uids_uidvalidity_keywords(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    make_dovecot_maildir(maildir)
    data_dir = tmp_path / "data"
    run(data_dir, "user", "add", "alice", "--password-stdin", stdin="x\n")
    assert run(data_dir, "import", "alice", str(maildir)) == 0
    mail, validity = snapshot(data_dir, "alice")
    assert validity["INBOX"] == 1700000000
    inbox = [(uid, raw, flags) for uid, raw, flags, _ in mail["INBOX"]]
    assert inbox == [
        (5, b"Subject: one\r\n\r\nfirst\r\n", frozenset({"\\Answered", "\\Seen", "work"})),
        (9, b"Subject: two\r\n\r\nsecond\r\n", frozenset({"\\Flagged", "$Label1"})),
        (12, b"Subject: three\r\n\r\nnew, no uid yet\r\n", frozenset()),
    ]
    assert mail["INBOX"][0][3] == datetime.datetime.fromtimestamp(1700000001, datetime.UTC)
    assert [m[2] for m in mail["Lists/python"]] == [frozenset({"\\Seen"})]
    assert [m[2] for m in mail["Entwürfe"]] == [frozenset({"\\Draft"})]


# ---------------------------------------------------------------------- passwd-file


def test_import_passwd_file_users_log_in_and_get_argon2id(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    lines = [f"{user}:{hash_}:1000:1000::/home/{user}::" for user, hash_ in DOVECOT_HASHES.items()]
    passwd.write_text("# Dovecot users\n" + "\n".join(lines) + "\nbroken:{NOPE}x\n")
    data_dir = tmp_path / "data"
    assert run(data_dir, "user", "import-passwd", str(passwd)) == 1  # one line skipped
    server = start_server(data_dir)
    try:
        for user in DOVECOT_HASHES:
            stored = server.call(server.storage.get_user(user)).password_hash
            assert not stored.startswith("{PLAIN}")  # hashed at import, never stored clear
            if user in ("sha512", "blf"):  # a wrong password fails, hash untouched
                client = server.imaplib_client()
                with pytest.raises(client.error):
                    client.login(user, "wrong")
                assert server.call(server.storage.get_user(user)).password_hash == stored
            client = server.imaplib_client()
            assert client.login(user, "pw")[0] == "OK", user
            client.logout()
            upgraded = server.call(server.storage.get_user(user)).password_hash
            assert upgraded.startswith("$argon2id$"), (user, upgraded)
            client = server.imaplib_client()
            assert client.login(user, "pw")[0] == "OK"  # with the new hash
            client.logout()
        assert server.call(server.storage.get_user("broken")) is None
    finally:
        server.stop()


# ---------------------------------------------------------------------- backup / restore


def test_backup_during_appends_restores_to_matching_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "live")
    try:
        server.call(server.storage.create_user("alice", hash_password(PASSWORD)))
        files = corpus_files()[:60]
        halfway = threading.Event()

        def writer() -> None:
            client = server.imaplib_client("alice")
            for index, file in enumerate(files):
                client.append("INBOX", "(\\Seen)" if index % 2 else "()", None, file.read_bytes())
                if index == 20:
                    halfway.set()
            client.logout()

        thread = threading.Thread(target=writer)
        thread.start()
        assert halfway.wait(60)
        backup = tmp_path / "backup.db"
        assert run(server.config.data_dir, "backup", str(backup)) == 0  # while appends go on
        thread.join(120)
        live_at_end, _ = snapshot(server.config.data_dir, "alice")
    finally:
        server.stop()

    restored_dir = tmp_path / "restored"
    assert run(restored_dir, "restore", str(backup)) == 0
    assert run(restored_dir, "restore", str(backup)) == 1  # no silent overwrite
    restored = start_server(restored_dir)
    try:
        client = restored.imaplib_client("alice")
        typ, data = client.select("INBOX")
        count = int(data[0])
        assert 21 <= count <= 60
        typ, fetched = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        bodies = [item[1] for item in fetched if isinstance(item, tuple)]
        client.logout()
    finally:
        restored.stop()
    restored_mail, _ = snapshot(restored_dir, "alice")
    # The backup is a prefix of the live mailbox: a consistent snapshot, byte for byte.
    assert restored_mail["INBOX"] == live_at_end["INBOX"][: len(restored_mail["INBOX"])]
    assert bodies == [raw for _, raw, _, _ in restored_mail["INBOX"]]
