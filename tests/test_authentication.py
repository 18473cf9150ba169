"""SASL mechanisms, app passwords and per-account switches over real sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PASSWORD, RawClient, ServerThread

from mailhaven.cli import main
from mailhaven.passwords import hash_password
from mailhaven.security import scram

VALID_TOKEN = "token-for-alice"


def validate_token(token: str, user: str | None) -> str | None:
    """The OAUTHBEARER validator the tests configure (auth.oauth_validator)."""
    return "alice" if token == VALID_TOKEN else None


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerThread]:
    data_dir.mkdir()
    running = ServerThread(data_dir, oauth_validator="test_authentication:validate_token")
    running.start()
    running.add_user("alice")
    yield running
    running.stop()


@pytest.fixture
def cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Run ``mailhaven`` commands against the server's data directory."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def run(*argv: str) -> int:
        return main(["--data-dir", str(data_dir), *argv])

    yield run
    root.handlers[:], root.level = handlers, level


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def authenticate(client: RawClient, mechanism: bytes, *responses: bytes) -> list[bytes]:
    """AUTHENTICATE without SASL-IR: answer each continuation with the next response;
    returns the server's challenges (decoded) and then its tagged line."""
    client.send(b"A AUTHENTICATE " + mechanism + b"\r\n")
    seen = []
    pending = list(responses)
    while True:
        line = client.read_line()
        if line.startswith(b"+"):
            seen.append(base64.b64decode(line[2:]))
            client.send(b64(pending.pop(0)) + b"\r\n" if pending else b"*\r\n")
        elif line.startswith(b"A "):
            return [*seen, line]


# ---------------------------------------------------------------------- SCRAM


