from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mailhaven.config import Config, ConfigError, TlsConfig
from mailhaven.tls import context_for, ensure_self_signed, server_context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> tuple[str, bytes]:
    """Handshake over a socket pair and echo one message; return (version, server cert).

    Client-side failures propagate; the server thread's outcome is ignored because a
    failed handshake is reported to the client too.
    """
    server_socket, client_socket = socket.socketpair()

    def serve() -> None:
        try:
            with server.wrap_socket(server_socket, server_side=True) as tls:
                tls.sendall(tls.recv(5))
        except (ssl.SSLError, OSError):
            server_socket.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(client_socket, server_hostname=hostname) as tls:
            tls.sendall(b"hello")
            assert tls.recv(5) == b"hello"
            version, certificate = tls.version(), tls.getpeercert(binary_form=True)
    finally:
        client_socket.close()
        thread.join()
    assert version is not None and certificate is not None
    return version, certificate


def trusting_client(cert_path: Path) -> ssl.SSLContext:
    """A client that trusts exactly this certificate and checks the host name."""
    return ssl.create_default_context(cafile=str(cert_path))


def test_self_signed_certificate_contents(tls_files: tuple[Path, Path]) -> None:
    cert_path, _ = tls_files
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_name] == ["localhost"]
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv6Address("::1"),
    ]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=825) <= lifetime <= datetime.timedelta(days=826)


def test_key_is_private_and_generation_happens_once(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "tls")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    first = (cert_path.read_bytes(), key_path.read_bytes())
    assert ensure_self_signed(tmp_path / "tls") == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first


def test_missing_key_regenerates_the_pair(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    old_certificate = cert_path.read_bytes()
    key_path.unlink()
    ensure_self_signed(tmp_path)
    assert key_path.exists()
    assert cert_path.read_bytes() != old_certificate


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1"])
def test_handshake_verifies_for_every_local_name(
    tls_files: tuple[Path, Path], hostname: str
) -> None:
    cert_path, key_path = tls_files
    server = server_context(cert_path, key_path, "TLSv1.2")
    _, certificate = handshake(server, trusting_client(cert_path), hostname)
    expected = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert certificate == expected.public_bytes(Encoding.DER)


def test_handshake_fails_for_a_name_not_in_the_certificate(tls_files: tuple[Path, Path]) -> None:
    cert_path, key_path = tls_files
    server = server_context(cert_path, key_path, "TLSv1.2")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server, trusting_client(cert_path), "mail.example.org")


def test_tls12_client_gets_a_forward_secret_aead_cipher(tls_files: tuple[Path, Path]) -> None:
    cert_path, key_path = tls_files
    client = trusting_client(cert_path)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    server = server_context(cert_path, key_path, "TLSv1.2")
    server_socket, client_socket = socket.socketpair()
    thread = threading.Thread(
        target=lambda: server.wrap_socket(server_socket, server_side=True).close()
    )
    thread.start()
    with client.wrap_socket(client_socket, server_hostname="localhost") as tls:
        cipher, version, _ = tls.cipher()
    thread.join()
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)


def test_minimum_version_is_enforced(tls_files: tuple[Path, Path]) -> None:
    cert_path, key_path = tls_files
    client = trusting_client(cert_path)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    server = server_context(cert_path, key_path, "TLSv1.3")
    assert server.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ssl.SSLError):
        handshake(server, client, "localhost")


def test_compression_is_disabled(tls_files: tuple[Path, Path]) -> None:
    context = server_context(*tls_files, "TLSv1.2")
    assert context.options & ssl.OP_NO_COMPRESSION


def test_missing_certificate_names_the_setting(tmp_path: Path) -> None:
    _, key_path = ensure_self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"^tls\.cert: .*absent\.pem does not exist"):
        server_context(tmp_path / "absent.pem", key_path, "TLSv1.2")


def test_missing_key_names_the_setting(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"^tls\.key: "):
        server_context(cert_path, tmp_path / "absent.pem", "TLSv1.2")


def test_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path / "one")
    _, other_key = ensure_self_signed(tmp_path / "two")
    with pytest.raises(ConfigError, match="does not match"):
        server_context(cert_path, other_key, "TLSv1.2")


def test_file_that_is_not_pem(tmp_path: Path) -> None:
    _, key_path = ensure_self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot load"):
        server_context(garbage, key_path, "TLSv1.2")


def test_unknown_minimum_version(tls_files: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match=r"^tls\.min_version: "):
        server_context(*tls_files, "SSLv3")


def test_context_for_generates_the_default_pair_in_the_data_dir(data_dir: Path) -> None:
    context = context_for(Config(data_dir=data_dir))
    assert (data_dir / "tls" / "cert.pem").is_file()
    assert (data_dir / "tls" / "key.pem").is_file()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_context_for_uses_configured_files(tls_files: tuple[Path, Path], data_dir: Path) -> None:
    cert_path, key_path = tls_files
    config = Config(data_dir=data_dir, tls=TlsConfig(cert_path, key_path, "TLSv1.3"))
    context = context_for(config)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not (data_dir / "tls").exists()
