"""The ``mailhaven`` command: run the server and manage accounts.

Exit codes: 0 success, 1 the operation failed (unknown user, user exists, ...),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mailhaven import __version__
from mailhaven.cli_quota import add_quota_commands
from mailhaven.config import LOG_LEVELS, Config, ConfigError, load_config
from mailhaven.logs import setup_logging
from mailhaven.passwords import hash_password

if TYPE_CHECKING:
    from mailhaven.storage.interface import Storage

DATA_DIR_ENV = "MAILHAVEN_DATA_DIR"
DEMO_USER = "demo"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

T = TypeVar("T")


class CommandError(Exception):
    """A failure to report as ``mailhaven: <message>`` with exit code 1."""


# ---------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailhaven", description="Mailhaven IMAP4rev1/IMAP4rev2 mail server."
    )
    parser.add_argument("--version", action="version", version=f"mailhaven {__version__}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where mail, accounts and the TLS certificate live "
        f"(default: ${DATA_DIR_ENV}, then the config file, then ./mailhaven-data)",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=" | ".join(LOG_LEVELS),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the IMAP server")
    serve.add_argument("--imap", metavar="HOST:PORT", help='cleartext+STARTTLS listener, or "off"')
    serve.add_argument("--imaps", metavar="HOST:PORT", help='implicit TLS listener, or "off"')
    serve.add_argument(
        "--lmtp", metavar="HOST:PORT", help='LMTP delivery listener, "unix:PATH", or "off"'
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="server processes sharing the listeners"
    )
    serve.add_argument(
        "--demo", action="store_true", help='create the account "demo" if it does not exist'
    )
    serve.set_defaults(handler=_serve)

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    for action, handler, help_text in (
        ("add", _user_add, "create an account"),
        ("passwd", _user_passwd, "set an account's password"),
    ):
        sub = user_commands.add_parser(action, help=help_text)
        sub.add_argument("name")
        sub.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        sub.set_defaults(handler=handler)
    delete = user_commands.add_parser("delete", help="delete an account and all its mail")
    delete.add_argument("name")
    delete.set_defaults(handler=_user_delete)
    listing = user_commands.add_parser("list", help="print account names, one per line")
    listing.set_defaults(handler=_user_list)
    _add_check_parser(commands)
    add_quota_commands(commands)
    from mailhaven.mailflow.commands import add_commands  # imports this module back

    add_commands(commands, user_commands)
    from mailhaven.cli_security import add_security_commands

    add_security_commands(commands, user_commands)
    return parser


def _add_check_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = commands.add_parser(
        "check", help="diagnose why an IMAP server cannot be used (works with any server)"
    )
    check.add_argument("host", help="the IMAP server's host name or address")
    check.add_argument("--port", type=int, metavar="N", help="only this port (default 993, 143)")
    modes = check.add_mutually_exclusive_group()
    for flag, mode in (("--tls", "tls"), ("--starttls", "starttls"), ("--auto", "auto")):
        modes.add_argument(flag, dest="mode", action="store_const", const=mode)
    check.add_argument("--user", metavar="U", help="also log in as U and open INBOX")
    check.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    check.add_argument("--cafile", type=Path, metavar="FILE", help="trust this CA certificate")
    check.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per network step"
    )
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.set_defaults(handler=_check, mode="auto")


def _overrides(arguments: argparse.Namespace) -> dict[str, object]:
    """Configuration settings given on the command line (flag > environment > file)."""
    overrides: dict[str, object] = {}
    data_dir = arguments.data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if arguments.log_level is not None:
        overrides["log_level"] = arguments.log_level
    for flag, key in (("imap", "imap.listen"), ("imaps", "imaps.listen"), ("lmtp", "lmtp.listen")):
        value = getattr(arguments, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(arguments, "workers", None) is not None:
        overrides["server.workers"] = arguments.workers
    return overrides


# ---------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    try:
        arguments = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, --version or a usage error
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    try:
        config = load_config(arguments.config, _overrides(arguments))
    except ConfigError as error:
        _error(f"configuration error: {error}")
        return EXIT_USAGE
    setup_logging(config.log_level)
    handler: Callable[[argparse.Namespace, Config], int] = arguments.handler
    try:
        return handler(arguments, config)
    except ConfigError as error:
        _error(f"configuration error: {error}")
        return EXIT_USAGE
    except CommandError as error:
        _error(str(error))
        return EXIT_FAILED


def _error(message: str) -> None:
    print(f"mailhaven: {message}", file=sys.stderr)


# ---------------------------------------------------------------------- storage access


def _with_storage(config: Config, work: Callable[[Storage], Awaitable[T]]) -> T:
    """Open the store in the data directory, run *work* on it and close it again."""
    # Imported here so commands that do not touch the store work without loading it.
    from mailhaven.storage import open_storage

    async def run() -> T:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        storage = open_storage(config.data_dir)
        await storage.open()
        try:
            return await work(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


async def _require_user(storage: Storage, name: str) -> None:
    if await storage.get_user(name) is None:
        raise CommandError(f"no such user: {name!r}")


# ---------------------------------------------------------------------- user commands


def _check_user_name(name: str) -> str:
    # Names travel in IMAP LOGIN as astrings and appear in logs; whitespace and
    # control characters would only cause confusion.
    if not name or any(character.isspace() or not character.isprintable() for character in name):
        raise CommandError(f"invalid user name {name!r}: use printable characters, no spaces")
    return name


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("the passwords do not match")
    else:
        raise CommandError("stdin is not a terminal: pass --password-stdin to read the password")
    if not password:
        raise CommandError("empty passwords are not allowed")
    return password


def _user_add(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage.interface import UserExists

    name = _check_user_name(arguments.name)
    password = _read_password(arguments.password_stdin)
    password_hash = hash_password(password)

    async def add(storage: Storage) -> None:
        try:
            await storage.create_user(name, password_hash)
        except UserExists:
            raise CommandError(f"user {name!r} already exists") from None
        await _store_scram_keys(storage, name, password)

    _with_storage(config, add)
    print(f"created user {name!r}")
    return EXIT_OK


def _user_passwd(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage.interface import UserNotFound

    name = arguments.name
    password = _read_password(arguments.password_stdin)
    password_hash = hash_password(password)

    async def change(storage: Storage) -> None:
        await _require_user(storage, name)
        try:
            await storage.set_password(name, password_hash)
            await _store_scram_keys(storage, name, password)
        except UserNotFound:  # deleted by someone else meanwhile
            raise CommandError(f"no such user: {name!r}") from None

    _with_storage(config, change)
    print(f"password of {name!r} changed")
    return EXIT_OK


async def _store_scram_keys(storage: Storage, name: str, password: str) -> None:
    """SCRAM-SHA-256 keys next to the argon2id hash (RFC 7677); a password SASLprep
    refuses gets none, so SCRAM fails for it while LOGIN and PLAIN work."""
    from mailhaven.security.scram import credentials_for

    credentials = credentials_for(password)
    if credentials is None:
        print(f"note: {name!r} cannot use SCRAM-SHA-256 with this password", file=sys.stderr)
        return
    await storage.set_scram_credentials(name, credentials)


def _user_delete(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage.interface import UserNotFound

    name = arguments.name

    async def delete(storage: Storage) -> None:
        await _require_user(storage, name)
        try:
            await storage.delete_user(name)
        except UserNotFound:  # deleted by someone else meanwhile
            raise CommandError(f"no such user: {name!r}") from None

    _with_storage(config, delete)
    print(f"deleted user {name!r} and all their mail")
    return EXIT_OK


def _user_list(arguments: argparse.Namespace, config: Config) -> int:
    async def names(storage: Storage) -> list[str]:
        return sorted(user.name for user in await storage.list_users())

    for name in _with_storage(config, names):
        print(name)
    return EXIT_OK


# ---------------------------------------------------------------------- check


def _check(arguments: argparse.Namespace, config: Config) -> int:
    """``mailhaven check``: exit 0 when everything works, 1 when a step failed."""
    from mailhaven.diagnose import CheckOptions, Mode, run_check

    password = None
    if arguments.user is not None:
        password = _read_check_password(arguments.password_stdin)
    options = CheckOptions(
        host=arguments.host,
        port=arguments.port,
        mode=Mode(arguments.mode),
        user=arguments.user,
        password=password,
        cafile=arguments.cafile,
        timeout=arguments.timeout,
    )
    report = run_check(options)
    sys.stdout.write(report.to_json() + "\n" if arguments.json else report.to_text())
    return report.exit_code


def _read_check_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    raise CommandError("stdin is not a terminal: pass --password-stdin to read the password")


# ---------------------------------------------------------------------- serve


def _ensure_demo_account(config: Config) -> None:
    """Create the demo account if missing and print its password."""

    async def ensure(storage: Storage) -> str | None:
        if await storage.get_user(DEMO_USER) is not None:
            return None
        password = secrets.token_urlsafe(12)
        await storage.create_user(DEMO_USER, hash_password(password))
        await _store_scram_keys(storage, DEMO_USER, password)
        return password

    password = _with_storage(config, ensure)
    if password is None:
        print(
            f'demo account: user "{DEMO_USER}" exists already; reset its password with '
            f'"mailhaven --data-dir {config.data_dir} user passwd {DEMO_USER}"',
            flush=True,
        )
    else:
        print(f'demo account: user "{DEMO_USER}", password "{password}"', flush=True)


def _serve(arguments: argparse.Namespace, config: Config) -> int:
    if config.imap_listen is None and config.imaps_listen is None:
        raise ConfigError("imap.listen, imaps.listen: both are off, nothing to listen on")
    if arguments.demo:
        _ensure_demo_account(config)
    # Imported here so the user commands work without loading the server.
    from mailhaven.server import run

    try:
        if config.workers > 1:
            from mailhaven.workers import supervise

            return supervise(config)
        return run(config)
    except OSError as error:  # typically a port in use or a privileged port
        raise CommandError(f"cannot serve: {error}") from None