def test_scram_matches_the_rfc_7677_example() -> None:
    keys = scram.derive_keys("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    first = scram.parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    exchange = scram.ServerExchange(first, keys, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert exchange.first() == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = exchange.final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    wrong = scram.ServerExchange(first, scram.derive_keys("pen", keys.salt, 4096), "x")
    assert wrong.final(b"c=biws,r=" + wrong.nonce.encode() + b",p=" + b64(b"\0" * 32)) is None


class ScramClient:
    """An independent RFC 5802 client, written from the RFC for the tests."""

    def __init__(self, user: str, password: str) -> None:
        self.password = password
        self.nonce = secrets.token_hex(12)
        self.first_bare = f"n={user},r={self.nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        assert fields["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def scram_login(server: ServerThread, user: str, password: str) -> list[bytes]:
    client = server.raw()
    scram_client = ScramClient(user, password)
    client.send(b"A AUTHENTICATE SCRAM-SHA-256 " + b64(scram_client.first()) + b"\r\n")
    seen = []
    while True:
        line = client.read_line()
        if line.startswith(b"A "):
            client.close()
            return [*seen, line]
        challenge = base64.b64decode(line[2:])
        seen.append(challenge)
        if challenge.startswith(b"r="):
            client.send(b64(scram_client.final(challenge)) + b"\r\n")
        else:
            assert challenge == b"v=" + b64(scram_client.server_signature)
            client.send(b"\r\n")


def test_scram_sha_256_login(server: ServerThread) -> None:
    exchange = scram_login(server, "alice", PASSWORD)
    assert exchange[-1].startswith(b"A OK")
    assert exchange[1].startswith(b"v=")  # the server proved it knows the keys too


def test_scram_wrong_password_unknown_user_and_no_keys_look_alike(server: ServerThread) -> None:
    server.call(server.storage.create_user("legacy", hash_password(PASSWORD)))  # no SCRAM keys
    for user, password in (("alice", "wrong"), ("nobody", PASSWORD), ("legacy", PASSWORD)):
        exchange = scram_login(server, user, password)
        assert len(exchange) == 2, exchange  # server-first, then NO: no server signature
        assert exchange[-1] == b"A NO [AUTHENTICATIONFAILED] Invalid user name or password"
    client = server.raw()
    client.login("legacy")  # PLAIN/LOGIN still work for an account without SCRAM keys


def test_password_change_replaces_scram_keys(server: ServerThread, cli) -> None:
    sys.stdin = io.StringIO("new secret\n")
    assert cli("user", "passwd", "alice", "--password-stdin") == 0
    assert scram_login(server, "alice", PASSWORD)[-1].startswith(b"A NO")
    assert scram_login(server, "alice", "new secret")[-1].startswith(b"A OK")


# ---------------------------------------------------------------------- LOGIN, OAUTHBEARER


def test_authenticate_login_mechanism(server: ServerThread) -> None:
    client = server.raw()
    exchange = authenticate(client, b"LOGIN", b"alice", PASSWORD.encode())
    assert exchange[:2] == [b"Username:", b"Password:"]
    assert exchange[-1].startswith(b"A OK")
    other = server.raw()
    exchange = authenticate(other, b"LOGIN", b"alice", b"wrong")
    assert exchange[-1].startswith(b"A NO [AUTHENTICATIONFAILED]")


def bearer(token: str, user: str = "alice") -> bytes:
    return f"n,a={user},\x01host=localhost\x01auth=Bearer {token}\x01\x01".encode()


def test_oauthbearer_with_the_configured_validator(server: ServerThread) -> None:
    client = server.raw()
    caps = client.command(b"C", b"CAPABILITY")[0]
    assert b"AUTH=OAUTHBEARER" in caps and b"AUTH=SCRAM-SHA-256" in caps
    reply = client.command(b"A", b"AUTHENTICATE OAUTHBEARER " + b64(bearer(VALID_TOKEN)))
    assert reply[-1].startswith(b"A OK")

    other = server.raw()
    exchange = authenticate(other, b"OAUTHBEARER", bearer("forged"), b"\x01")
    assert exchange[0] == b""  # the request for the initial response (no SASL-IR)
    assert b'"status": "invalid_token"' in exchange[1]
    assert exchange[-1].startswith(b"A NO [AUTHENTICATIONFAILED]")
    third = server.raw()  # a valid token for alice does not open bob's account
    exchange = authenticate(third, b"OAUTHBEARER", bearer(VALID_TOKEN, "bob"), b"\x01")
    assert exchange[-1].startswith(b"A NO [AUTHENTICATIONFAILED]")


def test_oauthbearer_is_not_offered_without_validator(data_dir: Path) -> None:
    data_dir.mkdir()
    server = ServerThread(data_dir).start()
    try:
        client = server.raw()
        assert b"AUTH=OAUTHBEARER" not in client.command(b"C", b"CAPABILITY")[0]
        reply = client.command(b"A", b"AUTHENTICATE OAUTHBEARER " + b64(bearer(VALID_TOKEN)))
        assert reply[-1].startswith(b"A NO [CANNOT]")
    finally:
        server.stop()


def test_no_mechanism_and_no_login_before_tls(data_dir: Path) -> None:
    data_dir.mkdir()
    server = ServerThread(data_dir, allow_plaintext=False).start()
    try:
        server.add_user("alice")
        client = server.raw()
        caps = client.command(b"C", b"CAPABILITY")[0]
        assert b"LOGINDISABLED" in caps and b"AUTH=" not in caps
        for command in (b'LOGIN alice "x"', b"AUTHENTICATE SCRAM-SHA-256 " + b64(b"n,,n=a,r=1")):
            assert client.command(b"A", command)[-1].startswith(b"A NO [PRIVACYREQUIRED]")
        tls = server.imaplib_tls_client()
        assert "AUTH=SCRAM-SHA-256" in tls.capabilities and "LOGINDISABLED" not in tls.capabilities
        tls.login("alice", PASSWORD)
        tls.logout()
    finally:
        server.stop()


# ---------------------------------------------------------------------- app passwords, switches


def test_app_passwords_add_list_use_revoke(server: ServerThread, cli, capsys) -> None:
    assert cli("user", "app-password", "add", "alice", "phone") == 0
    out = capsys.readouterr().out
    password = re.search(r"\(shown only now\): (\S+)", out).group(1)  # type: ignore[union-attr]
    stored = server.call(server.storage.app_password_digests(server.add_user("bob").id))
    assert stored == []
    assert cli("user", "app-password", "add", "alice", "phone") == 1  # label taken
    assert cli("user", "app-password", "list", "alice") == 0
    assert capsys.readouterr().out.startswith("phone\tcreated ")
    server.raw().login("alice", password)
    assert authenticate(server.raw(), b"PLAIN", b"\0alice\0" + password.encode())[-1].startswith(
        b"A OK"
    )
    assert password not in (Path(server.config.data_dir) / "mailhaven.db").read_bytes().decode(
        "latin-1"
    )
    assert cli("user", "app-password", "revoke", "alice", "phone") == 0
    reply = server.raw().command(b"L", f'LOGIN alice "{password}"'.encode())[-1]
    assert reply.startswith(b"L NO [AUTHENTICATIONFAILED]")
    assert cli("user", "app-password", "revoke", "alice", "phone") == 1


def test_imap_access_and_disabled_switches(server: ServerThread, cli) -> None:
    assert cli("user", "imap-access", "alice", "off") == 0
    reply = server.raw().command(b"L", f'LOGIN alice "{PASSWORD}"'.encode())[-1]
    assert reply == b"L NO [AUTHORIZATIONFAILED] IMAP access is disabled for this account"
    assert scram_login(server, "alice", PASSWORD)[-1].startswith(b"A NO [AUTHORIZATIONFAILED]")
    assert cli("user", "imap-access", "alice", "on") == 0
    server.raw().login("alice")
    assert cli("user", "disable", "alice") == 0
    reply = server.raw().command(b"L", f'LOGIN alice "{PASSWORD}"'.encode())[-1]
    assert reply == b"L NO [AUTHORIZATIONFAILED] This account is disabled"
    assert cli("user", "enable", "alice") == 0
    server.raw().login("alice")
    assert cli("user", "disable", "nobody") == 1
    assert cli("user", "imap-access", "nobody", "on") == 1


def test_tls_client_sees_same_mechanisms(server: ServerThread) -> None:
    tls = server.imaplib_tls_client()
    assert {"AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256"} <= set(tls.capabilities)
    tls.logout()
