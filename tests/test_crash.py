"""Crash safety: ``mailhaven serve`` is killed with SIGKILL while clients APPEND,
STORE and EXPUNGE; after each restart every operation that was answered OK must be
there, nothing half-written may be visible, and ``mailhaven fsck`` must find the store
consistent."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import PASSWORD, RawClient

from mailhaven.passwords import hash_password
from mailhaven.security import scram
from mailhaven.storage import open_storage

ROUNDS = 5
WORKERS = 3
MIN_ACKS_PER_ROUND = 25  # before each kill, so every round tests real work
APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def payload(worker: int, number: int, rng: random.Random) -> bytes:
    """A message whose every byte is predictable, so a torn write shows."""
    token = f"w{worker}-m{number}"
    filler = (token.encode() + b" ") * rng.randint(50, 2000)
    return b"Subject: " + token.encode() + b"\r\n\r\n" + filler + b"\r\n"


@dataclass
class Ledger:
    """What one worker knows about its mailbox: acknowledged facts and the one
    operation that may have been cut off by the kill."""

    present: dict[int, bytes] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)
    expunged: set[int] = field(default_factory=set)
    uncertain: set[int] = field(default_factory=set)  # STORE/EXPUNGE in flight
    pending_append: bytes | None = None
    acknowledged: int = 0  # operations answered OK since the last check


def work(port: int, worker: int, ledger: Ledger, rng: random.Random, stop: threading.Event):
    """Run operations until the server dies; update *ledger* only on OK."""
    try:
        client = RawClient(socket.create_connection(("127.0.0.1", port), timeout=10))
        client.login("crash")
        client.command(b"s", b"SELECT worker-%d" % worker)
        number = len(ledger.present) + len(ledger.expunged) + rng.randint(0, 10**6)
        while not stop.is_set():
            choice = rng.random()
            live = sorted(uid for uid in ledger.present if uid not in ledger.uncertain)
            if choice < 0.6 or not live:
                number += 1
                message = payload(worker, number, rng)
                ledger.pending_append = message
                reply = client.command(
                    b"a", b"APPEND worker-%d {%d+}\r\n%s" % (worker, len(message), message)
                )[-1]
                assert reply.startswith(b"a OK"), reply
                uid = int(APPENDUID.search(reply).group(1))  # type: ignore[union-attr]
                ledger.present[uid] = message
                ledger.pending_append = None
            elif choice < 0.8:
                uid = rng.choice(live)
                ledger.uncertain.add(uid)
                reply = client.command(b"f", b"UID STORE %d +FLAGS (\\Flagged)" % uid)[-1]
                assert reply.startswith(b"f OK"), reply
                ledger.flagged.add(uid)
                ledger.uncertain.discard(uid)
            else:
                uid = rng.choice(live)
                ledger.uncertain.add(uid)
                client.command(b"d", b"UID STORE %d +FLAGS (\\Deleted)" % uid)
                reply = client.command(b"e", b"UID EXPUNGE %d" % uid)[-1]
                assert reply.startswith(b"e OK"), reply
                del ledger.present[uid]
                ledger.flagged.discard(uid)
                ledger.expunged.add(uid)
                ledger.uncertain.discard(uid)
            ledger.acknowledged += 1
    except (OSError, ConnectionError):
        return  # the server was killed


def fetch_all(client: RawClient, worker: int) -> dict[int, tuple[bytes, bytes]]:
    """UID -> (flags, full message) of every message in the worker's mailbox."""
    client.command(b"s", b"SELECT worker-%d" % worker)
    client.send(b"f UID FETCH 1:* (FLAGS BODY.PEEK[])\r\n")
    found = {}
    while True:
        line = client.read_line()
        if line.startswith(b"f "):
            assert line.startswith(b"f OK"), line
            return found
        match = re.match(rb"\* \d+ FETCH \((.*)\{(\d+)\}$", line)
        if not match:
            continue
        size = int(match.group(2))
        while len(client.buffer) < size:
            client.buffer += client.sock.recv(65536)
        body, client.buffer = client.buffer[:size], client.buffer[size:]
        rest = client.read_line()
        head = match.group(1) + rest
        uid = int(re.search(rb"UID (\d+)", head).group(1))  # type: ignore[union-attr]
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1)  # type: ignore[union-attr]
        found[uid] = (flags, body)


