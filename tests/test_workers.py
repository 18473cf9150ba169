"""`mailhaven serve --workers 2` as real processes: connections spread over both
workers, an IDLE in one sees an APPEND made through the other, the per-account limit
counts both workers, a killed worker is restarted, SIGTERM stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailhaven.cli import main
from mailhaven.config import load_config
from tests.support import insecure_context
from tests.test_serve_process import free_port

WAIT_SECONDS = 15.0
PER_ACCOUNT_LIMIT = 4
MESSAGE = b"From: a@example.org\r\nSubject: cross-process\r\n\r\nhello\r\n"


class ServeProcess:
    """The supervisor process, with its log lines collected by a thread."""

    def __init__(self, data_dir: Path, config: Path) -> None:
        self.imaps_port = free_port()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mailhaven", "--data-dir", str(data_dir)),
                *("--config", str(config), "serve", "--demo", "--workers", "2"),
                *("--imap", f"127.0.0.1:{free_port()}", "--imaps", f"127.0.0.1:{self.imaps_port}"),
                *("--lmtp", f"127.0.0.1:{free_port()}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.password = self.process.stdout.readline().rstrip().split('password "')[1][:-1]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, pattern: str, after: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                match = re.search(pattern, line)
                if match is not None:
                    return match
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r} in:\n{''.join(self.lines)}")

    def connect(self) -> tuple[IMAPClient, int]:
        """A new client connection and the pid of the worker serving it."""
        client = IMAPClient(
            "127.0.0.1", self.imaps_port, ssl_context=insecure_context(), timeout=WAIT_SECONDS
        )
        local_port = client.socket().getsockname()[1]
        match = self.wait_for_line(rf"connect client=127\.0\.0\.1:{local_port} .* pid=(\d+)")
        return client, int(match.group(1))

    def clients_on_each_worker(self, per_worker: int) -> dict[int, list[IMAPClient]]:
        """Connect until each of the two workers serves *per_worker* of them."""
        by_pid: dict[int, list[IMAPClient]] = {}
        spare: list[IMAPClient] = []
        for _attempt in range(60):
            client, pid = self.connect()
            serving = by_pid.setdefault(pid, [])
            (serving if len(serving) < per_worker else spare).append(client)
            if len(by_pid) == 2 and all(len(c) == per_worker for c in by_pid.values()):
                break
        for client in spare:
            client.shutdown()
        assert len(by_pid) == 2, "all connections went to one worker"
        return by_pid

    def worker_pids(self) -> dict[str, int]:
        """The current pid of each worker slot, from the supervisor's log."""
        pids: dict[str, int] = {}
        for line in list(self.lines):
            match = re.search(r"worker started worker=(\d+) pid=(\d+)", line)
            if match is not None:
                pids[match.group(1)] = int(match.group(2))
        return pids


def test_workers_setting_from_file_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "mailhaven.toml"
    path.write_text("[server]\nworkers = 3\n")
    assert load_config(None, {}).workers == 1
    assert load_config(path, {}).workers == 3
    assert load_config(path, {"server.workers": 2}).workers == 2
    assert main(["--data-dir", str(tmp_path), "serve", "--workers", "0"]) == 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("workers")
    config = root / "mailhaven.toml"
    config.write_text(f"[limits]\nmax_connections_per_account = {PER_ACCOUNT_LIMIT}\n")
    serving = ServeProcess(root / "data", config)
    try:
        serving.wait_for_line(r"listening imaps on")
        yield serving
    finally:
        if serving.process.poll() is None:
            serving.process.kill()
            serving.process.wait()


def logged_in(client: IMAPClient, password: str) -> IMAPClient:
    client.login("demo", password)
    return client


def until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_per_account_limit_counts_both_workers(server: ServeProcess) -> None:
    by_pid = server.clients_on_each_worker(PER_ACCOUNT_LIMIT // 2 + 1)
    first, second = by_pid.values()
    for client in first[:-1] + second[:-1]:
        logged_in(client, server.password)
    # Each worker holds only half the limit itself: the refusal needs the other's count.
    with pytest.raises(LoginError, match="LIMIT"):
        logged_in(first[-1], server.password)
    first[0].logout()
    assert until(lambda: _login_succeeds(second[-1], server.password))
    for client in first[1:] + second:
        client.shutdown()


def _login_succeeds(client: IMAPClient, password: str) -> bool:
    try:
        logged_in(client, password)
    except LoginError:
        return False
    return True


def test_idle_on_one_worker_sees_append_through_the_other(server: ServeProcess) -> None:
    by_pid = server.clients_on_each_worker(1)
    (idler,), (appender,) = by_pid.values()
    logged_in(idler, server.password).select_folder("INBOX")
    logged_in(appender, server.password)
    before = appender.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"]
    idler.idle()
    appender.append("INBOX", MESSAGE)
    responses = idler.idle_check(timeout=WAIT_SECONDS)
    idler.idle_done()
    assert (before + 1, b"EXISTS") in responses
    idler.logout()
    appender.logout()


def test_killed_worker_is_restarted_and_serves(server: ServeProcess) -> None:
    victim = server.worker_pids()["0"]
    mark = len(server.lines)
    os.kill(victim, signal.SIGKILL)
    server.wait_for_line(rf"worker died worker=0 pid={victim} ", after=mark)
    replacement = int(server.wait_for_line(r"worker started worker=0 pid=(\d+)", after=mark)[1])
    assert replacement != victim
    by_pid = server.clients_on_each_worker(1)
    assert replacement in by_pid
    for (client,) in by_pid.values():
        logged_in(client, server.password).select_folder("INBOX")
        client.logout()


def test_sighup_reloads_the_certificate_in_every_worker(server: ServeProcess) -> None:
    mark = len(server.lines)
    server.process.send_signal(signal.SIGHUP)
    assert until(lambda: "".join(server.lines[mark:]).count("tls certificate reloaded") == 2)


def test_sigterm_stops_all_workers_with_exit_code_0(server: ServeProcess) -> None:
    workers = server.worker_pids().values()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert "Traceback" not in "".join(server.lines)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """Nobody would restart or stop them, and they would no longer hear each other's
    changes: workers whose supervisor died (SIGKILL: no chance to stop them) stop."""
    config = tmp_path / "mailhaven.toml"
    config.write_text("")
    serving = ServeProcess(tmp_path / "data", config)
    try:
        serving.wait_for_line(r"listening imaps on")
        assert until(lambda: len(serving.worker_pids()) == 2)
        workers = serving.worker_pids().values()
        serving.process.kill()
        serving.process.wait()
        assert until(lambda: not any(map(_running, workers)))
    finally:
        if serving.process.poll() is None:
            serving.process.kill()
            serving.process.wait()


def _running(pid: int) -> bool:
    """Whether *pid* runs; an exited process nobody reaped yet (a zombie: its parent is
    gone and the machine's init may not reap) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
