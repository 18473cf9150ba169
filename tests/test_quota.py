"""QUOTA (RFC 9208) over real sockets: the RFC's examples, enforcement on APPEND,
COPY and MOVE, and two sessions racing for the last free slot."""

from __future__ import annotations

import functools
import threading

import pytest

from mailhaven.cli import main
from mailhaven.config import QuotaConfig
from mailhaven.passwords import hash_password
from tests.support import PASSWORD, RawClient, ServerThread

ADMIN = "postmaster"


@functools.cache
def password_hash() -> str:
    """argon2id is slow on purpose; the accounts of these tests share one hash."""
    return hash_password(PASSWORD)


def add_user(server: ServerThread, name: str) -> None:
    server.call(server.storage.create_user(name, password_hash()))


@pytest.fixture
def server(tmp_path):
    running = ServerThread(tmp_path, quota=QuotaConfig(administrators=(ADMIN,))).start()
    add_user(running, "alice")
    add_user(running, ADMIN)
    yield running
    running.stop()


@pytest.fixture
def alice(client):
    """conftest's logged-in ``client`` on this module's quota server."""
    return client


@pytest.fixture
def admin(server):
    client = server.raw()
    client.login(ADMIN)
    yield client
    client.close()


def message(size: int, n: int = 0) -> bytes:
    head = b"Subject: message %d\r\nFrom: a@example.org\r\n\r\n" % n
    return head + b"x" * (size - len(head))


def append(client: RawClient, tag: bytes, *messages: bytes, mailbox: bytes = b"INBOX") -> bytes:
    parts = b"".join(b" {%d+}\r\n%s" % (len(m), m) for m in messages)
    return client.command(tag, b"APPEND " + mailbox + parts)[-1]


def status(client: RawClient, items: bytes = b"MESSAGES") -> bytes:
    return client.command(b"S", b"STATUS INBOX (" + items + b")")[0]


def set_quota(admin: RawClient, limits: bytes, root: bytes = b"alice") -> list[bytes]:
    lines = admin.command(b"Q", b"SETQUOTA " + root + b" (" + limits + b")")
    assert lines[-1].startswith(b"Q OK"), lines
    return lines


