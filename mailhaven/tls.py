"""TLS set-up: a self-signed certificate for first start, and the server SSLContext.

IMAPS (implicit TLS, RFC 8314) and STARTTLS (RFC 9051 section 6.2.1) share one
context built by :func:`server_context`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailhaven.config import Config, ConfigError

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY = datetime.timedelta(days=825)  # the longest lifetime Apple platforms accept

# Forward-secret AEAD suites only, for TLS 1.2 (TLS 1.3 suites are not configurable
# this way and are all modern).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def ensure_self_signed(directory: Path) -> tuple[Path, Path]:
    """Return (cert, key) in *directory*, generating a self-signed pair if absent.

    The certificate names localhost, 127.0.0.1 and ::1, so local clients that verify
    the host name against it (after trusting it explicitly) succeed.
    """
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(_self_signed_certificate(key).public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    # Create with mode 0600 from the start so the key is never readable by others,
    # not even briefly between write and chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.chmod(path, 0o600)  # in case the file existed with wider permissions


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alternative_names = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(ipaddress.IPv6Address("::1")),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(alternative_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def server_context(cert: Path, key: Path, min_version: str) -> ssl.SSLContext:
    """An SSLContext for the server side; ConfigError if the files are unusable."""
    if min_version not in _VERSIONS:
        raise ConfigError(f"tls.min_version: {min_version!r} is not one of TLSv1.2, TLSv1.3")
    for setting, path in (("tls.cert", cert), ("tls.key", key)):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"{setting}: {path} does not exist or is not readable")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION  # compression leaks secrets (CRIME)
    context.set_ciphers(TLS12_CIPHERS)
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"tls.cert, tls.key: cannot load {cert} with {key} "
            f"(not PEM, or the key does not match the certificate): {error.reason}"
        ) from None
    return context


def context_for(config: Config) -> ssl.SSLContext:
    """The server context for *config*: its certificate, or the self-signed default."""
    if config.tls.cert is not None and config.tls.key is not None:
        cert, key = config.tls.cert, config.tls.key
    else:
        cert, key = ensure_self_signed(config.tls_dir)
    return server_context(cert, key, config.tls.min_version)
