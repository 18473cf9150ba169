from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhaven.cli import main
from mailhaven.config import Config
from mailhaven.logs import new_session_id, session_logger, setup_logging
from mailhaven.passwords import verify_password


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """main() configures the root logger; put it back so other tests are unaffected."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def stored_hash(data_dir: Path, name: str) -> str | None:
    """The password hash the store holds for *name* (None: no such user)."""
    from mailhaven.storage import open_storage

    async def read() -> str | None:
        storage = open_storage(data_dir)
        await storage.open()
        try:
            user = await storage.get_user(name)
            return None if user is None else user.password_hash
        finally:
            await storage.close()

    return asyncio.run(read())


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def add_user(data_dir: Path, name: str, password: str, monkeypatch: pytest.MonkeyPatch) -> int:
    argv = ["--data-dir", str(data_dir), "user", "add", name, "--password-stdin"]
    return run(argv, monkeypatch, stdin=password + "\n")


class FakeServer:
    """Stands in for mailhaven.server so `serve` can be tested without listening."""

    def __init__(self) -> None:
        self.calls: list[Config] = []
        self.failure: OSError | None = None

    def run(self, config: Config) -> int:
        self.calls.append(config)
        if self.failure is not None:
            raise self.failure
        return 0


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    server = FakeServer()
    module = types.ModuleType("mailhaven.server")
    module.run = server.run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mailhaven.server", module)
    return server


# ---------------------------------------------------------------------- user commands


def test_user_add_then_list(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add_user(data_dir, "bob", "hunter2", monkeypatch) == 0
    assert add_user(data_dir, "alice", "pw with spaces ", monkeypatch) == 0
    capsys.readouterr()
    assert run(["--data-dir", str(data_dir), "user", "list"], monkeypatch) == 0
    assert capsys.readouterr().out == "alice\nbob\n"
    bob_hash = stored_hash(data_dir, "bob")
    alice_hash = stored_hash(data_dir, "alice")
    assert bob_hash is not None and verify_password(bob_hash, "hunter2")
    # only the newline is stripped; the trailing space is part of the password
    assert alice_hash is not None and verify_password(alice_hash, "pw with spaces ")


def test_user_add_strips_crlf(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--data-dir", str(data_dir), "user", "add", "carol", "--password-stdin"]
    assert run(argv, monkeypatch, stdin="secret\r\n") == 0
    carol_hash = stored_hash(data_dir, "carol")
    assert carol_hash is not None and verify_password(carol_hash, "secret")


def test_user_add_existing_fails(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add_user(data_dir, "bob", "one", monkeypatch) == 0
    assert add_user(data_dir, "bob", "two", monkeypatch) == 1
    assert "user 'bob' already exists" in capsys.readouterr().err
    bob_hash = stored_hash(data_dir, "bob")
    assert bob_hash is not None and verify_password(bob_hash, "one")


def test_user_add_refuses_empty_password(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add_user(data_dir, "bob", "", monkeypatch) == 1
    assert "empty passwords are not allowed" in capsys.readouterr().err


def test_user_add_without_tty_needs_password_stdin(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--data-dir", str(data_dir), "user", "add", "bob"], monkeypatch, "pw\n") == 1
    assert "--password-stdin" in capsys.readouterr().err


def test_user_add_prompts_on_a_tty(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["typed secret", "typed secret"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert main(["--data-dir", str(data_dir), "user", "add", "dave"]) == 0
    dave_hash = stored_hash(data_dir, "dave")
    assert dave_hash is not None and verify_password(dave_hash, "typed secret")


def test_user_add_rejects_mismatched_prompts(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["first", "second"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert main(["--data-dir", str(data_dir), "user", "add", "dave"]) == 1
    assert "do not match" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "two words", "tab\tname", "new\nline"])
def test_user_add_rejects_bad_names(
    name: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert add_user(data_dir, name, "pw", monkeypatch) == 1
    assert "invalid user name" in capsys.readouterr().err


def test_user_passwd_changes_the_password(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert add_user(data_dir, "bob", "old", monkeypatch) == 0
    argv = ["--data-dir", str(data_dir), "user", "passwd", "bob", "--password-stdin"]
    assert run(argv, monkeypatch, stdin="new\n") == 0
    bob_hash = stored_hash(data_dir, "bob")
    assert bob_hash is not None
    assert verify_password(bob_hash, "new")
    assert not verify_password(bob_hash, "old")


def test_user_passwd_unknown_user(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(data_dir), "user", "passwd", "nobody", "--password-stdin"]
    assert run(argv, monkeypatch, stdin="pw\n") == 1
    assert "no such user: 'nobody'" in capsys.readouterr().err


def test_user_delete(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add_user(data_dir, "bob", "pw", monkeypatch) == 0
    assert add_user(data_dir, "eve", "pw", monkeypatch) == 0
    assert run(["--data-dir", str(data_dir), "user", "delete", "bob"], monkeypatch) == 0
    assert stored_hash(data_dir, "bob") is None
    capsys.readouterr()
    assert run(["--data-dir", str(data_dir), "user", "list"], monkeypatch) == 0
    assert capsys.readouterr().out == "eve\n"


def test_user_delete_unknown_user(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--data-dir", str(data_dir), "user", "delete", "nobody"], monkeypatch) == 1
    assert "no such user: 'nobody'" in capsys.readouterr().err


def test_data_dir_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env, from_flag = tmp_path / "env", tmp_path / "flag"
    monkeypatch.setenv("MAILHAVEN_DATA_DIR", str(from_env))
    assert run(["user", "add", "viaenv", "--password-stdin"], monkeypatch, "pw\n") == 0
    assert stored_hash(from_env, "viaenv") is not None
    # the flag wins over the environment
    assert add_user(from_flag, "viaflag", "pw", monkeypatch) == 0
    assert stored_hash(from_flag, "viaflag") is not None
    capsys.readouterr()
    assert run(["user", "list"], monkeypatch) == 0
    assert capsys.readouterr().out == "viaenv\n"


def test_data_dir_from_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILHAVEN_DATA_DIR", raising=False)
    data_dir = tmp_path / "configured"
    config = tmp_path / "mailhaven.toml"
    config.write_text(f'data_dir = "{data_dir}"\n')
    argv = ["--config", str(config), "user", "add", "bob", "--password-stdin"]
    assert run(argv, monkeypatch, stdin="pw\n") == 0
    assert stored_hash(data_dir, "bob") is not None


# ---------------------------------------------------------------------- configuration errors


def test_bad_config_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mailhaven.toml"
    config.write_text('[imaps]\nlisten = "127.0.0.1:99999"\n')
    assert run(["--config", str(config), "user", "list"], monkeypatch) == 2
    error = capsys.readouterr().err
    assert error.startswith("mailhaven: configuration error: imaps.listen: ")
    assert "out of range" in error


def test_bad_listen_flag_exits_2(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_server: FakeServer,
) -> None:
    assert run(["--data-dir", str(data_dir), "serve", "--imap", "nowhere"], monkeypatch) == 2
    assert "imap.listen: 'nowhere' is not HOST:PORT" in capsys.readouterr().err
    assert fake_server.calls == []


def test_serve_with_every_listener_off_exits_2(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_server: FakeServer,
) -> None:
    argv = ["--data-dir", str(data_dir), "serve", "--imap", "off", "--imaps", "off"]
    assert run(argv, monkeypatch) == 2
    assert "nothing to listen on" in capsys.readouterr().err
    assert fake_server.calls == []


@pytest.mark.parametrize(
    "argv", [[], ["user"], ["frobnicate"], ["--log-level", "loud", "user", "list"]]
)
def test_usage_errors_exit_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(argv, monkeypatch) == 2


def test_help_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"], monkeypatch) == 0
    assert "serve" in capsys.readouterr().out


# ---------------------------------------------------------------------- serve


def test_serve_passes_the_configuration(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, fake_server: FakeServer
) -> None:
    argv = [
        "--data-dir",
        str(data_dir),
        "--log-level",
        "debug",
        "serve",
        "--imap",
        "off",
        "--imaps",
        "[::1]:2993",
    ]
    assert run(argv, monkeypatch) == 0
    [config] = fake_server.calls
    assert config.data_dir == data_dir
    assert config.log_level == "debug"
    assert config.imap_listen is None
    assert config.imaps_listen == ("::1", 2993)


def test_serve_demo_creates_the_account_once(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_server: FakeServer,
) -> None:
    assert run(["--data-dir", str(data_dir), "serve", "--demo"], monkeypatch) == 0
    output = capsys.readouterr().out
    prefix = 'demo account: user "demo", password "'
    assert output.startswith(prefix)
    password = output.removeprefix(prefix).split('"')[0]
    assert len(password) == 16  # secrets.token_urlsafe(12)
    demo_hash = stored_hash(data_dir, "demo")
    assert demo_hash is not None and verify_password(demo_hash, password)
    assert len(fake_server.calls) == 1

    assert run(["--data-dir", str(data_dir), "serve", "--demo"], monkeypatch) == 0
    output = capsys.readouterr().out
    assert 'user "demo" exists already' in output
    assert "user passwd demo" in output
    assert len(fake_server.calls) == 2
    assert stored_hash(data_dir, "demo") == demo_hash


# ---------------------------------------------------------------------- logging (set up by main)

LINE_START = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_log_line_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info")
    session_logger("1a2b3c4d").info("login", user="demo", mechanism="PLAIN", note="two words")
    assert re.fullmatch(
        LINE_START + r" INFO mailhaven.session \[1a2b3c4d\] login user=demo mechanism=PLAIN"
        r' note="two words"\n',
        capsys.readouterr().err,
    )


def test_log_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning")
    log = session_logger("s1")
    log.info("not shown")
    log.warning("shown")
    assert capsys.readouterr().err.endswith(" WARNING mailhaven.session [s1] shown\n")


def test_client_data_cannot_forge_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info")
    session_logger("s1").info("login failed", user="x\r\n2026-01-01T00:00:00Z INFO forged")
    logging.getLogger("mailhaven.test").info("mailbox %s", "a\nb\u2028c\x00")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith('user="x\\r\\n2026-01-01T00:00:00Z INFO forged"')
    assert lines[1].endswith("mailbox a\\nb\\u2028c\\x00")


def test_setup_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info")
    setup_logging("debug")
    logging.getLogger("mailhaven.test").debug("once")
    assert capsys.readouterr().err.count("once") == 1


def test_session_ids_are_short_random_hex() -> None:
    ids = {new_session_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{8}", session_id) for session_id in ids)


def test_log_level_flag_reaches_the_root_logger(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, fake_server: FakeServer
) -> None:
    assert run(["--data-dir", str(data_dir), "--log-level", "error", "serve"], monkeypatch) == 0
    assert logging.getLogger().level == logging.ERROR


def test_serve_reports_a_listener_that_cannot_start(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_server: FakeServer,
) -> None:
    fake_server.failure = OSError(98, "Address already in use")
    assert run(["--data-dir", str(data_dir), "serve"], monkeypatch) == 1
    assert "mailhaven: cannot serve: [Errno 98] Address already in use" in capsys.readouterr().err