def test_capabilities_and_quotaset_only_for_administrators(alice, admin):
    capabilities = alice.command(b"C", b"CAPABILITY")[0].split()
    assert {b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"} <= set(capabilities)
    assert b"QUOTASET" not in capabilities
    assert b"QUOTASET" in admin.command(b"C", b"CAPABILITY")[0].split()


def test_getquotaroot_of_unlimited_account_lists_no_resources(alice):
    # RFC 9208 section 4.2.1: an empty list means no limits.
    lines = alice.command(b"G", b"GETQUOTAROOT INBOX")
    assert lines[:2] == [b'* QUOTAROOT INBOX ""', b'* QUOTA "" ()']
    assert lines[-1].startswith(b"G OK")
    # Section 4.1.2: the mailbox need not exist.
    assert alice.command(b"H", b"GETQUOTAROOT nothing/here")[0] == b'* QUOTAROOT nothing/here ""'


def test_setquota_example_and_discarding_unlisted_limits(alice, admin):
    assert append(alice, b"A", message(3000)).startswith(b"A OK")
    set_quota(admin, b"STORAGE 111 MESSAGE 1000")
    expected = b"* QUOTA alice (STORAGE 3 111 MESSAGE 1 1000)"
    assert admin.command(b"G", b'GETQUOTA "alice"')[0] == expected
    # Section 4.1.3: SETQUOTA with only STORAGE removes the MESSAGE limit.
    assert set_quota(admin, b"STORAGE 512")[0] == b"* QUOTA alice (STORAGE 3 512)"
    assert alice.command(b"G", b'GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 3 512)'
    # An empty list removes every limit.
    assert set_quota(admin, b"")[0] == b"* QUOTA alice ()"


def test_setquota_is_refused_to_users_and_for_unknown_resources(alice, admin):
    assert alice.command(b"Q", b'SETQUOTA "" (STORAGE 1)')[-1].startswith(b"Q NO [NOPERM]")
    refused = admin.command(b"Q", b"SETQUOTA alice (MAILBOX 10)")[-1]
    assert refused.startswith(b"Q NO [CANNOT]")
    assert admin.command(b"Q", b"SETQUOTA alice (STORAGE x)")[-1].startswith(b"Q BAD")


def test_other_accounts_roots_are_hidden_from_users(alice, admin):
    assert alice.command(b"G", b"GETQUOTA postmaster")[-1].startswith(b"G NO [NONEXISTENT]")
    assert admin.command(b"G", b"GETQUOTA nobody")[-1].startswith(b"G NO [NONEXISTENT]")
    assert admin.command(b"G", b"GETQUOTA alice")[0] == b"* QUOTA alice ()"


def test_append_over_message_limit_fails_and_changes_nothing(alice, admin):
    set_quota(admin, b"MESSAGE 2")
    assert append(alice, b"A", message(100, 1)).startswith(b"A OK")
    # MULTIAPPEND of two when one slot is left: all or nothing (RFC 3502 section 6.3.11).
    refused = append(alice, b"B", message(100, 2), message(100, 3))
    assert refused.startswith(b"B NO [OVERQUOTA]")
    assert status(alice) == b"* STATUS INBOX (MESSAGES 1)"
    assert append(alice, b"C", message(100, 2)).startswith(b"C OK")
    assert append(alice, b"D", message(100, 3)).startswith(b"D NO [OVERQUOTA]")
    assert alice.command(b"G", b'GETQUOTA ""')[0] == b'* QUOTA "" (MESSAGE 2 2)'


def test_append_over_storage_limit(alice, admin):
    set_quota(admin, b"STORAGE 1")  # 1024 octets
    assert append(alice, b"A", message(600)).startswith(b"A OK")
    assert append(alice, b"B", message(600)).startswith(b"B NO [OVERQUOTA]")
    assert append(alice, b"C", message(424)).startswith(b"C OK")  # exactly at the limit
    assert alice.command(b"G", b'GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 1 1)'


def test_copy_over_quota_fails_and_move_within_the_account_succeeds(alice, admin):
    assert append(alice, b"A", message(100, 1), message(100, 2)).startswith(b"A OK")
    set_quota(admin, b"MESSAGE 3")
    alice.command(b"S", b"SELECT INBOX")
    assert alice.command(b"C", b"COPY 1:2 Archive")[-1].startswith(b"C NO [OVERQUOTA]")
    assert alice.command(b"S", b"STATUS Archive (MESSAGES)")[0] == b"* STATUS Archive (MESSAGES 0)"
    assert alice.command(b"C", b"COPY 1 Archive")[-1].startswith(b"C OK")
    # Full now; MOVE does not change the account's usage, so it is allowed.
    assert alice.command(b"M", b"MOVE 1:2 Trash")[-1].startswith(b"M OK")
    assert alice.command(b"G", b'GETQUOTA ""')[0] == b'* QUOTA "" (MESSAGE 3 3)'
    # Expunging frees space again.
    alice.command(b"T", b"SELECT Trash")
    alice.command(b"D", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    alice.command(b"E", b"EXPUNGE")
    assert append(alice, b"F", message(100, 9)).startswith(b"F OK")


def test_status_deleted_and_deleted_storage(alice):
    # RFC 9208 section 4.1.4; DELETED-STORAGE in units of 1024 octets, rounded up.
    assert append(alice, b"A", *(message(2000, n) for n in range(3))).startswith(b"A OK")
    alice.command(b"S", b"SELECT INBOX")
    alice.command(b"D", b"STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    line = status(alice, b"MESSAGES DELETED DELETED-STORAGE")
    assert line == b"* STATUS INBOX (MESSAGES 3 DELETED 2 DELETED-STORAGE 4)"


def test_default_quota_from_configuration_and_cli(tmp_path, capsys):
    config = tmp_path / "mailhaven.toml"
    config.write_text('[quota]\ndefault_messages = 1\ndefault_storage = "1M"\n')
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    running = ServerThread(
        data_dir, quota=QuotaConfig(default_messages=1, default_storage=1024 * 1024)
    ).start()
    try:
        add_user(running, "alice")
        client = running.raw()
        client.login("alice")
        assert client.command(b"G", b'GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 0 1024 MESSAGE 0 1)'
        assert append(client, b"A", message(100)).startswith(b"A OK")
        assert append(client, b"B", message(100)).startswith(b"B NO [OVERQUOTA]")
        client.close()
    finally:
        running.stop()
    base = ["--config", str(config), "--data-dir", str(data_dir), "quota"]
    assert main([*base, "show", "alice"]) == 0
    assert "messages: 1 of 1" in capsys.readouterr().out
    assert main([*base, "set", "alice", "--messages", "unlimited", "--storage", "2G"]) == 0
    output = capsys.readouterr().out
    assert "storage: 100 of 2147483648 octets" in output and "messages: 1 of unlimited" in output
    assert main([*base, "reset", "alice"]) == 0
    assert "messages: 1 of 1" in capsys.readouterr().out
    assert main([*base, "show", "nobody"]) == 1


def test_concurrent_appends_race_for_the_last_slot(server, admin):
    """Two sessions append at the same moment when one message fits: exactly one
    succeeds, and usage is exact afterwards (checked over ten rounds)."""
    clients = [server.raw(), server.raw()]
    for client in clients:
        client.login("alice")
    outcomes: list[bytes] = []

    def run(index: int, barrier: threading.Barrier, results: dict[int, bytes]) -> None:
        barrier.wait()
        results[index] = append(clients[index], b"R%d" % index, message(200, index))

    for round_number in range(10):
        set_quota(admin, b"MESSAGE %d" % (round_number + 1))
        barrier = threading.Barrier(2)
        results: dict[int, bytes] = {}
        threads = [threading.Thread(target=run, args=(i, barrier, results)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        statuses = sorted(line.split()[1] for line in results.values())
        assert statuses == [b"NO", b"OK"], results
        outcomes.extend(results.values())
        quota_line = admin.command(b"G", b"GETQUOTA alice")[0]
        assert quota_line == b"* QUOTA alice (MESSAGE %d %d)" % ((round_number + 1,) * 2)
    assert sum(b"[OVERQUOTA]" in line for line in outcomes) == 10
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('default_storage = "2X"', "quota.default_storage"),
        ("default_storage = -1", "quota.default_storage"),
        ("default_messages = -5", "quota.default_messages"),
        ('administrators = "root"', "quota.administrators"),
        ("admins = []", "quota.admins: unknown setting"),
    ],
)
def test_invalid_quota_configuration_names_the_key(tmp_path, line, message):
    from mailhaven.config import ConfigError, load_config

    path = tmp_path / "bad.toml"
    path.write_text(f"[quota]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, {})


def test_quota_sizes_accept_binary_units(tmp_path):
    from mailhaven.config import load_config, parse_size

    assert [parse_size(t) for t in ("0", "512K", "2G", "2GiB", "3 MB")] == [
        0,
        512 * 1024,
        2 * 1024**3,
        2 * 1024**3,
        3 * 1024**2,
    ]
    path = tmp_path / "quota.toml"
    path.write_text('[quota]\ndefault_storage = 4096\nadministrators = ["root"]\n')
    assert load_config(path, {}).quota == QuotaConfig(4096, None, ("root",))
