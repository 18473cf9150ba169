"""``mailhaven check`` against real Mailhaven servers in each failure state of issue 6,
plus the two endpoints Mailhaven cannot be made to be (a TLS 1.0-only server and a
server that locks out an address), which are small scripted servers."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import ipaddress
import json
import socket
import sqlite3
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailhaven import cli
from mailhaven.config import TlsConfig
from mailhaven.diagnose import resolve
from mailhaven.diagnose.auth import diagnose_login_failure
from mailhaven.diagnose.certificates import name_matches
from mailhaven.diagnose.link import parse_status
from mailhaven.diagnose.resolve import SrvTarget, order_srv_targets
from mailhaven.server import Server
from mailhaven.storage import DATABASE_FILE
from tests.support import PASSWORD, ServerThread

USER = "alice"


# ---------------------------------------------------------------------- helpers


def run_check(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *arguments: str,
    password: str = PASSWORD,
    as_json: bool = True,
) -> tuple[int, dict[str, Any], str]:
    """Run ``mailhaven check`` in-process; returns (exit code, steps by name, output)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    argv = ["check", *arguments, "--password-stdin"] + (["--json"] if as_json else [])
    code = cli.main(argv)
    output = capsys.readouterr().out
    assert password not in output
    steps = {step["name"]: step for step in json.loads(output)["steps"]} if as_json else {}
    return code, steps, output


def statuses(steps: dict[str, Any]) -> dict[str, str]:
    return {name: step["status"] for name, step in steps.items()}


@contextlib.contextmanager
def mailhaven(
    data_dir: Path, *, allow_plaintext: bool = False, **config_changes: Any
) -> Iterator[ServerThread]:
    data_dir.mkdir(parents=True, exist_ok=True)
    thread = ServerThread(data_dir, allow_plaintext=allow_plaintext)
    if config_changes:
        thread.config = dataclasses.replace(thread.config, **config_changes)
        thread.server = Server(thread.config)
    thread.start()
    thread.add_user(USER)
    try:
        yield thread
    finally:
        thread.stop()


