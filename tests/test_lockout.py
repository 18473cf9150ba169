"""Brute-force protection over real sockets: penalty delay, IP block, account lock,
trusted networks, persistence across restarts, the CLI and the fail2ban log line."""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PASSWORD, RawClient, ServerThread

from mailhaven.cli import main
from mailhaven.config import LockoutConfig
from mailhaven.logs import LineFormatter

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"


@pytest.fixture
def make_server(data_dir: Path) -> Iterator:
    started: list[ServerThread] = []

    data_dir.mkdir(exist_ok=True)

    def start(**lockout: object) -> ServerThread:
        server = ServerThread(data_dir, lockout=LockoutConfig(**lockout)).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        if server.loop.is_running():
            server.stop()


def connect(server: ServerThread, source_ip: str = "127.0.0.1") -> RawClient:
    """A client connecting from *source_ip* (any 127.x.y.z address is loopback)."""
    sock = socket.create_connection(
        ("127.0.0.1", server.imap_port), timeout=30, source_address=(source_ip, 0)
    )
    return RawClient(sock)


def login(server: ServerThread, user: str, password: str, source_ip: str = "127.0.0.1") -> bytes:
    client = connect(server, source_ip)
    try:
        return client.command(b"L", b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))[-1]
    finally:
        client.close()


def test_each_failure_waits_longer_before_no(make_server) -> None:
    server = make_server()  # the default penalty: 1 s, doubling, at most 15 s
    server.add_user("alice")
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    server.context.lockout.sleep = record
    for _ in range(6):
        assert login(server, "alice", "wrong").startswith(b"L NO [AUTHENTICATIONFAILED]")
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert login(server, "alice", PASSWORD).startswith(b"L OK")


def test_ip_block_spares_other_addresses_and_survives_restart(make_server) -> None:
    server = make_server(delay_base_ms=0, ip_max_failures=3)
    server.add_user("alice")
    for _ in range(3):
        assert b"AUTHENTICATIONFAILED" in login(server, "nobody", "x", "127.0.0.2")
    refused = login(server, "alice", PASSWORD, "127.0.0.2")
    assert refused.startswith(b"L NO [UNAVAILABLE]") and b"temporarily" in refused
    assert login(server, "alice", PASSWORD, "127.0.0.3").startswith(b"L OK")
    server.stop()

    restarted = make_server(delay_base_ms=0, ip_max_failures=3)
    assert login(restarted, "alice", PASSWORD, "127.0.0.2").startswith(b"L NO [UNAVAILABLE]")
    assert login(restarted, "alice", PASSWORD, "127.0.0.1").startswith(b"L OK")


def test_account_lock_spares_known_addresses(make_server) -> None:
    server = make_server(delay_base_ms=0, account_max_failures=3)
    server.add_user("alice")
    assert login(server, "alice", PASSWORD, "127.0.0.1").startswith(b"L OK")  # known from now on
    for attacker in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
        assert b"AUTHENTICATIONFAILED" in login(server, "ALICE", "guess", attacker)
    locked = login(server, "alice", PASSWORD, "127.0.0.8")
    assert locked.startswith(b"L NO [AUTHENTICATIONFAILED]") and b"temporarily locked" in locked
    assert login(server, "alice", PASSWORD, "127.0.0.1").startswith(b"L OK")


def test_unknown_accounts_lock_like_real_ones(make_server) -> None:
    server = make_server(delay_base_ms=0, account_max_failures=2)
    for attacker in ("127.0.0.5", "127.0.0.6"):
        login(server, "ghost", "guess", attacker)
    assert b"temporarily locked" in login(server, "ghost", "guess", "127.0.0.7")


def test_trusted_networks_are_never_blocked(make_server) -> None:
    server = make_server(delay_base_ms=0, ip_max_failures=2, trusted_networks=("127.0.0.0/8",))
    server.add_user("alice")
    for _ in range(4):
        assert b"AUTHENTICATIONFAILED" in login(server, "alice", "wrong")
    assert login(server, "alice", PASSWORD).startswith(b"L OK")


def test_blocks_list_and_clear_cli(
    make_server, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    server = make_server(delay_base_ms=0, ip_max_failures=2, account_max_failures=2)
    server.add_user("alice")
    for _ in range(2):
        login(server, "alice", "wrong", "127.0.0.9")
    server.stop()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    try:
        assert main(["--data-dir", str(data_dir), "blocks", "list"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[:2] for line in listed] == [
            ["account", "alice"],
            ["ip", "127.0.0.9"],
        ]
        assert main(["--data-dir", str(data_dir), "blocks", "clear", "127.0.0.9"]) == 0
        assert "lifted 1 block" in capsys.readouterr().out
        assert main(["--data-dir", str(data_dir), "blocks", "list"]) == 0
        assert capsys.readouterr().out.split("\t")[:2] == ["account", "alice"]
        assert main(["--data-dir", str(data_dir), "blocks", "clear"]) == 0
        assert main(["--data-dir", str(data_dir), "blocks", "list"]) == 0
        assert capsys.readouterr().out.endswith("lifted 1 block\n")
    finally:
        root.handlers[:], root.level = handlers, level
    restarted = make_server(delay_base_ms=0, ip_max_failures=2, account_max_failures=2)
    assert login(restarted, "alice", PASSWORD, "127.0.0.9").startswith(b"L OK")


def _fail2ban_pattern() -> re.Pattern[str]:
    """The failregex documented in docs/security.md, with fail2ban's <HOST>."""
    match = re.search(r"^failregex = (.+)$", DOCS.read_text(), re.MULTILINE)
    assert match is not None
    return re.compile(match.group(1).replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))


def test_one_fail2ban_matchable_line_per_auth_event(
    make_server, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(delay_base_ms=0, ip_max_failures=2)
    server.add_user("alice")
    caplog.set_level(logging.INFO, logger="mailhaven.auth")
    login(server, "alice", PASSWORD, "127.0.0.1")
    login(server, "x ip=6.6.6.6", "wrong", "127.0.0.4")  # a crafted name forges nothing
    login(server, "alice", "wrong", "127.0.0.4")
    login(server, "alice", PASSWORD, "127.0.0.4")  # blocked by now
    formatter = LineFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "mailhaven.auth"]
    outcomes = [line for line in lines if " login ok " in line or " login failed " in line]
    assert len(outcomes) == 4
    pattern = _fail2ban_pattern()
    hosts = [m.group("host") for line in outcomes if (m := pattern.search(line))]
    assert hosts == ["127.0.0.4"] * 3
    assert "reason=ip-blocked" in outcomes[-1]
    assert any("login block kind=ip key=127.0.0.4" in line for line in lines)
