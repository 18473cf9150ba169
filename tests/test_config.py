from __future__ import annotations

from pathlib import Path

import pytest

from mailhaven.config import (
    AuthConfig,
    Config,
    ConfigError,
    LimitsConfig,
    TlsConfig,
    load_config,
    parse_host_port,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailhaven.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file() -> None:
    config = load_config(None, {})
    assert config == Config(
        data_dir=Path("mailhaven-data"),
        log_level="info",
        imap_listen=("127.0.0.1", 1143),
        imaps_listen=("127.0.0.1", 1993),
        tls=TlsConfig(cert=None, key=None, min_version="TLSv1.2"),
        auth=AuthConfig(allow_plaintext_on_loopback=False),
        limits=LimitsConfig(
            max_line_length=65536,
            max_literal_size=67108864,
            max_nesting=32,
            autologout_seconds=1800,
            preauth_timeout_seconds=60,
            max_bad_commands=20,
        ),
    )
    assert config.tls_dir == Path("mailhaven-data/tls")


def test_every_setting_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        data_dir = "/srv/mail"
        log_level = "DEBUG"
        [imap]
        listen = "off"
        [imaps]
        listen = "[::1]:993"
        [tls]
        cert = "/etc/mail/cert.pem"
        key = "/etc/mail/key.pem"
        min_version = "TLSv1.3"
        [auth]
        allow_plaintext_on_loopback = true
        [limits]
        max_line_length = 10000
        max_literal_size = 1000
        max_nesting = 5
        autologout_seconds = 3600
        preauth_timeout_seconds = 10
        max_bad_commands = 3
        """,
    )
    config = load_config(path, {})
    assert config.data_dir == Path("/srv/mail")
    assert config.log_level == "debug"
    assert config.imap_listen is None
    assert config.imaps_listen == ("::1", 993)
    assert config.tls == TlsConfig(
        cert=Path("/etc/mail/cert.pem"), key=Path("/etc/mail/key.pem"), min_version="TLSv1.3"
    )
    assert config.auth.allow_plaintext_on_loopback is True
    assert config.limits == LimitsConfig(10000, 1000, 5, 3600, 10, 3)


def test_overrides_win_over_file_and_file_over_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        data_dir = "from-file"
        log_level = "warning"
        [imaps]
        listen = "0.0.0.0:2993"
        """,
    )
    config = load_config(path, {"data_dir": "from-flag", "imap.listen": "localhost:2143"})
    assert config.data_dir == Path("from-flag")
    assert config.log_level == "warning"
    assert config.imap_listen == ("localhost", 2143)
    assert config.imaps_listen == ("0.0.0.0", 2993)


def test_empty_tls_paths_mean_self_signed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[tls]\ncert = ""\nkey = ""\n'), {})
    assert config.tls.cert is None and config.tls.key is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:143", ("127.0.0.1", 143)),
        ("localhost:65535", ("localhost", 65535)),
        ("mail.example.org:1", ("mail.example.org", 1)),
        ("[::]:993", ("::", 993)),
        ("[fe80::1]:1143", ("fe80::1", 1143)),
    ],
)
def test_host_port_parsing(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port("imap.listen", text) == expected


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('log_level = "verbose"', "log_level", "not one of"),
        ("log_level = 3", "log_level", "expected a string"),
        ("data_dir = 7", "data_dir", "expected a string"),
        ('data_dir = ""', "data_dir", "must not be empty"),
        ('[imap]\nlisten = "127.0.0.1"', "imap.listen", "not HOST:PORT"),
        ('[imap]\nlisten = ":143"', "imap.listen", "not HOST:PORT"),
        ('[imap]\nlisten = "127.0.0.1:0"', "imap.listen", "out of range"),
        ('[imaps]\nlisten = "127.0.0.1:65536"', "imaps.listen", "out of range"),
        ('[imaps]\nlisten = "127.0.0.1:99x"', "imaps.listen", "not a number"),
        ('[imaps]\nlisten = "::1:993"', "imaps.listen", "brackets"),
        ('[imaps]\nlisten = "[nonsense]:993"', "imaps.listen", "not an IPv6 address"),
        ('[imaps]\nlisten = "bad host:993"', "imaps.listen", "not a valid host"),
        ("[imaps]\nlisten = 993", "imaps.listen", "expected a string"),
        ('[tls]\nmin_version = "TLSv1.1"', "tls.min_version", "not one of"),
        ('[tls]\ncert = "c.pem"', "tls.cert, tls.key", "set both"),
        ('[auth]\nallow_plaintext_on_loopback = "yes"', "auth.allow_plaintext_on_loopback", "true"),
        ("[limits]\nmax_nesting = -1", "limits.max_nesting", "too small"),
        ("[limits]\nmax_literal_size = 0", "limits.max_literal_size", "too small"),
        ("[limits]\nmax_bad_commands = -5", "limits.max_bad_commands", "too small"),
        ("[limits]\npreauth_timeout_seconds = 0", "limits.preauth_timeout_seconds", "too small"),
        ("[limits]\nmax_nesting = 2.5", "limits.max_nesting", "expected an integer"),
        ("[limits]\nmax_nesting = true", "limits.max_nesting", "expected an integer"),
        ("[limits]\nautologout_seconds = 600", "limits.autologout_seconds", "RFC 9051"),
        ("[limits]\nmax_line_length = 1000", "limits.max_line_length", "RFC 7162"),
        ("colour = 1", "colour", "unknown setting"),
        ("[imap]\nlisen = '127.0.0.1:143'", "imap.lisen", "unknown setting"),
        ("[limits]\nmax_lines = 3", "limits.max_lines", "unknown setting"),
        ("[smtp]\nlisten = '127.0.0.1:25'", "smtp", "unknown setting"),
        ("imap = 'off'", "imap", "expected a table"),
        ("[server]\nworkers = 0", "server.workers", "too small"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, toml), {})
    message = str(caught.value)
    assert message.startswith(f"{key}:")
    assert problem in message


def test_bad_override_is_checked_like_the_file_setting() -> None:
    with pytest.raises(ConfigError, match=r"^imaps\.listen: port 70000 is out of range"):
        load_config(None, {"imaps.listen": "127.0.0.1:70000"})


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match=r"^imap_port: unknown setting"):
        load_config(None, {"imap_port": 143})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[imap\nlisten = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", {})


def test_example_file_is_valid() -> None:
    example = Path(__file__).parent.parent / "mailhaven.example.toml"
    assert load_config(example, {}) == Config()
