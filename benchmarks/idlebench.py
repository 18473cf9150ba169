"""Repeated IDLE fan-out: N idling connections, then several APPENDs a while apart; for
each APPEND, how long until every idler has seen the new EXISTS, and what the fan-out
cost the server in CPU.

    python -m benchmarks.idlebench --idlers 10000 [--appends 5] [--gap 1.0] [--gc-probe]
        [--client-loop uvloop] [--workers 2]

``imapbench``'s ``idle`` scenario measures one APPEND; on a shared machine one sample
moves by tens of percent, so this repeats it and reports the median over the APPENDs of
each figure: p50 and p99 over the idlers, the server's CPU time (all threads of all its
processes, workers included, from ``/proc/PID/stat``, the APPEND included), this
benchmark client's own CPU time and, with ``--gc-probe``, the time the server's garbage
collector spent per fan-out (``benchmarks/gcprobe.py``).  Memory per idler is the
server's PSS with the idlers minus without, divided by N.  Every idler must see every
EXISTS (a missing one is an error, not a time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import corpus, servers
from benchmarks.client import ImapClient, literal_plus, quoted
from benchmarks.scenarios import percentile
from mailhaven import runtime

MAILBOX = "Bench Idle"
LOGINS_IN_FLIGHT = 50
WAIT_SECONDS = 120
_EXISTS = re.compile(rb"(?:^|\n)\* (\d+) EXISTS\r\n")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class _Countdown:
    """How many idlers have yet to see the EXISTS count awaited now: one future for
    all of them, not one each (10,000 futures and their callbacks would be client CPU
    spent while later idlers' bytes wait to be stamped)."""

    def __init__(self) -> None:
        self.count = 0
        self.remaining = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, count: int, idlers: list[_Idler]) -> asyncio.Future[None]:
        self.count = count
        self.remaining = sum(count not in idler.arrivals for idler in idlers)
        self.done = asyncio.get_running_loop().create_future()
        if not self.remaining:
            self.done.set_result(None)
        return self.done

    def arrived(self, count: int) -> None:
        if count == self.count and self.done is not None:
            self.remaining -= 1
            if not self.remaining and not self.done.done():
                self.done.set_result(None)

    def lost(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("an idler's connection was lost"))


class _Idler(asyncio.Protocol):
    """Takes over an idling connection's transport and stamps each new EXISTS count
    when its bytes arrive (before any other client work)."""

    def __init__(self, client: ImapClient, countdown: _Countdown) -> None:
        self.client = client  # keeps the StreamWriter (and so the socket) alive
        self.transport: asyncio.Transport = client.writer.transport  # type: ignore[assignment]
        self.arrivals: dict[int, float] = {}
        self._countdown = countdown
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        text = self._tail + data
        cut = text.rfind(b"\n") + 1
        self._tail = text[cut:]
        for match in _EXISTS.finditer(text, 0, cut):
            count = int(match.group(1))
            if count not in self.arrivals:
                self.arrivals[count] = now
                self._countdown.arrived(count)

    def connection_lost(self, exc: Exception | None) -> None:
        self._countdown.lost()

    def stop(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"DONE\r\nz LOGOUT\r\n")
            self.transport.close()


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / _CLOCK_TICKS


def _gc_totals(pid: int, probe: Path) -> dict | None:
    lines_before = probe.read_text().count("\n") if probe.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if probe.exists():
            lines = probe.read_text().splitlines()
            if len(lines) > lines_before:
                return json.loads(lines[-1])
        time.sleep(0.01)
    return None


async def _start_idler(
    target: servers.Target, account: servers.Account, countdown: _Countdown
) -> _Idler:
    client = await ImapClient.login_scram(
        target.host, target.imap_port, account.user, account.password
    )
    await client.command(b"SELECT " + quoted(MAILBOX))
    await client.send(b"IDLE")
    line = await client.read_response()
    if not line.startswith(b"+"):
        raise RuntimeError(f"IDLE refused: {line!r}")
    idler = _Idler(client, countdown)
    idler.transport.set_protocol(idler)
    return idler


