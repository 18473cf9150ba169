"""Server configuration: a TOML file, overridden by command-line flags.

Every setting, its type and its default is documented in ``docs/configuration.md``.
Validation is strict on purpose: an unknown key is almost always a typo, and a server
that silently ignores ``[imaps] lisen = ...`` would listen somewhere the operator did
not intend.  Every problem raises :class:`ConfigError` naming the offending key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
LISTENER_OFF = "off"
DEFAULT_DATA_DIR = Path("mailhaven-data")
UNIX_SOCKET_PREFIX = "unix:"

# RFC 9051 section 5.4: a post-authentication autologout timer MUST be >= 30 minutes.
MIN_AUTOLOGOUT_SECONDS = 30 * 60
# RFC 7162 section 4: clients may send command lines of about 8192 octets.
MIN_LINE_LENGTH = 8192
# RFC 2177 section 3: NATs and mobile networks drop silent connections; an untagged OK
# about every 2 minutes while idling keeps them open.
DEFAULT_IDLE_KEEPALIVE_SECONDS = 120

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class ConfigError(Exception):
    """An invalid configuration; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Certificate and key; both None means a self-signed pair in <data_dir>/tls."""

    cert: Path | None = None
    key: Path | None = None
    min_version: str = "TLSv1.2"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    allow_plaintext_on_loopback: bool = False
    # "module:function" validating OAUTHBEARER tokens (RFC 7628); "" = not offered.
    oauth_validator: str = ""


@dataclass(frozen=True, slots=True)
class LockoutConfig:
    """Brute-force protection (see docs/security.md); durations in seconds."""

    ip_max_failures: int = 10
    ip_window_seconds: int = 15 * 60
    ip_block_seconds: int = 15 * 60
    account_max_failures: int = 30
    account_window_seconds: int = 60 * 60
    account_lock_seconds: int = 60 * 60
    delay_base_ms: int = 1000  # first failure; doubles with each further failure
    delay_max_ms: int = 15000
    trusted_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_line_length: int = 65536
    max_literal_size: int = 64 * 1024 * 1024  # also advertised as APPENDLIMIT (RFC 7889)
    max_nesting: int = 32
    autologout_seconds: int = MIN_AUTOLOGOUT_SECONDS
    preauth_timeout_seconds: int = 60
    max_bad_commands: int = 20
    max_pipelined_commands: int = 1000
    max_connections: int = 1000
    max_connections_per_ip: int = 50
    max_connections_per_account: int = 50
    write_timeout_seconds: int = 120


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """RFC 9208 limits for accounts without their own (None: unlimited) and the
    users allowed to change limits with SETQUOTA."""

    default_storage: int | None = None  # octets
    default_messages: int | None = None
    administrators: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = DEFAULT_DATA_DIR
    log_level: str = "info"
    imap_listen: tuple[str, int] | None = ("127.0.0.1", 1143)
    imaps_listen: tuple[str, int] | None = ("127.0.0.1", 1993)
    idle_keepalive_seconds: int = DEFAULT_IDLE_KEEPALIVE_SECONDS
    # LMTP delivery (RFC 2033): HOST:PORT, a unix socket path, or None for off.
    lmtp_listen: tuple[str, int] | Path | None = ("127.0.0.1", 2424)
    lmtp_domains: tuple[str, ...] = ("localhost",)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    # Server processes sharing the listeners and the store (mailhaven/workers.py).
    workers: int = 1
    # "auto": uvloop when installed (mailhaven/runtime.py); "asyncio" or "uvloop".
    event_loop: str = "auto"

    @property
    def tls_dir(self) -> Path:
        """Where the self-signed certificate lives when none is configured."""
        return self.data_dir / "tls"


# ---------------------------------------------------------------------- value checks


def _expect_type(key: str, value: object, expected: type, type_name: str) -> None:
    # bool is a subclass of int in Python, but `max_nesting = true` is a mistake.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {type_name}, got {type(value).__name__} {value!r}")


def _string(key: str, value: object) -> str:
    _expect_type(key, value, str, "a string")
    return value  # type: ignore[return-value]


def _boolean(key: str, value: object) -> bool:
    _expect_type(key, value, bool, "true or false")
    return value  # type: ignore[return-value]


def _path(key: str, value: object) -> Path:
    text = _string(key, value)
    if not text:
        raise ConfigError(f"{key}: must not be empty")
    return Path(text)


def _optional_path(key: str, value: object) -> Path | None:
    text = _string(key, value)
    return Path(text) if text else None


def _choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(key: str, value: object) -> str:
        text = _string(key, value)
        if text not in choices:
            raise ConfigError(f"{key}: {text!r} is not one of {', '.join(choices)}")
        return text

    return check


def _integer_at_least(minimum: int, reason: str = "") -> Callable[[str, object], int]:
    def check(key: str, value: object) -> int:
        _expect_type(key, value, int, "an integer")
        if value < minimum:  # type: ignore[operator]
            why = f" ({reason})" if reason else ""
            raise ConfigError(f"{key}: {value} is too small, the minimum is {minimum}{why}")
        return value  # type: ignore[return-value]

    return check


def parse_host_port(key: str, text: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[ipv6]:port``; the host is returned without brackets."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not host:
        raise ConfigError(f"{key}: {text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{key}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"{key}: write an IPv6 address in brackets, as in [::1]:993")
    elif not _HOSTNAME.fullmatch(host):
        raise ConfigError(f"{key}: {host!r} is not a valid host name or address")
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(f"{key}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is out of range 1-65535")
    return host, port


_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)I?B?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Octets from "123", "512K", "2G", "2GiB" (binary units); ValueError if invalid."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 500M or 2G")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def _size(key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = parse_size(_string(key, value))
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None
    if number < 0:
        raise ConfigError(f"{key}: must not be negative")
    return number


def _user_names(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key}: expected a list of user names")
    return tuple(value)


def _listen(key: str, value: object) -> tuple[str, int] | None:
    text = _string(key, value)
    return None if text == LISTENER_OFF else parse_host_port(key, text)


def _lmtp_listen(key: str, value: object) -> tuple[str, int] | Path | None:
    """Like the IMAP listeners, or a unix socket: ``unix:PATH`` or an absolute path."""
    text = _string(key, value)
    if text.startswith(UNIX_SOCKET_PREFIX):
        return _path(key, text.removeprefix(UNIX_SOCKET_PREFIX))
    if text.startswith("/"):
        return Path(text)
    return _listen(key, text)


def _domains(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of domain names, got {value!r}")
    domains = tuple(_string(key, item).lower() for item in value)
    for domain in domains:
        if not _HOSTNAME.fullmatch(domain):
            raise ConfigError(f"{key}: {domain!r} is not a valid domain name")
    return domains


def _networks(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f'{key}: expected a list of networks, as in ["10.0.0.0/8"]')
    networks = []
    for item in value:
        text = _string(key, item)
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not an IP network") from None
    return tuple(networks)


def _callable_name(key: str, value: object) -> str:
    text = _string(key, value)
    if text and not re.fullmatch(r"[\w.]+:[\w.]+", text):
        raise ConfigError(f"{key}: {text!r} is not module:function")
    return text


def _log_level(key: str, value: object) -> str:
    # Accept "INFO" as well as "info": operators type both.
    return _choice(LOG_LEVELS)(key, _string(key, value).lower())


# ---------------------------------------------------------------------- schema

Check = Callable[[str, object], Any]

# Dotted key -> validator.  The first component names a TOML table unless the key has
# no dot (a top-level setting).
_SCHEMA: dict[str, Check] = {
    "data_dir": _path,
    "log_level": _log_level,
    "imap.listen": _listen,
    "imap.idle_keepalive_seconds": _integer_at_least(1),
    "imaps.listen": _listen,
    "lmtp.listen": _lmtp_listen,
    "lmtp.domains": _domains,
    "tls.cert": _optional_path,
    "tls.key": _optional_path,
    "tls.min_version": _choice(TLS_VERSIONS),
    "auth.allow_plaintext_on_loopback": _boolean,
    "limits.max_line_length": _integer_at_least(MIN_LINE_LENGTH, "RFC 7162 section 4"),
    "limits.max_literal_size": _integer_at_least(1),
    "limits.max_nesting": _integer_at_least(1),
    "limits.autologout_seconds": _integer_at_least(MIN_AUTOLOGOUT_SECONDS, "RFC 9051 section 5.4"),
    "limits.preauth_timeout_seconds": _integer_at_least(1),
    "limits.max_bad_commands": _integer_at_least(1),
    "quota.default_storage": _size,
    "quota.default_messages": _integer_at_least(0),
    "quota.administrators": _user_names,
    "limits.max_pipelined_commands": _integer_at_least(1),
    "limits.max_connections": _integer_at_least(1),
    "limits.max_connections_per_ip": _integer_at_least(1),
    "limits.max_connections_per_account": _integer_at_least(1),
    "limits.write_timeout_seconds": _integer_at_least(1),
    "auth.oauth_validator": _callable_name,
    "lockout.ip_max_failures": _integer_at_least(1),
    "lockout.ip_window_seconds": _integer_at_least(1),
    "lockout.ip_block_seconds": _integer_at_least(1),
    "lockout.account_max_failures": _integer_at_least(1),
    "lockout.account_window_seconds": _integer_at_least(1),
    "lockout.account_lock_seconds": _integer_at_least(1),
    "lockout.delay_base_ms": _integer_at_least(0),
    "lockout.delay_max_ms": _integer_at_least(0),
    "lockout.trusted_networks": _networks,
    "server.workers": _integer_at_least(1),
    "server.event_loop": _choice(("auto", "asyncio", "uvloop")),
}
_TABLES = {key.split(".")[0] for key in _SCHEMA if "." in key}


def _flatten(document: Mapping[str, object]) -> dict[str, object]:
    """Turn the parsed TOML into dotted keys, rejecting unknown tables and keys."""
    flat: dict[str, object] = {}
    for name, value in document.items():
        if name in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: expected a table ([{name}])")
            for inner, inner_value in value.items():
                dotted = f"{name}.{inner}"
                if dotted not in _SCHEMA:
                    raise ConfigError(f"{dotted}: unknown setting")
                flat[dotted] = inner_value
        elif name in _SCHEMA:
            flat[name] = value
        else:
            raise ConfigError(f"{name}: unknown setting")
    return flat


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


def load_config(path: Path | None, overrides: Mapping[str, object]) -> Config:
    """Read *path* (if given), apply *overrides* and validate everything.

    *overrides* uses the dotted key names of the file (``"imaps.listen"``,
    ``"log_level"``) with the same value types, so a command-line flag is checked
    exactly like the file setting it replaces.
    """
    settings = _flatten(_read_file(path)) if path is not None else {}
    for key, value in overrides.items():
        if key not in _SCHEMA:
            raise ConfigError(f"{key}: unknown setting")
        settings[key] = value
    checked = {key: _SCHEMA[key](key, value) for key, value in settings.items()}
    return _build(checked)


def _build(checked: dict[str, Any]) -> Config:
    def section(prefix: str) -> dict[str, Any]:
        return {
            key.removeprefix(f"{prefix}."): value
            for key, value in checked.items()
            if key.startswith(f"{prefix}.")
        }

    tls = TlsConfig(**section("tls"))
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("tls.cert, tls.key: set both (or neither, for a self-signed pair)")
    top_level: dict[str, Any] = {}
    for key, name in (
        ("data_dir", "data_dir"),
        ("log_level", "log_level"),
        ("imap.listen", "imap_listen"),
        ("imaps.listen", "imaps_listen"),
        ("imap.idle_keepalive_seconds", "idle_keepalive_seconds"),
        ("lmtp.listen", "lmtp_listen"),
        ("lmtp.domains", "lmtp_domains"),
        ("server.workers", "workers"),
        ("server.event_loop", "event_loop"),
    ):
        if key in checked:
            top_level[name] = checked[key]
    return Config(
        **top_level,
        tls=tls,
        auth=AuthConfig(**section("auth")),
        limits=LimitsConfig(**section("limits")),
        quota=QuotaConfig(**section("quota")),
        lockout=LockoutConfig(**section("lockout")),
    )
