"""Limits against hostile or broken clients, and TLS diagnostics, over real sockets."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PASSWORD, RawClient, ServerThread, insecure_context

from mailhaven.config import LimitsConfig, TlsConfig
from mailhaven.tls import ensure_self_signed
from mailhaven.tls_diagnostics import offered_versions


@pytest.fixture
def start(data_dir: Path) -> Iterator:
    data_dir.mkdir()
    started: list[ServerThread] = []

    def run(**settings: object) -> ServerThread:
        tls = settings.pop("tls", None)
        server = ServerThread(data_dir, limits=LimitsConfig(**settings), tls=tls)  # type: ignore[arg-type]
        started.append(server.start())
        server.add_user("alice")
        return server

    yield run
    for server in started:
        server.stop()


def wait_until(condition, seconds: float = 30.0) -> bool:  # noqa: ANN001
    """Poll *condition* until it holds or *seconds* pass (a deadline, not a timing check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def connect_from(server: ServerThread, source_ip: str) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", server.imap_port), timeout=10, source_address=(source_ip, 0)
    )


def test_pipelined_commands_beyond_the_cap_get_bad_limit(start) -> None:
    server = start(max_pipelined_commands=5)
    client = server.raw()
    client.send(b"".join(b"n%d NOOP\r\n" % number for number in range(8)))
    answers = [client.read_until_tagged(b"n%d" % number)[-1] for number in range(8)]
    assert all(answer.startswith(b"n%d OK" % n) for n, answer in enumerate(answers[:5]))
    assert all(b"BAD [LIMIT]" in answer for answer in answers[5:])
    assert client.command(b"x", b"NOOP")[-1].startswith(b"x OK")  # a new read resets it


def test_connections_per_ip_and_in_total(start) -> None:
    server = start(max_connections_per_ip=2, max_connections=3)
    first, second = RawClient(connect_from(server, "127.0.0.1")), server.raw()
    refused = RawClient(connect_from(server, "127.0.0.1"))
    assert (
        refused.greeting.startswith(b"* BYE [UNAVAILABLE]") and b"your address" in refused.greeting
    )
    other = RawClient(connect_from(server, "127.0.0.2"))
    assert other.greeting.startswith(b"* OK")
    full = RawClient(connect_from(server, "127.0.0.3"))
    assert full.greeting.startswith(b"* BYE [UNAVAILABLE]") and b"this server" in full.greeting
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as sock,
    ):
        insecure_context().wrap_socket(sock, server_hostname="localhost")  # closed before TLS
    first.command(b"z", b"LOGOUT")
    assert wait_until(lambda: server.context.connections.total == 2)
    again = RawClient(connect_from(server, "127.0.0.1"))
    assert again.greeting.startswith(b"* OK")
    for client in (second, other, again):
        client.close()


def test_connections_per_account(start) -> None:
    server = start(max_connections_per_account=1)
    first = server.raw()
    first.login("alice")
    second = server.raw()
    reply = second.command(b"L", f'LOGIN alice "{PASSWORD}"'.encode())[-1]
    assert reply.startswith(b"L NO [LIMIT]")
    first.command(b"z", b"LOGOUT")
    assert wait_until(lambda: not server.context.connections.per_account)
    second.login("alice")


def test_idle_clients_are_logged_out_before_and_after_login(start) -> None:
    server = start(preauth_timeout_seconds=1, autologout_seconds=1)
    before_login, after_login = server.raw(), server.raw()
    after_login.login("alice")
    for client in (before_login, after_login):
        assert client.read_line() == b"* BYE Autologout: idle for too long"
        with pytest.raises(ConnectionError):
            client.read_line()
    assert wait_until(lambda: not server.server._connections)