def verify(client: RawClient, worker: int, ledger: Ledger) -> int:
    """Check the mailbox against the ledger, then adopt what the server says about
    the operation cut off by the kill.  Returns how many acknowledged facts held."""
    found = fetch_all(client, worker)
    checked = 0
    for uid, message in ledger.present.items():
        if uid in ledger.uncertain and uid not in found:
            continue
        assert uid in found, f"acknowledged APPEND of UID {uid} lost"
        assert found[uid][1] == message, f"UID {uid} differs from what was appended"
        if uid in ledger.flagged:
            assert b"\\Flagged" in found[uid][0], f"acknowledged STORE on UID {uid} lost"
        checked += 1
    for uid in ledger.expunged:
        assert uid not in found, f"acknowledged EXPUNGE of UID {uid} undone"
        checked += 1
    for uid, (flags, body) in found.items():
        if uid not in ledger.present:
            # Only the APPEND in flight at the kill may show up, and only whole.
            assert body == ledger.pending_append, f"unexpected or torn message UID {uid}"
            ledger.present[uid] = body
            ledger.pending_append = None
        if b"\\Flagged" in flags:
            ledger.flagged.add(uid)
    for uid in ledger.uncertain:
        if uid not in found and uid in ledger.present:
            del ledger.present[uid]
            ledger.expunged.add(uid)
            ledger.flagged.discard(uid)
    ledger.uncertain.clear()
    ledger.pending_append = None
    ledger.acknowledged = 0
    return checked


def verify_all(port: int, ledgers: list[Ledger]) -> int:
    """:func:`verify` every worker's mailbox over one fresh connection."""
    checker = RawClient(socket.create_connection(("127.0.0.1", port), timeout=10))
    checker.login("crash")
    checked = sum(verify(checker, worker, ledger) for worker, ledger in enumerate(ledgers))
    checker.close()
    return checked


def start_server(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("a") as stream:
        stream.write("=== start ===\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailhaven", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 30
    while "listening imap" not in log.read_text(errors="replace").split("=== start ===")[-1]:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return process


def create_account(data_dir: Path) -> None:
    async def create() -> None:
        storage = open_storage(data_dir)
        await storage.open()
        try:
            user = await storage.create_user("crash", hash_password(PASSWORD))
            keys = scram.credentials_for(PASSWORD)
            assert keys is not None
            await storage.set_scram_credentials("crash", keys)
            for worker in range(WORKERS):
                await storage.create_mailbox(user.id, f"worker-{worker}")
        finally:
            await storage.close()

    asyncio.run(create())


def wait_for_work(ledgers: list[Ledger], total: int, limit: float = 60.0) -> None:
    """Until the clients have *total* acknowledged operations this round: logins (argon2) and
    SELECTs come first, and on a loaded machine they alone can outlast a fixed delay."""
    deadline = time.monotonic() + limit
    while sum(ledger.acknowledged for ledger in ledgers) < total and time.monotonic() < deadline:
        time.sleep(0.05)


def test_acknowledged_operations_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    create_account(data_dir)
    port = free_port()
    config = tmp_path / "mailhaven.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[imap]\nlisten = "127.0.0.1:{port}"\n[imaps]\nlisten = "off"\n'
        '[lmtp]\nlisten = "off"\n[auth]\nallow_plaintext_on_loopback = true\n'
    )
    log = tmp_path / "server.log"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "4")))
    ledgers = [Ledger() for _ in range(WORKERS)]
    checked = acknowledged = 0
    for round_number in range(ROUNDS):
        server = start_server(config, log)
        checked += verify_all(port, ledgers)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=work, args=(port, n, ledgers[n], random.Random(rng.random()), stop)
            )
            for n in range(WORKERS)
        ]
        for thread in threads:
            thread.start()
        if round_number == 0:
            server.send_signal(signal.SIGHUP)  # a certificate reload drops nobody
        wait_for_work(ledgers, MIN_ACKS_PER_ROUND)
        time.sleep(rng.uniform(0.1, 0.8))
        server.kill()  # SIGKILL, at a random moment of the clients' work
        server.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        acknowledged += sum(ledger.acknowledged for ledger in ledgers)
    server = start_server(config, log)
    checked += verify_all(port, ledgers)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0
    text = log.read_text()
    assert "tls certificate reloaded" in text and "Traceback" not in text
    fsck = subprocess.run(
        [sys.executable, "-m", "mailhaven", "--data-dir", str(data_dir), "fsck"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0 and "consistent" in fsck.stdout, fsck.stdout + fsck.stderr
    assert acknowledged > 20 * ROUNDS  # the clients really worked between the kills
    print(
        f"crash test: {ROUNDS} SIGKILL rounds, {acknowledged} acknowledged operations, "
        f"{checked} acknowledged facts checked after restarts"
    )
