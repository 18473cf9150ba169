"""Starting the servers under test on loopback, each in a temporary directory.

* Mailhaven: ``python -m mailhaven serve`` with a generated configuration (cleartext
  LOGIN allowed on loopback, so no TLS cost in either server's figures).
* Dovecot: Debian's ``dovecot`` binary (packages dovecot-imapd and dovecot-lmtpd)
  with a configuration of its own: passwd-file authentication with the very same
  argon2id hash, maildir under the temporary directory, no system service.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_SECONDS = 30.0
PROCESS_LIMIT = 12_000


@dataclass
class Account:
    user: str
    password: str


@dataclass
class Target:
    """An IMAP server to benchmark: where it listens and which processes are it."""

    name: str
    host: str
    imap_port: int
    lmtp_port: int | None
    accounts: list[Account]
    root_pid: int | None = None  # memory is measured over this process and its children
    notes: list[str] = field(default_factory=list)

    def memory_kib(self) -> int | None:
        """Proportional set size (PSS) of the server's processes, in KiB: shared pages
        are divided among their sharers, so many small processes are not overcounted."""
        if self.root_pid is None:
            return None
        return sum(_pss_kib(pid) for pid in _process_tree(self.root_pid))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port} within {START_SECONDS}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- Mailhaven


def _mailhaven_supports_lmtp() -> bool:
    # The LMTP listener is a configuration setting; an unknown one stops the server.
    from mailhaven import config

    return "lmtp.listen" in config._SCHEMA


def _add_users(command: list[str], accounts: list[Account]) -> None:
    for account in accounts:
        subprocess.run(
            [*command, "user", "add", account.user, "--password-stdin"],
            input=account.password.encode() + b"\n",
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def mailhaven(
    accounts: list[Account],
    workdir: Path,
    workers: int = 1,
    preload: Path | None = None,
    connections: int = 1000,
    event_loop: str = "auto",
    module: str = "mailhaven",
    database: Path | None = None,
) -> Iterator[Target]:
    """A started ``mailhaven serve`` with room for *connections* from the benchmark (all
    from one address, to one account: the idlers and the concurrent clients); with
    *preload*, the first account's INBOX is imported from that Maildir first
    (``mailhaven import``, the server stopped); with *database*, a copy of that
    database (kept from an earlier preloaded run: users and INBOX already there) is
    used instead.  *module* is what ``python -m`` runs (``benchmarks.gcprobe`` wraps
    the server to count its garbage collections)."""
    data = workdir / "mailhaven-data"
    data.mkdir()
    imap_port = free_port()
    lmtp_port = free_port() if _mailhaven_supports_lmtp() else None
    config = [
        f'data_dir = "{data}"',
        'log_level = "warning"',
        f'[imap]\nlisten = "127.0.0.1:{imap_port}"',
        '[imaps]\nlisten = "off"',
        "[auth]\nallow_plaintext_on_loopback = true",
        f"[limits]\nmax_connections = {connections}\nmax_connections_per_ip = {connections}"
        f"\nmax_connections_per_account = {connections}",
    ]
    if lmtp_port is not None:
        config.append(f'[lmtp]\nlisten = "127.0.0.1:{lmtp_port}"')
    config.append(f'[server]\nworkers = {workers}\nevent_loop = "{event_loop}"')
    config_file = workdir / "mailhaven.toml"
    config_file.write_text("\n".join(config) + "\n")
    command = [sys.executable, "-m", module, "--config", str(config_file)]
    notes: list[str] = []
    if database is not None:
        started = time.perf_counter()
        shutil.copyfile(database, data / database.name)
        notes.append(f"database copied from {database} in {time.perf_counter() - started:.0f} s")
    else:
        _add_users(command, accounts)
    if preload is not None and database is None:
        started = time.perf_counter()
        subprocess.run(
            [*command, "import", accounts[0].user, str(preload), "--format", "maildir"],
            check=True,
            capture_output=True,
        )
        notes.append(f"preloaded with `mailhaven import` in {time.perf_counter() - started:.0f} s")
    log = workdir / "mailhaven.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen([*command, "serve"], stdout=log_file, stderr=log_file)
    try:
        _wait_for_port(imap_port, process, log)
        target = Target(
            "mailhaven", "127.0.0.1", imap_port, lmtp_port, accounts, process.pid, notes
        )
        if lmtp_port is None:
            target.notes.append("this Mailhaven has no LMTP listener ([lmtp] listen)")
        yield target
    finally:
        _stop(process)


# --------------------------------------------------------------------------- Dovecot


def dovecot_binary() -> str:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise RuntimeError(
            "dovecot is not installed: apt-get install -y dovecot-imapd dovecot-lmtpd"
        )
    return binary


def _dovecot_mail_ids() -> tuple[int, int]:
    """Mail processes run as nobody under root (Dovecot refuses root for mail
    access), as the invoking user otherwise."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid
    return os.geteuid(), os.getegid()


