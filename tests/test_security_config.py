"""The [lockout] table and the security settings of [auth] and [limits]."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhaven.config import ConfigError, LockoutConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailhaven.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_lockout_and_limits_from_file(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [lockout]
            ip_max_failures = 5
            delay_base_ms = 0
            trusted_networks = ["10.1.2.3/8", "::1"]
            [limits]
            max_connections_per_ip = 7
            [auth]
            oauth_validator = "company.sso:check_token"
            """,
        ),
        {},
    )
    assert config.lockout == LockoutConfig(
        ip_max_failures=5, delay_base_ms=0, trusted_networks=("10.0.0.0/8", "::1/128")
    )
    assert config.limits.max_connections_per_ip == 7
    assert config.auth.oauth_validator == "company.sso:check_token"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[lockout]\ntrusted_networks = "10.0.0.0/8"', "expected a list of networks"),
        ('[lockout]\ntrusted_networks = ["10.0.0.300/8"]', "is not an IP network"),
        ("[lockout]\nip_max_failures = 0", "too small"),
        ("[lockout]\nbanana = 1", "lockout.banana: unknown setting"),
        ('[auth]\noauth_validator = "no colon"', "is not module:function"),
        ("[limits]\nmax_connections = 0", "too small"),
    ],
)
def test_bad_security_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), {})


def test_missing_oauth_validator_is_a_configuration_error(data_dir: Path) -> None:
    from mailhaven.security.oauth import load_validator

    with pytest.raises(ConfigError, match="auth.oauth_validator: cannot load"):
        load_validator("mailhaven.nothing_here:validate")
    assert load_validator("") is None
