"""imapbench: the workloads users feel, against Mailhaven and, side by side, Dovecot.

    python -m benchmarks.imapbench --messages 10000 --reference dovecot

starts Mailhaven (``mailhaven serve`` on free loopback ports, temporary data
directory) and Dovecot (Debian's dovecot-imapd and dovecot-lmtpd, temporary
directory, own configuration) with the same users, loads the same generated
corpus into each and runs the same scenarios, verifying every answer.  It prints
a table with the ratio and writes the figures as JSON (``--json``).

``--preload`` gives both servers the corpus from a Maildir written once (see
``benchmarks/preload.py``) instead of loading it through APPEND, which makes runs at
100,000 messages practical.  ``--preload-from DIR`` reuses the directory an earlier
``--preload --keep`` run kept: its Maildir for Dovecot and a copy of its Mailhaven
database (migrated on open if the schema has moved on) instead of a fresh import.

``--server HOST:PORT --user U --password P [--user2 U2 --password2 P2]
[--lmtp HOST:PORT]`` benchmarks a server that is already running instead (it must
hold no mail for those users).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from benchmarks import preload, servers
from benchmarks.preload import PreloadedCorpus
from benchmarks.scenarios import (
    SCENARIOS,
    Run,
    Settings,
    Skipped,
    WrongAnswer,
    check_preloaded,
)
from benchmarks.servers import Account, Target

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="imapbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="corpus size (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument(
        "--server",
        default="mailhaven",
        help='"mailhaven" (start one, the default) or HOST:PORT of a running server',
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of a started Mailhaven"
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="[server] event_loop of a started Mailhaven (auto: uvloop when installed)",
    )
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="bench-password-1")
    parser.add_argument("--user2", default="bench2", help="LMTP recipient")
    parser.add_argument("--password2", default="bench-password-2")
    parser.add_argument("--lmtp", metavar="HOST:PORT", help="LMTP of a running --server")
    parser.add_argument(
        "--reference", choices=("dovecot", "none"), default="none", help="run Dovecot too"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset, in this order: {','.join(SCENARIOS)}"
        " (append always runs: it loads the corpus)",
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="load INBOX from a Maildir written once (Dovecot: its mail_location; Mailhaven:"
        " mailhaven import) instead of APPENDing the corpus; append then measures"
        " --append-messages messages into a mailbox of their own",
    )
    parser.add_argument(
        "--preload-from",
        type=Path,
        metavar="DIR",
        help="--preload from the directory an earlier --preload --keep run kept (its"
        " corpus/Maildir, and a copy of its Mailhaven database instead of an import)",
    )
    parser.add_argument("--append-messages", type=int, default=2000)
    parser.add_argument("--lmtp-messages", type=int, default=1000)
    parser.add_argument("--login-clients", type=int, default=10)
    parser.add_argument("--logins-per-client", type=int, default=10)
    parser.add_argument("--idlers", type=int, default=1000)
    parser.add_argument("--mixed-clients", type=int, default=20)
    parser.add_argument("--mixed-seconds", type=float, default=15.0)
    parser.add_argument("--download-messages", type=int, default=10_000)
    parser.add_argument("--copy-messages", type=int, default=1000)
    parser.add_argument("--single-stores", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("imapbench-results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    arguments = parser.parse_args(argv)
    arguments.preload = arguments.preload or arguments.preload_from is not None
    return arguments


def settings_from(arguments: argparse.Namespace) -> Settings:
    return Settings(
        messages=arguments.messages,
        seed=arguments.seed,
        lmtp_messages=arguments.lmtp_messages,
        login_clients=arguments.login_clients,
        logins_per_client=arguments.logins_per_client,
        idlers=arguments.idlers,
        mixed_clients=arguments.mixed_clients,
        mixed_seconds=arguments.mixed_seconds,
        download_messages=arguments.download_messages,
        copy_messages=min(arguments.copy_messages, arguments.messages),
        single_stores=min(arguments.single_stores, arguments.messages),
        preloaded=arguments.preload,
        append_messages=arguments.append_messages,
    )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


@contextlib.contextmanager
def _running_server(arguments: argparse.Namespace, accounts: list[Account]) -> Iterator[Target]:
    host, port = _host_port(arguments.server)
    lmtp_port = _host_port(arguments.lmtp)[1] if arguments.lmtp else None
    target = Target(arguments.server, host, port, lmtp_port, accounts)
    if lmtp_port is None:
        target.notes.append("no --lmtp given")
    yield target


def _kept_database(kept: Path | None) -> Path | None:
    """Where ``--preload --keep`` left Mailhaven's database (see servers.mailhaven)."""
    return kept / "mailhaven" / "mailhaven-data" / "mailhaven.db" if kept else None


