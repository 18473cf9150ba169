"""Step 3: TLS.  Implicit TLS (RFC 8314) or STARTTLS (RFC 9051 section 6.2.1); detects
which one a port speaks, reports the protocol version, cipher and certificate, and
which TLS versions the server refuses.

Verification uses the system's trusted CAs (or ``--cafile``) and checks the host
name, as a mail client does; when it fails, a second handshake without verification
fetches the certificate so the report can say exactly what is wrong with it.
"""

from __future__ import annotations

import datetime
import ssl
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mailhaven.diagnose.certificates import (
    EXPIRY_WARNING_DAYS,
    CertificateFacts,
    certificate_facts,
    verify_code_name,
)
from mailhaven.diagnose.greeting import NotImap, capabilities_of, parse_greeting
from mailhaven.diagnose.link import ConnectionLost, Link, StatusResponse
from mailhaven.diagnose.report import Status, StepResult
from mailhaven.diagnose.tcp import connect

IMPLICIT = "tls"
STARTTLS = "starttls"
LEGACY_CIPHERS = "ALL:@SECLEVEL=0"  # so TLS 1.0/1.1 can be tried at all with OpenSSL 3

with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated: that is the point
    warnings.simplefilter("ignore", DeprecationWarning)
    TLS_VERSIONS = {
        "TLSv1": ssl.TLSVersion.TLSv1,
        "TLSv1.1": ssl.TLSVersion.TLSv1_1,
        "TLSv1.2": ssl.TLSVersion.TLSv1_2,
        "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    }
OBSOLETE_VERSIONS = ("TLSv1", "TLSv1.1")  # RFC 8996
_TLS_RECORD_TYPES = range(0x14, 0x18)  # RFC 8446 section 5.1: the first byte of a record


@dataclass
class Established:
    """A connection ready for IMAP after the TLS step."""

    link: Link
    mode: str
    greeting: StatusResponse | None = None  # read before STARTTLS, else not yet
    cleartext_capabilities: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    address: str
    port: int
    timeout: float


class WrongProtocol(Exception):
    """The port speaks cleartext IMAP where a TLS handshake was expected."""


def client_context(cafile: Path | None) -> ssl.SSLContext:
    """What a careful mail client uses: trusted CAs, host name check, TLS >= 1.2."""
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def unverified_context(version: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if version in OBSOLETE_VERSIONS:
                context.set_ciphers(LEGACY_CIPHERS)
            context.minimum_version = context.maximum_version = TLS_VERSIONS[version]
    return context


def _looks_like_imap(data: bytes) -> bool:
    return data.startswith(b"* ")


def open_tls(endpoint: Endpoint, mode: str, context: ssl.SSLContext) -> Established:
    """Connect and negotiate TLS the way *mode* says; exceptions propagate."""
    link = Link(connect(endpoint.address, endpoint.port, endpoint.timeout), endpoint.timeout)
    try:
        established = Established(link, mode)
        if mode == STARTTLS:
            _upgrade_with_starttls(established)
        try:
            link.start_tls(context, endpoint.host)
        except (ssl.SSLError, ConnectionLost):
            if mode == IMPLICIT and _looks_like_imap(link.first_bytes):
                raise WrongProtocol(link.first_bytes.decode("ascii", "replace")) from None
            if link.first_bytes and link.first_bytes[0] not in _TLS_RECORD_TYPES:
                raise NotImap(link.first_bytes.decode("ascii", "replace")) from None
            raise
        return established
    except BaseException:
        link.close()
        raise


class StartTlsUnavailable(Exception):
    def __init__(self, code: str, summary: str, fix: str) -> None:
        super().__init__(summary)
        self.code, self.summary, self.fix = code, summary, fix


def _upgrade_with_starttls(established: Established) -> None:
    link = established.link
    greeting = parse_greeting(link.read_line())
    established.greeting = greeting
    if greeting.status == "BYE":
        raise StartTlsUnavailable(
            "greeting-bye",
            f"the server refused the connection: {greeting.text}",
            "the server is overloaded or blocks your address; try later or ask its administrator",
        )
    established.cleartext_capabilities = capabilities_of(link, greeting)
    if "STARTTLS" not in established.cleartext_capabilities or greeting.status == "PREAUTH":
        login = "LOGINDISABLED" not in established.cleartext_capabilities
        raise StartTlsUnavailable(
            "no-tls",
            "the server offers no TLS on this port (no STARTTLS capability)"
            + ("; it accepts passwords in cleartext" if login else ""),
            "enable TLS on the server (a certificate and STARTTLS or implicit TLS on port 993); "
            "never send a password over this connection",
        )
    response = link.command(b"STARTTLS").tagged
    if response is None or response.status != "OK":
        text = response.line if response else "no answer"
        raise StartTlsUnavailable(
            "starttls-refused",
            f"the server advertises STARTTLS but refused it: {text}",
            "the server's TLS configuration is broken (certificate missing?); ask its "
            "administrator",
        )


# ---------------------------------------------------------------------- the step


def check_tls(
    endpoint: Endpoint, mode: str, cafile: Path | None, *, detect: bool = False
) -> tuple[StepResult, Established | None]:
    """Negotiate TLS as *mode* says.  With *detect* (no mode given by the user), a port
    that turns out to speak STARTTLS is simply used that way."""
    started = time.perf_counter()
    try:
        established = open_tls(endpoint, mode, client_context(cafile))
    except WrongProtocol:
        if detect:
            return check_tls(endpoint, STARTTLS, cafile)
        step = _wrong_protocol(endpoint.port, expected=IMPLICIT)
    except ssl.SSLCertVerificationError as error:
        step = _certificate_failure(endpoint, mode, error)
    except (ssl.SSLError, ConnectionLost) as error:
        step = _handshake_failure(endpoint, mode, error)
    except StartTlsUnavailable as error:
        step = StepResult("tls", Status.FAIL, error.summary, code=error.code, fix=error.fix)
    except NotImap as error:
        step = _not_imap(endpoint.port, str(error))
    except TimeoutError:
        step = _silence(endpoint, mode)
    except OSError as error:
        step = StepResult(
            "tls", Status.FAIL, f"connection failed: {error}", code="connection-failed"
        )
    else:
        step = _success(endpoint, established)
        step.elapsed_ms = (time.perf_counter() - started) * 1000
        return step, established
    step.elapsed_ms = (time.perf_counter() - started) * 1000
    step.details.setdefault("mode", mode)
    return step, None


def _success(endpoint: Endpoint, established: Established) -> StepResult:
    tls = established.link.tls
    assert tls is not None
    now = datetime.datetime.now(datetime.UTC)
    facts = certificate_facts(tls.getpeercert(binary_form=True) or b"", endpoint.host)
    versions = probe_versions(endpoint, established.mode)
    how = "implicit TLS" if established.mode == IMPLICIT else "STARTTLS"
    cipher = tls.cipher()
    summary = (
        f"{how} on port {endpoint.port}: {tls.version()} {cipher[0] if cipher else ''}; "
        f"certificate for {', '.join(facts.names)} issued by {facts.issuer}, valid until "
        f"{facts.not_after:%Y-%m-%d} ({facts.days_left(now)} days)"
        f"{'; self-signed, trusted explicitly' if facts.self_signed else ''}"
        f"{_refused_versions_text(versions)}"
    )
    step = StepResult("tls", Status.OK, summary)
    step.details.update(
        mode=established.mode,
        version=tls.version(),
        cipher=cipher[0] if cipher else None,
        certificate=facts.as_dict(now),
        versions=versions,
    )
    obsolete = [version for version in OBSOLETE_VERSIONS if versions.get(version)]
    if facts.days_left(now) < EXPIRY_WARNING_DAYS:
        step.status, step.code = Status.WARN, "certificate-expires-soon"
        step.fix = f"renew the certificate: it expires in {facts.days_left(now)} days"
    elif obsolete:
        step.status, step.code = Status.WARN, "obsolete-tls-accepted"
        step.fix = f"disable {' and '.join(obsolete)} on the server (RFC 8996)"
    return step


def _refused_versions_text(versions: dict[str, bool | None]) -> str:
    refused = [name for name, accepted in versions.items() if accepted is False]
    return f"; refuses {', '.join(refused)}" if refused else ""


def probe_versions(endpoint: Endpoint, mode: str) -> dict[str, bool | None]:
    """Which TLS versions the server accepts; None where this machine cannot try."""
    accepted: dict[str, bool | None] = {}
    for version in TLS_VERSIONS:
        try:
            context = unverified_context(version)
        except (ValueError, ssl.SSLError):
            accepted[version] = None
            continue
        try:
            open_tls(endpoint, mode, context).link.close()
            accepted[version] = True
        except (ssl.SSLError, ConnectionLost, WrongProtocol, StartTlsUnavailable, NotImap):
            accepted[version] = False
        except OSError:  # including timeouts: no verdict
            accepted[version] = None
    return accepted


def _unverified_certificate(endpoint: Endpoint, mode: str) -> CertificateFacts | None:
    try:
        established = open_tls(endpoint, mode, unverified_context())
    except (OSError, ssl.SSLError, ConnectionLost, WrongProtocol, StartTlsUnavailable, NotImap):
        return None
    try:
        der = established.link.tls.getpeercert(binary_form=True) if established.link.tls else None
    finally:
        established.link.close()
    return certificate_facts(der, endpoint.host) if der else None


def _certificate_failure(
    endpoint: Endpoint, mode: str, error: ssl.SSLCertVerificationError
) -> StepResult:
    now = datetime.datetime.now(datetime.UTC)
    facts = _unverified_certificate(endpoint, mode)
    problems = facts.problems(now, endpoint.host) if facts else []
    code = verify_code_name(error.verify_code)
    # Expiry and a wrong name are what the operator must fix; "untrusted" is often
    # only the consequence of a self-signed certificate that is otherwise fine.
    specific = [item for item in problems if item[0] != "certificate-self-signed"]
    if specific:
        code = specific[0][0]
    sentences = [sentence for _, sentence in problems] or [str(error.verify_message)]
    step = StepResult(
        "tls",
        Status.FAIL,
        f"the certificate is not valid for {endpoint.host}: {'; '.join(sentences)}",
        code=code,
        fix=_CERTIFICATE_FIXES.get(code, _CERTIFICATE_FIXES["certificate-invalid"]),
    )
    step.details.update(verify_message=error.verify_message, problems=[c for c, _ in problems])
    if facts is not None:
        step.details["certificate"] = facts.as_dict(now)
    return step


_CERTIFICATE_FIXES = {
    "certificate-expired": "the server's administrator must renew the certificate; "
    "do not tell clients to accept it anyway",
    "certificate-not-yet-valid": "check this machine's date and time; if it is right, the "
    "certificate was issued with a wrong start date",
    "certificate-hostname-mismatch": "use the host name the certificate names (see above) "
    "in the client, or install a certificate for this name on the server",
    "certificate-self-signed": "install a certificate from a public CA (e.g. Let's Encrypt) on "
    "the server, or trust this one explicitly (--cafile / import it in the client)",
    "certificate-untrusted": "the server must send its full chain (intermediate certificates); "
    "if it uses a private CA, trust that CA (--cafile)",
    "certificate-invalid": "the certificate cannot be verified; the server's administrator "
    "must replace it",
}


def _handshake_failure(
    endpoint: Endpoint, mode: str, error: ssl.SSLError | ConnectionLost
) -> StepResult:
    versions = probe_versions(endpoint, mode)
    accepted = [name for name, ok in versions.items() if ok]
    reason = getattr(error, "reason", None) or str(error)
    if accepted and all(name in OBSOLETE_VERSIONS for name in accepted):
        step = StepResult(
            "tls",
            Status.FAIL,
            f"the server only speaks {', '.join(accepted)}, which current clients refuse "
            "(RFC 8996)",
            code="tls-version-too-old",
            fix="enable TLS 1.2 and TLS 1.3 on the server",
        )
    else:
        step = StepResult(
            "tls",
            Status.FAIL,
            f"the TLS handshake failed: {reason}",
            code="tls-handshake-failed",
            fix="the server's TLS configuration is incompatible with current clients "
            "(protocol versions or ciphers); ask its administrator",
        )
    step.details["versions"] = versions
    return step


def _wrong_protocol(port: int, expected: str) -> StepResult:
    if expected == IMPLICIT:
        return StepResult(
            "tls",
            Status.FAIL,
            f"port {port} speaks cleartext IMAP with STARTTLS, not implicit TLS",
            code="starttls-port",
            fix=f"set the client's security to STARTTLS for port {port} (--starttls), "
            "or use implicit TLS (SSL/TLS) on port 993",
        )
    return StepResult(
        "tls",
        Status.FAIL,
        f"port {port} speaks implicit TLS, not STARTTLS: the server waits for a TLS "
        "handshake and sends no greeting",
        code="implicit-tls-port",
        fix=f"set the client's security to SSL/TLS for port {port} (--tls)",
    )


def _silence(endpoint: Endpoint, mode: str) -> StepResult:
    if mode == STARTTLS:
        try:
            open_tls(endpoint, IMPLICIT, unverified_context()).link.close()
        except (OSError, ssl.SSLError, ConnectionLost, WrongProtocol):
            pass
        else:
            return _wrong_protocol(endpoint.port, expected=STARTTLS)
        what = "sent no IMAP greeting"
    else:
        what = "did not answer the TLS handshake"
    return StepResult(
        "tls",
        Status.FAIL,
        f"port {endpoint.port} accepted the connection but {what} within {endpoint.timeout:g} s",
        code="no-answer",
        fix="the server is overloaded or hung, or something between you and it (a proxy, "
        "a firewall) swallows the traffic; check the port and the server's state",
    )


def _not_imap(port: int, first_line: str) -> StepResult:
    return StepResult(
        "tls",
        Status.FAIL,
        f"port {port} does not speak IMAP; it said: {first_line[:60]!r}",
        code="not-imap",
        fix="this is another service's port: use 993 (implicit TLS) or 143 (STARTTLS)",
    )
