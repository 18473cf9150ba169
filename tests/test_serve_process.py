"""`mailhaven serve` as a real process: ready lines, a client session, SIGTERM."""

from __future__ import annotations

import imaplib
import os
import signal
import socket
import subprocess
import sys
import time

from tests.support import insecure_context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_demo_account_tls_login_and_clean_sigterm(tmp_path):
    imap_port, imaps_port = free_port(), free_port()
    env = {**os.environ, "MAILHAVEN_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailhaven",
            "serve",
            "--demo",
            "--imap",
            f"127.0.0.1:{imap_port}",
            "--imaps",
            f"127.0.0.1:{imaps_port}",
            "--lmtp",
            f"127.0.0.1:{free_port()}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith('demo account: user "demo", password "')
        password = first.split('password "')[1].rstrip().rstrip('"')
        ready = []
        deadline = time.monotonic() + 30
        while len(ready) < 2 and time.monotonic() < deadline:
            line = process.stderr.readline()
            if "listening" in line:
                ready.append(line)
        assert any(f"127.0.0.1:{imap_port}" in line and "STARTTLS" in line for line in ready)
        assert any(f"127.0.0.1:{imaps_port}" in line and "implicit TLS" in line for line in ready)

        with imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=insecure_context()) as imap:
            imap.login("demo", password)
            assert imap.select("INBOX")[0] == "OK"
        with imaplib.IMAP4("127.0.0.1", imap_port) as imap:
            imap.starttls(ssl_context=insecure_context())
            imap.login("demo", password)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        rest = process.stderr.read()
    assert code == 0, rest
    assert "Traceback" not in rest
    assert "login" in rest and "disconnect" in rest