def make_certificate(
    directory: Path, names: list[str], not_before: datetime.datetime, days: int
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert, key_path = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_path


class ScriptedServer:
    """A loopback server that answers each connection with *script* (for endpoints
    Mailhaven cannot be configured to be)."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            # One thread per connection: the check probes TLS versions on new
            # connections while its first one is still open.
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError, ssl.SSLError):
            connection.settimeout(5)
            self.script(connection)

    def close(self) -> None:
        self.listener.close()


def read_command(stream: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = stream.recv(4096)
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


# ---------------------------------------------------------------------- network


def test_nothing_listening(monkeypatch, capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]
    code, steps, _ = run_check(monkeypatch, capsys, "127.0.0.1", "--port", str(free_port))
    assert code == 1
    assert steps["tcp"]["status"] == "FAIL"
    assert steps["tcp"]["code"] == "connection-refused"
    assert steps["tls"]["status"] == "SKIP"


def test_port_that_drops_connections_times_out(monkeypatch, capsys) -> None:
    # Without root firewall rules, a full accept queue is how loopback drops SYNs: a
    # listener with backlog 0 that never accepts ignores new SYNs once one is queued.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        queued = []
        for _ in range(4):  # until the queue is full (a connect times out)
            client = socket.socket()
            client.settimeout(0.3)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                client.close()
                break
            queued.append(client)
        else:
            pytest.skip("this kernel never drops SYNs on a full accept queue")
        try:
            code, steps, _ = run_check(
                monkeypatch, capsys, "127.0.0.1", "--port", str(port), "--timeout", "0.5"
            )
        finally:
            for client in queued:
                client.close()
    assert code == 1
    assert steps["tcp"]["code"] == "connection-timeout"
    assert "firewall" in steps["tcp"]["fix"]


def test_dns_localhost_and_a_name_that_does_not_exist() -> None:
    step, addresses = resolve.check_dns("localhost")
    assert step.status.value == "OK" and addresses
    step, addresses = resolve.check_dns("nonexistent.invalid")
    assert step.status.value == "FAIL" and addresses == []
    assert step.code in ("dns-name-not-found", "dns-temporary-failure")


def test_dns_failure_suggests_the_srv_target() -> None:
    def lookup(domain: str) -> list[SrvTarget]:
        return [SrvTarget("_imaps._tcp", 0, 1, 993, "imap.mail.invalid")]

    step, _ = resolve.check_dns("nowhere.invalid.example.com.invalid", lookup)
    assert step.status.value == "FAIL"
    # .invalid names are never looked up (RFC 6761), so no SRV hint for them.
    assert "SRV" not in step.fix

    step, _ = resolve.check_dns("does-not-exist.mailhaven-check-test.", lookup)
    assert step.status.value == "FAIL"
    assert "imap.mail.invalid:993" in step.fix


def test_srv_records_are_ordered_and_dot_means_not_offered(monkeypatch) -> None:
    class Record:
        def __init__(self, priority: int, weight: int, port: int, target: str) -> None:
            self.priority, self.weight, self.port = priority, weight, port
            self.target = type("Name", (), {"to_text": lambda _self: target})()

    answers = {
        "_imaps._tcp.example.com": [
            Record(10, 5, 993, "backup.example.com."),
            Record(0, 1, 993, "imap.example.com."),
        ],
        "_imap._tcp.example.com": [Record(0, 0, 0, ".")],
    }

    def fake_resolve(self, name: str, kind: str) -> list[Record]:
        import dns.resolver

        assert kind == "SRV"
        if name not in answers:
            raise dns.resolver.NXDOMAIN
        return answers[name]

    monkeypatch.setattr("dns.resolver.Resolver.resolve", fake_resolve)
    targets = resolve.lookup_srv("example.com")
    assert [(t.service, t.target, t.available) for t in targets] == [
        ("_imaps._tcp", "imap.example.com", True),
        ("_imap._tcp", ".", False),
        ("_imaps._tcp", "backup.example.com", True),
    ]
    assert order_srv_targets(reversed(targets)) == targets


# ---------------------------------------------------------------------- TLS


def test_starttls_port_checked_as_implicit_tls(tmp_path, monkeypatch, capsys) -> None:
    with mailhaven(tmp_path / "data") as server:
        port = str(server.imap_port)
        code, steps, _ = run_check(monkeypatch, capsys, "127.0.0.1", "--port", port, "--tls")
    assert code == 1
    assert steps["tls"]["code"] == "starttls-port"
    assert "STARTTLS" in steps["tls"]["fix"]


def test_implicit_tls_port_checked_as_starttls(tmp_path, monkeypatch, capsys) -> None:
    with mailhaven(tmp_path / "data") as server:
        port = str(server.imaps_port)
        code, steps, _ = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", port, "--starttls", "--timeout", "1"
        )
    assert code == 1
    assert steps["tls"]["code"] == "implicit-tls-port"
    assert "SSL/TLS" in steps["tls"]["fix"]


def test_auto_mode_detects_starttls_on_a_custom_port(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data) as server:
        cafile = str(data / "tls" / "cert.pem")
        code, steps, _ = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", str(server.imap_port), "--cafile", cafile
        )
    assert code == 0
    assert steps["tls"]["details"]["mode"] == "starttls"


def check_trusting_certificate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cert: Path,
    key: Path,
) -> tuple[int, dict[str, Any]]:
    """``mailhaven check`` of an implicit-TLS listener serving *cert*, with *cert*
    given as the trusted CA file; returns (exit code, steps by name)."""
    with mailhaven(tmp_path / "data", tls=TlsConfig(cert=cert, key=key)) as server:
        code, steps, _ = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", str(server.imaps_port),
            "--cafile", str(cert),
        )  # fmt: skip
    return code, steps


def test_expired_certificate(tmp_path, monkeypatch, capsys) -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    cert, key = make_certificate(tmp_path / "expired", ["127.0.0.1"], long_ago, days=30)
    code, steps = check_trusting_certificate(tmp_path, monkeypatch, capsys, cert, key)
    assert code == 1
    assert steps["tls"]["code"] == "certificate-expired"
    assert steps["tls"]["details"]["certificate"]["days_left"] < -300
    assert "renew" in steps["tls"]["fix"]


def test_certificate_for_another_host_name(tmp_path, monkeypatch, capsys) -> None:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert, key = make_certificate(tmp_path / "other", ["mail.other.test"], now, days=90)
    code, steps = check_trusting_certificate(tmp_path, monkeypatch, capsys, cert, key)
    assert code == 1
    assert steps["tls"]["code"] == "certificate-hostname-mismatch"
    assert "mail.other.test" in steps["tls"]["summary"]


def test_self_signed_certificate_that_is_not_trusted(tmp_path, monkeypatch, capsys) -> None:
    with mailhaven(tmp_path / "data") as server:
        port = str(server.imaps_port)
        code, steps, _ = run_check(monkeypatch, capsys, "127.0.0.1", "--port", port)
    assert code == 1
    assert steps["tls"]["code"] == "certificate-self-signed"


def tls10_only_server(tls_files: tuple[Path, Path]) -> ScriptedServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
    context.load_cert_chain(*tls_files)

    def script(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] old server\r\n")

    return ScriptedServer(script)


def test_tls_1_0_only_endpoint(tls_files, monkeypatch, capsys) -> None:
    server = tls10_only_server(tls_files)
    try:
        code, steps, _ = run_check(monkeypatch, capsys, "127.0.0.1", "--port", str(server.port))
    finally:
        server.close()
    assert code == 1
    assert steps["tls"]["code"] == "tls-version-too-old", steps["tls"]
    versions = steps["tls"]["details"]["versions"]
    if versions["TLSv1"] is None:
        pytest.skip("this OpenSSL cannot speak TLS 1.0 at all")
    assert versions == {"TLSv1": True, "TLSv1.1": False, "TLSv1.2": False, "TLSv1.3": False}


def test_cleartext_only_server(tmp_path, monkeypatch, capsys) -> None:
    # A Mailhaven without any certificate: no STARTTLS, passwords allowed in cleartext.
    monkeypatch.setattr("mailhaven.server.context_for", lambda config: None)
    with mailhaven(tmp_path / "data", allow_plaintext=True, imaps_listen=None) as server:
        port = str(server.imap_port)
        code, steps, _ = run_check(monkeypatch, capsys, "127.0.0.1", "--port", port)
    assert code == 1
    assert steps["tls"]["code"] == "no-tls"
    assert "cleartext" in steps["tls"]["summary"]


def test_cleartext_login_before_starttls_is_a_warning(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data, allow_plaintext=True) as server:
        code, steps, _ = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", str(server.imap_port), "--starttls",
            "--cafile", str(data / "tls" / "cert.pem"),
        )  # fmt: skip
    assert code == 0
    assert steps["imap"]["status"] == "WARN"
    assert steps["imap"]["code"] == "cleartext-login-offered"


# ---------------------------------------------------------------------- authentication


def check_login(server: ServerThread, data: Path, monkeypatch, capsys, password: str = PASSWORD):
    return run_check(
        monkeypatch, capsys, "127.0.0.1", "--port", str(server.imaps_port),
        "--cafile", str(data / "tls" / "cert.pem"), "--user", USER,
        password=password,
    )  # fmt: skip


def test_wrong_password(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data) as server:
        code, steps, output = check_login(server, data, monkeypatch, capsys, 'Wrong pass"1')
    assert code == 1
    assert steps["auth"]["code"] == "AUTHENTICATIONFAILED"
    assert "password is wrong" in steps["auth"]["summary"]
    assert "Wrong pass" not in output


def test_imap_disabled_for_the_account(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data) as server:
        with contextlib.closing(sqlite3.connect(data / DATABASE_FILE)) as database:
            database.execute("UPDATE users SET imap_enabled = 0 WHERE name = ?", (USER,))
            database.commit()
        code, steps, _ = check_login(server, data, monkeypatch, capsys)
    assert code == 1
    assert steps["auth"]["code"] == "AUTHORIZATIONFAILED"
    assert "may not use IMAP" in steps["auth"]["summary"]


def test_locked_out_address(tls_files, monkeypatch, capsys) -> None:
    # Lockout is not on main yet: a scripted server answers as a locked-out one would.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)

    def script(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN SASL-IR] ready\r\n")
            tag = read_command(tls).split(b" ")[0]
            tls.sendall(tag + b" NO [UNAVAILABLE] Too many failed logins, try in 15 minutes\r\n")
            read_command(tls)

    server = ScriptedServer(script)
    try:
        code, steps, _ = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", str(server.port),
            "--cafile", str(tls_files[0]), "--user", USER,
        )  # fmt: skip
    finally:
        server.close()
    assert code == 1
    assert steps["auth"]["code"] == "UNAVAILABLE"
    assert "15 minutes" in steps["auth"]["summary"]
    assert "wait" in steps["auth"]["fix"]


def test_healthy_server(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data) as server:
        with server.imaplib_tls_client() as client:
            client.login(USER, PASSWORD)
            client.append("INBOX", None, None, b"Subject: hello\r\n\r\nbody\r\n")
        code, steps, _ = check_login(server, data, monkeypatch, capsys)
        text_code, _, text = run_check(
            monkeypatch, capsys, "127.0.0.1", "--port", str(server.imaps_port),
            "--cafile", str(data / "tls" / "cert.pem"), "--user", USER, as_json=False,
        )  # fmt: skip
    assert code == 0 and text_code == 0
    assert statuses(steps) == {name: "OK" for name in steps}
    assert list(steps) == ["dns", "tcp", "tls", "imap", "auth", "mailbox"]
    assert steps["tls"]["details"]["versions"]["TLSv1.2"] is True
    assert steps["mailbox"]["details"]["mailboxes"] >= 1
    assert steps["mailbox"]["details"]["inbox_messages"] == 1
    assert set(steps["mailbox"]["details"]["round_trips_ms"]) == {"LIST", "SELECT INBOX", "FETCH"}
    assert "result: OK" in text
    assert PASSWORD not in text


def test_without_user_login_steps_are_skipped(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    with mailhaven(data) as server:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        code = cli.main(
            ["check", "127.0.0.1", "--port", str(server.imaps_port), "--json",
             "--cafile", str(data / "tls" / "cert.pem")]
        )  # fmt: skip
    steps = {step["name"]: step for step in json.loads(capsys.readouterr().out)["steps"]}
    assert code == 0
    assert steps["imap"]["status"] == "OK"
    assert steps["auth"]["status"] == "SKIP"


# ---------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"a NO [AUTHENTICATIONFAILED] Invalid credentials", "password is wrong"),
        (b"a NO [AUTHORIZATIONFAILED] IMAP access disabled", "may not use IMAP"),
        (b"a NO [UNAVAILABLE] locked out", "refuses logins for now"),
        (b"a NO [EXPIRED] Password expired", "expired"),
        (b"a NO [PRIVACYREQUIRED] Use TLS", "encrypted connection"),
        (b"a NO Login failed", "without an RFC 5530 response code"),
    ],
)
def test_login_failures_are_explained(line: bytes, words: str) -> None:
    response = parse_status(line)
    assert response is not None
    assert words in diagnose_login_failure(response).meaning


def test_app_password_hint() -> None:
    response = parse_status(b"a NO [ALERT] Application-specific password required")
    assert response is not None
    assert "app password" in diagnose_login_failure(response).fix


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("imap.example.com", "IMAP.example.com", True),
        ("*.example.com", "imap.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("::1", "0:0::1", True),
        ("mail.other.test", "127.0.0.1", False),
    ],
)
def test_host_name_matching(pattern: str, host: str, expected: bool) -> None:
    assert name_matches(pattern, host) is expected


# ---------------------------------------------------------------------- server side


def test_failures_are_logged_with_client_and_session(tmp_path, caplog) -> None:
    with mailhaven(tmp_path / "data") as server, caplog.at_level("INFO"):
        client = server.raw()
        lines = client.command(b"a", b'LOGIN alice "x"')
        assert lines[-1].startswith(b"a NO [PRIVACYREQUIRED] Password login is disabled")
        # A STARTTLS whose handshake fails (here: the client speaks only TLS 1.0).
        assert client.command(b"b", b"STARTTLS")[-1].startswith(b"b OK")
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.check_hostname, legacy.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            legacy.set_ciphers("ALL:@SECLEVEL=0")
            legacy.minimum_version = legacy.maximum_version = ssl.TLSVersion.TLSv1
        with pytest.raises(ssl.SSLError):
            legacy.wrap_socket(client.sock)
        client.close()
    messages = [record.getMessage() for record in caplog.records]
    failed_login = next(m for m in messages if "command LOGIN failed" in m)
    assert "[PRIVACYREQUIRED]" in failed_login and "client=127.0.0.1:" in failed_login
    assert failed_login.startswith("[")  # the session id
    handshake = next(m for m in messages if "tls handshake failed" in m)
    assert "client=127.0.0.1:" in handshake
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