def _preloaded_corpus(
    arguments: argparse.Namespace, settings: Settings, workdir: Path
) -> PreloadedCorpus:
    if arguments.preload_from is not None:
        maildir = arguments.preload_from / "corpus" / "Maildir"
        print(f"checking the kept Maildir {maildir}", file=sys.stderr, flush=True)
        return preload.reuse_maildir(maildir, settings.messages, settings.seed)
    print(f"writing the {settings.messages}-message Maildir", file=sys.stderr, flush=True)
    return preload.write_maildir(workdir / "corpus" / "Maildir", settings.messages, settings.seed)


# Connections besides the idlers: the setup client, the concurrent login and mixed-load
# clients (the idlers are gone by then) and a margin for sockets still closing.
CONNECTION_HEADROOM = 200


def targets(
    arguments: argparse.Namespace,
    accounts: list[Account],
    workdir: Path,
    preloaded: PreloadedCorpus | None = None,
) -> list[tuple[str, AbstractContextManager[Target]]]:
    chosen: list[tuple[str, AbstractContextManager[Target]]] = []
    maildir = preloaded.path if preloaded else None
    if arguments.server == "mailhaven":
        chosen.append(
            (
                "mailhaven",
                servers.mailhaven(
                    accounts,
                    workdir / "mailhaven",
                    arguments.workers,
                    maildir,
                    connections=arguments.idlers + CONNECTION_HEADROOM,
                    event_loop=arguments.event_loop,
                    database=_kept_database(arguments.preload_from),
                ),
            )
        )
    else:
        chosen.append((arguments.server, _running_server(arguments, accounts)))
    if arguments.reference == "dovecot":
        chosen.append(("dovecot", servers.dovecot(accounts, workdir / "dovecot", maildir)))
    return chosen