async def measure(target: servers.Target, account: servers.Account, args: argparse.Namespace):
    setup = await ImapClient.login(target.host, target.imap_port, account.user, account.password)
    await setup.command(b"CREATE " + quoted(MAILBOX))
    pid = target.root_pid
    assert pid is not None
    memory_before = target.memory_kib()
    gate = asyncio.Semaphore(LOGINS_IN_FLIGHT)
    countdown = _Countdown()

    async def start() -> _Idler:
        async with gate:
            return await _start_idler(target, account, countdown)

    idlers = await asyncio.gather(*(start() for _ in range(args.idlers)))
    await asyncio.sleep(1.0)
    memory_idle = target.memory_kib()
    rounds = []
    try:
        for count in range(1, args.appends + 1):
            await asyncio.sleep(args.gap)
            everyone = countdown.expect(count, idlers)
            gc_before = _gc_totals(pid, args.probe_file) if args.gc_probe else None
            server_processes = servers._process_tree(pid)  # noqa: SLF001 (the workers too)
            cpu_before = _cpu_seconds(server_processes)
            client_cpu_before = time.process_time()
            start_time = time.perf_counter()
            message = literal_plus(corpus.generate(count, args.appends + 1, 7))
            await setup.command(b"APPEND " + quoted(MAILBOX) + b" " + message)
            await asyncio.wait_for(everyone, WAIT_SECONDS)
            await asyncio.sleep(0.2)  # let the server finish its share of the fan-out
            cpu = _cpu_seconds(server_processes) - cpu_before
            client_cpu = time.process_time() - client_cpu_before
            gc_after = _gc_totals(pid, args.probe_file) if args.gc_probe else None
            latencies = [(idler.arrivals[count] - start_time) * 1e3 for idler in idlers]
            figures = {
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "min_ms": min(latencies),
                "max_ms": max(latencies),
                "server_cpu_ms": cpu * 1e3,
                "client_cpu_ms": client_cpu * 1e3,
            }
            if gc_before and gc_after:
                figures["gc_ms"] = 1e3 * (sum(gc_after["seconds"]) - sum(gc_before["seconds"]))
                figures["gc_full"] = gc_after["collections"][2] - gc_before["collections"][2]
            rounds.append(figures)
            print(f"APPEND {count}: " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items()))
    finally:
        for idler in idlers:
            idler.stop()
    await setup.logout()
    summary = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    if memory_before is not None and memory_idle is not None:
        summary["memory_per_idler_kib"] = (memory_idle - memory_before) / args.idlers
    return {"idlers": args.idlers, "rounds": rounds, "median": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idlers", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between APPENDs")
    parser.add_argument(
        "--workers", type=int, default=1, help="[server] workers (CPU counts every process)"
    )
    parser.add_argument("--event-loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument(
        "--client-loop",
        default="asyncio",
        choices=["asyncio", "uvloop"],
        help="this benchmark client's own event loop",
    )
    parser.add_argument("--gc-probe", action="store_true", help="count the server's GC work")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    account = servers.Account("bench", "bench-password-1")
    with tempfile.TemporaryDirectory() as workdir:
        args.probe_file = Path(workdir) / "gc-probe.jsonl"
        os.environ["MAILHAVEN_GC_PROBE"] = str(args.probe_file)
        module = "benchmarks.gcprobe" if args.gc_probe else "mailhaven"
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(
                servers.mailhaven(
                    [account],
                    Path(workdir),
                    connections=args.idlers + 200,
                    workers=args.workers,
                    event_loop=args.event_loop,
                    module=module,
                )
            )
            result = runtime.run(measure(target, account, args), args.client_loop)
    print("median: " + ", ".join(f"{k} {v:.1f}" for k, v in result["median"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
