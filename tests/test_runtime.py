"""The serving process's event loop (uvloop when installed) and file descriptor limit
(mailhaven/runtime.py), and `mailhaven serve` on uvloop with STARTTLS, COMPRESS and
IDLE over real sockets."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhaven import runtime
from mailhaven.config import ConfigError, load_config
from tests.support import PASSWORD, insecure_context
from tests.test_compress import DeflateClient, login


def test_asyncio_is_used_when_asked_or_when_uvloop_is_missing(monkeypatch) -> None:
    assert runtime.loop_factory("asyncio") is None
    monkeypatch.setattr(runtime, "uvloop_available", lambda: False)
    assert runtime.loop_factory("auto") is None

    async def kind() -> str:
        return runtime.loop_name()

    assert runtime.run(kind(), "auto") == "asyncio"


def test_uvloop_is_used_when_installed() -> None:
    pytest.importorskip("uvloop")

    async def kind() -> str:
        return runtime.loop_name()

    assert runtime.run(kind(), "auto") == "uvloop"
    assert runtime.run(kind(), "uvloop") == "uvloop"


def test_implicit_tls_keeps_auto_on_asyncio_and_refuses_uvloop() -> None:
    # uvloop reads a new connection right after connection_made, even when reading
    # was paused there: the implicit-TLS listener's ClientHello peek needs asyncio.
    assert runtime.loop_factory("auto", implicit_tls=True) is None
    with pytest.raises(ConfigError, match="implicit TLS"):
        runtime.loop_factory("uvloop", implicit_tls=True)


def test_a_serving_process_switches_threads_every_millisecond() -> None:
    async def switch_interval() -> float:
        return sys.getswitchinterval()

    before = sys.getswitchinterval()
    try:
        assert runtime.run(switch_interval(), "asyncio") == runtime.GIL_SWITCH_SECONDS == 0.001
    finally:
        sys.setswitchinterval(before)


def test_event_loop_setting_accepts_only_known_loops(tmp_path: Path) -> None:
    config = tmp_path / "mailhaven.toml"
    config.write_text('[server]\nevent_loop = "asyncio"\n')
    assert load_config(config, {}).event_loop == "asyncio"
    config.write_text('[server]\nevent_loop = "trio"\n')
    with pytest.raises(ConfigError, match="event_loop"):
        load_config(config, {})


@pytest.fixture
def restored_file_limit() -> Iterator[tuple[int, int]]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_file_limit_is_raised_to_the_hard_limit(restored_file_limit, caplog) -> None:
    _soft, hard = restored_file_limit
    if hard < 512:
        pytest.skip("hard file descriptor limit too low to lower the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    with caplog.at_level(logging.WARNING, logger="mailhaven.runtime"):
        assert runtime.raise_file_limit(100) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert not caplog.records


def test_a_file_limit_below_max_connections_is_logged(restored_file_limit, caplog) -> None:
    _soft, hard = restored_file_limit
    with caplog.at_level(logging.WARNING, logger="mailhaven.runtime"):
        runtime.raise_file_limit(hard + 1)
    assert "limits.max_connections" in caplog.text


# ---------------------------------------------------------------------- serve on uvloop


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def uvloop_server(tmp_path: Path) -> Iterator[int]:
    pytest.importorskip("uvloop")
    port = _free_port()
    config = tmp_path / "mailhaven.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nlog_level = "info"\n'
        f'[imap]\nlisten = "127.0.0.1:{port}"\n[imaps]\nlisten = "off"\n[lmtp]\nlisten = "off"\n'
        '[server]\nevent_loop = "uvloop"\n'
    )
    command = [sys.executable, "-m", "mailhaven", "--config", str(config)]
    subprocess.run(
        [*command, "user", "add", "alice", "--password-stdin"],
        input=PASSWORD.encode() + b"\n",
        check=True,
        capture_output=True,
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as stream:
        process = subprocess.Popen([*command, "serve"], stdout=subprocess.DEVNULL, stderr=stream)
    try:
        deadline = time.monotonic() + 30
        while "event loop" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        assert "event loop uvloop" in log.read_text()
        yield port
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
        assert "Traceback" not in log.read_text()


def _starttls_compress_client(port: int) -> DeflateClient:
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    client = DeflateClient(plain)
    assert client.command(b"T", b"STARTTLS")[-1].startswith(b"T OK")
    client.sock = insecure_context().wrap_socket(plain, server_hostname="localhost")
    login(client)
    client.compress()
    return client


def test_serve_on_uvloop_starttls_compress_and_idle(uvloop_server: int) -> None:
    idler = _starttls_compress_client(uvloop_server)
    assert idler.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    idler.send(b"I IDLE\r\n")
    assert idler.read_line().startswith(b"+ ")
    writer = _starttls_compress_client(uvloop_server)
    message = b"Subject: on uvloop\r\n\r\n" + b"x" * 70000 + b"\r\n"
    writer.send(b"A APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    assert writer.read_until_tagged(b"A")[-1].startswith(b"A OK [APPENDUID ")
    assert idler.read_line() == b"* 1 EXISTS"
    idler.send(b"DONE\r\n")
    assert idler.read_until_tagged(b"I")[-1].startswith(b"I OK")
    fetched = idler.command(b"F", b"FETCH 1 BODY.PEEK[]")
    assert fetched[-1].startswith(b"F OK")
    assert b"x" * 70000 in b"\r\n".join(fetched)
    for client in (idler, writer):
        assert client.command(b"O", b"LOGOUT")[-1].startswith(b"O OK")


def test_asyncio_runner_is_left_usable_after_a_run() -> None:
    async def nothing() -> None:
        await asyncio.sleep(0)

    runtime.run(nothing(), "asyncio")
    asyncio.run(nothing())  # no loop policy was changed for the rest of the process