async def run_scenarios(
    target: Target,
    settings: Settings,
    names: list[str],
    results: dict[str, dict],
    preloaded: PreloadedCorpus | None = None,
) -> None:
    """Fills *results* scenario by scenario, so an interrupted run keeps what it has."""
    run = Run(target, settings)
    if preloaded is not None:
        try:
            await check_preloaded(run, preloaded.sizes, preloaded.checksums)
        except WrongAnswer as wrong:
            results["preload"] = {"failed": f"wrong answer: {wrong}"}
            return
    for name in names:
        print(f"  {target.name}: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            figures = await SCENARIOS[name](run)
        except Skipped as skipped:
            results[name] = {"skipped": str(skipped)}
        except WrongAnswer as wrong:
            results[name] = {"failed": f"wrong answer: {wrong}"}
        except Exception as error:  # a crash of one scenario must not lose the others
            traceback.print_exc()
            results[name] = {"failed": f"{type(error).__name__}: {error}"}
        else:
            results[name] = {"figures": [vars(figure) for figure in figures]}
            for figure in figures:
                print(f"    {figure.name}: {_format(figure.value)} {figure.unit}", file=sys.stderr)
        print(
            f"  {target.name}: {name} done in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        if name == "append" and "figures" not in results[name]:
            break  # nothing to read without the corpus


def _prepare_machine(arguments: argparse.Namespace) -> list[str]:
    """Room for many idle connections: file descriptors for this process and the
    servers it starts, and inotify instances (each idling Dovecot process watches
    its maildir; past the limit it falls back to polling every 30 s)."""
    notes = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 3 * arguments.idlers:
        notes.append(f"file descriptor limit {hard} is low for {arguments.idlers} idlers")
    if arguments.reference == "dovecot" and os.geteuid() == 0:
        with contextlib.suppress(OSError, ValueError):
            if int(INOTIFY_INSTANCES.read_text()) < arguments.idlers + 100:
                INOTIFY_INSTANCES.write_text(str(arguments.idlers + 100))
                notes.append(f"raised fs.inotify.max_user_instances to {arguments.idlers + 100}")
    return notes


def machine_description() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    dovecot = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError, RuntimeError):
        dovecot = subprocess.run(
            [servers.dovecot_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dovecot": dovecot,
    }


# --------------------------------------------------------------------------- output


def _figures(results: dict) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for outcome in results.values():
        for figure in outcome.get("figures", []):
            table[figure["name"]] = figure
    return table


def _ratio(mine: dict, reference: dict) -> str:
    """How many times better Mailhaven is (>1 = faster or smaller)."""
    if not mine["value"] or not reference["value"]:
        return "-"
    if mine["higher_is_better"]:
        ratio = mine["value"] / reference["value"]
    else:
        ratio = reference["value"] / mine["value"]
    return f"{ratio:.2f}x " + ("better" if ratio >= 1 else "worse")


def render_table(all_results: dict[str, dict]) -> str:
    names = list(all_results)
    columns = [_figures(all_results[name]) for name in names]
    rows: list[str] = []
    for column in columns:
        rows.extend(name for name in column if name not in rows)
    header = ["figure", "unit", *names]
    if len(names) == 2:
        header.append(f"{names[0]} vs {names[1]}")
    lines = [header]
    for row in rows:
        unit = next(column[row]["unit"] for column in columns if row in column)
        cells = [row, unit]
        for column in columns:
            cells.append(_format(column[row]["value"]) if row in column else "n/a")
        if len(names) == 2:
            both = row in columns[0] and row in columns[1]
            cells.append(_ratio(columns[0][row], columns[1][row]) if both else "-")
        lines.append(cells)
    for scenario in {s for results in all_results.values() for s in results}:
        for name in names:
            outcome = all_results[name].get(scenario, {})
            problem = outcome.get("failed") or outcome.get("skipped")
            if problem:
                kind = "FAILED" if "failed" in outcome else "skipped"
                lines.append(
                    [f"{scenario}: {kind} on {name}", "", problem[:80]] + [""] * (len(header) - 3)
                )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for number, line in enumerate(lines):
        rendered.append(
            " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        )
        if number == 0:
            rendered.append("-+-".join("-" * width for width in widths))
    return "\n".join(rendered)


def _format(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    names = [name for name in arguments.scenarios.split(",") if name]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        print(f"imapbench: unknown scenario {unknown[0]}", file=sys.stderr)
        return 2
    if arguments.preload and arguments.server != "mailhaven":
        print("imapbench: --preload needs a server it starts itself", file=sys.stderr)
        return 2
    # Without --preload, append loads the corpus every other scenario reads.
    names = [
        name for name in SCENARIOS if name in names or (name == "append" and not arguments.preload)
    ]
    settings = settings_from(arguments)
    notes = _prepare_machine(arguments)
    accounts = [
        Account(arguments.user, arguments.password),
        Account(arguments.user2, arguments.password2),
    ]
    workdir = Path(tempfile.mkdtemp(prefix="imapbench-"))
    workdir.chmod(0o755)  # Dovecot's unprivileged processes read their files below it
    all_results: dict[str, dict] = {}
    target_notes: dict[str, list[str]] = {}
    # SIGTERM (and Ctrl-C) stop the run cleanly: the servers are stopped and the
    # figures measured so far are still printed and written.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        preloaded = None
        if arguments.preload:
            started = time.perf_counter()
            preloaded = _preloaded_corpus(arguments, settings, workdir)
            notes.append(f"--preload: Maildir ready in {time.perf_counter() - started:.0f} s")
        for label, context in targets(arguments, accounts, workdir, preloaded):
            (workdir / label).mkdir(exist_ok=True)
            print(f"{label}: starting", file=sys.stderr, flush=True)
            with context as target:
                target_notes[label] = target.notes
                all_results[label] = {}
                asyncio.run(run_scenarios(target, settings, names, all_results[label], preloaded))
    except KeyboardInterrupt:
        notes.append("interrupted: the figures are those measured before the interruption")
    finally:
        if arguments.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    table = render_table(all_results)
    print(table)
    for label, target_note in target_notes.items():
        for note in target_note:
            print(f"note ({label}): {note}")
    for note in notes:
        print(f"note: {note}")
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_description(),
        "settings": vars(settings),
        "notes": {"machine": notes, **target_notes},
        "results": all_results,
    }
    arguments.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {arguments.json}")
    failed = any(
        "failed" in outcome for results in all_results.values() for outcome in results.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