def test_a_client_that_never_reads_cannot_grow_server_buffers(start) -> None:
    server = start(write_timeout_seconds=1)
    message = b"Subject: big\r\n\r\n" + b"x" * (1024 * 1024 - 18) + b"\r\n"
    loader = server.raw()
    loader.login("alice")
    loader.command(b"a", b"APPEND INBOX {%d+}\r\n%s" % (len(message), message))
    loader.close()
    sock = socket.create_connection(("127.0.0.1", server.imap_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog = RawClient(sock)
    hog.login("alice")
    hog.command(b"s", b"SELECT INBOX")
    requests = 64  # 64 MiB of responses asked for, none read
    hog.send(b"".join(b"f%d FETCH 1 BODY[]\r\n" % n for n in range(requests)))
    connections = server.server._connections
    peak = {"buffered": 0, "written": 0}

    def dropped() -> bool:
        for connection in list(connections.values()):
            if connection.session.user is not None:
                peak["buffered"] = max(peak["buffered"], connection.buffered_output)
                peak["written"] = max(peak["written"], connection.bytes_out)
        return len(connections) == 0

    assert wait_until(dropped)
    assert peak["written"] < 8 * 1024 * 1024  # far below the 64 MiB asked for
    assert peak["buffered"] < 4 * 1024 * 1024
    hog.close()


def _tls11_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def test_tls_1_1_refused_and_every_failed_handshake_logged(
    start, caplog: pytest.LogCaptureFixture
) -> None:
    server = start()
    caplog.set_level(logging.WARNING, logger="mailhaven.tls")
    context = _tls11_client()
    with (
        socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as sock:
        sock.sendall(b"a LOGIN alice secret\r\n")  # cleartext IMAP on the TLS port
        sock.recv(100)
    starttls = server.raw()
    assert starttls.command(b"s", b"STARTTLS")[-1].startswith(b"s OK")
    with pytest.raises(ssl.SSLError):
        context.wrap_socket(starttls.sock, server_hostname="localhost")

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]

    assert wait_until(lambda: len(messages()) == 3)
    version_line, plaintext_line, starttls_line = sorted(
        messages(), key=lambda m: ("starttls" in m, "plaintext" in m)
    )
    assert "listener=imaps offered=up-to-TLSv1.1 accepted=TLSv1.2+" in version_line
    assert "reason=UNSUPPORTED_PROTOCOL" in version_line
    assert "offered=none (plaintext, not TLS" in plaintext_line
    assert "listener=starttls offered=up-to-TLSv1.1" in starttls_line


def _client_hello(context: ssl.SSLContext) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_offered_versions_read_from_a_real_client_hello() -> None:
    assert offered_versions(_client_hello(insecure_context())) == "TLSv1.2,TLSv1.3"
    assert offered_versions(_client_hello(_tls11_client())) == "up-to-TLSv1.1"
    assert (
        offered_versions(_client_hello(insecure_context())[:40])
        == "unknown (truncated ClientHello)"
    )
    assert offered_versions(b"\x80\x01") == "none (not a TLS handshake)"
    assert offered_versions(b"") == "none (nothing received)"


def _certificate(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def test_certificate_reload_keeps_sessions(start, tmp_path: Path) -> None:
    old_cert, old_key = ensure_self_signed(tmp_path / "old")
    new_cert, new_key = ensure_self_signed(tmp_path / "new")
    live_cert, live_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    live_cert.write_bytes(old_cert.read_bytes())
    live_key.write_bytes(old_key.read_bytes())
    server = start(tls=TlsConfig(cert=live_cert, key=live_key))
    session = server.imaplib_tls_client()
    session.login("alice", PASSWORD)
    assert session.sock.getpeercert(binary_form=True) == _certificate(old_cert)

    live_cert.write_bytes(new_cert.read_bytes())
    live_key.write_bytes(new_key.read_bytes())
    server.loop.call_soon_threadsafe(server.server.reload_tls)
    assert wait_until(
        lambda: (
            server.imaplib_tls_client().sock.getpeercert(binary_form=True) == _certificate(new_cert)
        )
    )
    assert session.noop()[0] == "OK"  # the old session goes on, on the old certificate
    live_key.write_text("not a key")  # a broken reload keeps the current pair
    server.loop.call_soon_threadsafe(server.server.reload_tls)
    assert server.call(_noop()) is None
    after = server.imaplib_tls_client()
    assert after.sock.getpeercert(binary_form=True) == _certificate(new_cert)
    session.logout()


async def _noop() -> None:
    """Runs on the server's loop after the reload scheduled before it."""
