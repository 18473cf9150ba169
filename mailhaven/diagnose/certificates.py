"""What a server certificate says: names, validity, issuer, and whether it matches the
host name the client uses (RFC 6125 section 6, the rules RFC 9051 section 11.1 asks
IMAP clients to follow)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

EXPIRY_WARNING_DAYS = 14

# OpenSSL X509_V_ERR_* codes as reported in SSLCertVerificationError.verify_code.
_VERIFY_CODES = {
    9: "certificate-not-yet-valid",
    10: "certificate-expired",
    18: "certificate-self-signed",
    19: "certificate-untrusted",  # self-signed root in the chain
    20: "certificate-untrusted",  # issuer unknown: missing intermediate or private CA
    21: "certificate-untrusted",  # unable to verify the first certificate
    62: "certificate-hostname-mismatch",
    64: "certificate-hostname-mismatch",  # IP address mismatch
}


def verify_code_name(verify_code: int) -> str:
    return _VERIFY_CODES.get(verify_code, "certificate-invalid")


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    subject: str
    issuer: str
    names: list[str]
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool
    matches_host: bool

    def days_left(self, now: datetime.datetime) -> int:
        return (self.not_after - now).days

    def as_dict(self, now: datetime.datetime) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
            "self_signed": self.self_signed,
            "matches_host": self.matches_host,
        }

    def problems(self, now: datetime.datetime, host: str) -> list[tuple[str, str]]:
        """(code, sentence) for everything a client will reject, worst first."""
        found = []
        if now > self.not_after:
            found.append(
                (
                    "certificate-expired",
                    f"the certificate expired on {self.not_after:%Y-%m-%d} "
                    f"({-self.days_left(now)} days ago)",
                )
            )
        if now < self.not_before:
            found.append(
                (
                    "certificate-not-yet-valid",
                    f"the certificate is only valid from {self.not_before:%Y-%m-%d} "
                    "(or this machine's clock is wrong)",
                )
            )
        if not self.matches_host:
            found.append(
                (
                    "certificate-hostname-mismatch",
                    f"the certificate is for {', '.join(self.names) or self.subject}, "
                    f"not for {host}",
                )
            )
        if self.self_signed:
            found.append(("certificate-self-signed", "the certificate is self-signed"))
        return found


def _common_name(name: x509.Name) -> str:
    for attribute in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = name.get_attributes_for_oid(attribute)
        if values:
            return str(values[0].value)
    return name.rfc4514_string()


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        # Only without subjectAltName may the common name be used (RFC 6125 6.4.4).
        return [_common_name(certificate.subject)]
    dns_names = extension.value.get_values_for_type(x509.DNSName)
    addresses = [str(address) for address in extension.value.get_values_for_type(x509.IPAddress)]
    return [*dns_names, *addresses]


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 section 6.4: exact match, or a wildcard for the whole leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    try:
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(host)
    except ValueError:
        pass
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    host_first, _, host_rest = host.partition(".")
    return bool(host_first) and host_rest == pattern[2:] and "." in host_rest


def certificate_facts(der: bytes, host: str) -> CertificateFacts:
    certificate = x509.load_der_x509_certificate(der)
    names = _names(certificate)
    return CertificateFacts(
        subject=_common_name(certificate.subject),
        issuer=_common_name(certificate.issuer),
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        self_signed=certificate.issuer == certificate.subject,
        matches_host=any(name_matches(name, host) for name in names),
    )