def _dovecot_config(root: Path, imap_port: int, lmtp_port: int) -> str:
    if os.geteuid() == 0:
        # Dovecot drops privileges: login and internal processes run as its own users.
        login_user, internal_user = "dovenull", "dovecot"
    else:
        login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
    mail_uid, mail_gid = _dovecot_mail_ids()
    return f"""
instance_name = imapbench-{os.getpid()}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %n
hostname = localhost
postmaster_address = postmaster@localhost
mail_location = maildir:~/Maildir
first_valid_uid = {mail_uid}
default_login_user = {login_user}
default_internal_user = {internal_user}
default_process_limit = {PROCESS_LIMIT}
default_client_limit = {PROCESS_LIMIT}
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
protocol imap {{
  mail_max_userip_connections = {PROCESS_LIMIT}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service imap {{
  process_limit = {PROCESS_LIMIT}
}}
service auth {{
  client_limit = {3 * PROCESS_LIMIT}
}}
service anvil {{
  client_limit = {3 * PROCESS_LIMIT}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


@contextlib.contextmanager
def dovecot(
    accounts: list[Account], workdir: Path, preload: Path | None = None
) -> Iterator[Target]:
    """A started Dovecot; with *preload*, the first account's Maildir is a hard-linked
    copy of that Maildir and Dovecot indexes it (``doveadm index``) before use."""
    from mailhaven.passwords import hash_password

    binary = dovecot_binary()
    root = Path(tempfile.mkdtemp(prefix="dovecot-", dir=workdir))
    # The unprivileged Dovecot processes must reach their files.
    for directory in (workdir, root):
        directory.chmod(0o755)
    imap_port, lmtp_port = free_port(), free_port()
    config = root / "dovecot.conf"
    config.write_text(_dovecot_config(root, imap_port, lmtp_port))
    home = root / "home"
    mail_uid, mail_gid = _dovecot_mail_ids()
    (root / "passwd").write_text(
        "".join(
            f"{a.user}:{{ARGON2ID}}{hash_password(a.password)}:{mail_uid}:{mail_gid}::"
            f"{home}/{a.user}::\n"
            for a in accounts
        )
    )
    home.mkdir()
    for directory in (root / "run", root / "state"):
        directory.mkdir()
    os.chown(home, mail_uid, mail_gid)
    if preload is not None:
        _link_maildir(preload, home / accounts[0].user / "Maildir", mail_uid, mail_gid)
    log = root / "dovecot.log"
    process = subprocess.Popen(
        [binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(imap_port, process, log)
        notes: list[str] = []
        if preload is not None:
            started = time.perf_counter()
            subprocess.run(
                [_doveadm_binary(), "-c", str(config), "index", "-u", accounts[0].user, "INBOX"],
                check=True,
                capture_output=True,
            )
            notes.append(f"preloaded: `doveadm index` took {time.perf_counter() - started:.0f} s")
        yield Target("dovecot", "127.0.0.1", imap_port, lmtp_port, accounts, process.pid, notes)
    finally:
        _stop(process)


def _doveadm_binary() -> str:
    return shutil.which("doveadm") or "/usr/bin/doveadm"


def _link_maildir(source: Path, destination: Path, uid: int, gid: int) -> None:
    """Hard links to the message files (Dovecot only ever renames them: flags live in
    the name), real copies of the files Dovecot rewrites or appends to."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(destination)], check=True)
    for entry in destination.iterdir():
        if entry.is_file():
            copy = entry.read_bytes()
            entry.unlink()
            entry.write_bytes(copy)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(destination.parent)], check=True)
