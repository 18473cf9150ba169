"""``mailhaven`` commands for account security and the store's health:

* ``user imap-access NAME on|off``, ``user disable NAME``, ``user enable NAME``;
* ``user app-password add|list|revoke NAME [LABEL]``;
* ``blocks list`` and ``blocks clear [IP-OR-ACCOUNT]`` (brute-force blocks);
* ``fsck`` (store invariants, see :mod:`mailhaven.storage.fsck`).
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mailhaven.cli import EXIT_FAILED, EXIT_OK, CommandError, _with_storage
from mailhaven.config import Config
from mailhaven.storage.interface import AppPasswordExists, AppPasswordNotFound

if TYPE_CHECKING:
    from mailhaven.storage.interface import Storage

T = TypeVar("T")


def add_security_commands(commands: Any, user_commands: Any) -> None:
    """Register the commands on the parsers of ``mailhaven`` and ``mailhaven user``."""
    access = user_commands.add_parser("imap-access", help="allow or refuse IMAP logins")
    access.add_argument("name")
    access.add_argument("state", choices=("on", "off"))
    access.set_defaults(handler=_imap_access)
    for action, help_text in (
        ("disable", "disable an account (nothing can log in)"),
        ("enable", "enable a disabled account"),
    ):
        sub = user_commands.add_parser(action, help=help_text)
        sub.add_argument("name")
        sub.set_defaults(handler=_set_disabled, disabled=action == "disable")

    app = user_commands.add_parser("app-password", help="manage an account's app passwords")
    app_commands = app.add_subparsers(dest="app_command", required=True, metavar="ACTION")
    add = app_commands.add_parser("add", help="create one; prints it once")
    add.add_argument("name")
    add.add_argument("label")
    add.set_defaults(handler=_app_password_add)
    listing = app_commands.add_parser("list", help="labels and creation times")
    listing.add_argument("name")
    listing.set_defaults(handler=_app_password_list)
    revoke = app_commands.add_parser("revoke", help="delete one")
    revoke.add_argument("name")
    revoke.add_argument("label")
    revoke.set_defaults(handler=_app_password_revoke)

    blocks = commands.add_parser("blocks", help="show or lift brute-force blocks")
    block_commands = blocks.add_subparsers(dest="blocks_command", required=True, metavar="ACTION")
    block_commands.add_parser("list", help="active blocks").set_defaults(handler=_blocks_list)
    clear = block_commands.add_parser("clear", help="lift blocks (all, or one IP or account)")
    clear.add_argument("key", nargs="?", help="an IP address or an account name")
    clear.set_defaults(handler=_blocks_clear)

    fsck = commands.add_parser("fsck", help="check the store's consistency")
    fsck.set_defaults(handler=_fsck)


def _utc(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _on_account(config: Config, name: str, work: Callable[[Storage], Awaitable[T]]) -> T:
    """Run *work* on the store, which fails with ``UserNotFound`` when account *name*
    does not exist; that becomes the command's error message."""
    from mailhaven.storage.interface import UserNotFound

    async def run(storage: Storage) -> T:
        try:
            return await work(storage)
        except UserNotFound:
            raise CommandError(f"no such user: {name!r}") from None

    return _with_storage(config, run)


# ---------------------------------------------------------------------- switches


def _imap_access(arguments: argparse.Namespace, config: Config) -> int:
    enabled = arguments.state == "on"
    _on_account(
        config, arguments.name, lambda storage: storage.set_imap_enabled(arguments.name, enabled)
    )
    print(f"IMAP access of {arguments.name!r} is {arguments.state}")
    return EXIT_OK


def _set_disabled(arguments: argparse.Namespace, config: Config) -> int:
    _on_account(
        config,
        arguments.name,
        lambda storage: storage.set_disabled(arguments.name, arguments.disabled),
    )
    print(f"account {arguments.name!r} {'disabled' if arguments.disabled else 'enabled'}")
    return EXIT_OK


# ---------------------------------------------------------------------- app passwords


def _app_password_add(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.security import app_passwords

    label = arguments.label
    if not label or not label.isprintable():
        raise CommandError(f"invalid label {label!r}: use printable characters")
    password = app_passwords.generate()

    async def add(storage: Storage) -> None:
        try:
            await storage.add_app_password(arguments.name, label, app_passwords.digest(password))
        except AppPasswordExists:
            raise CommandError(
                f"{arguments.name!r} already has an app password {label!r}"
            ) from None

    _on_account(config, arguments.name, add)
    print(f"app password {label!r} of {arguments.name!r} (shown only now): {password}")
    return EXIT_OK


def _app_password_list(arguments: argparse.Namespace, config: Config) -> int:
    listing = _on_account(
        config, arguments.name, lambda storage: storage.app_passwords(arguments.name)
    )
    for app_password in listing:
        print(f"{app_password.label}\tcreated {_utc(app_password.created)}")
    return EXIT_OK


def _app_password_revoke(arguments: argparse.Namespace, config: Config) -> int:
    async def revoke(storage: Storage) -> None:
        try:
            await storage.revoke_app_password(arguments.name, arguments.label)
        except AppPasswordNotFound:
            raise CommandError(
                f"{arguments.name!r} has no app password {arguments.label!r}"
            ) from None

    _on_account(config, arguments.name, revoke)
    print(f"app password {arguments.label!r} of {arguments.name!r} revoked")
    return EXIT_OK


# ---------------------------------------------------------------------- blocks


def _blocks_list(arguments: argparse.Namespace, config: Config) -> int:
    async def listing(storage: Storage) -> list[Any]:
        return await storage.list_auth_blocks(time.time())

    for block in _with_storage(config, listing):
        print(f"{block.kind}\t{block.key}\tuntil {_utc(block.until)}\t{block.reason}")
    return EXIT_OK


def _blocks_clear(arguments: argparse.Namespace, config: Config) -> int:
    async def clear(storage: Storage) -> int:
        return await storage.clear_auth_blocks(arguments.key)

    count = _with_storage(config, clear)
    target = "" if arguments.key is None else f" for {arguments.key!r}"
    print(f"lifted {count} block{'s' if count != 1 else ''}{target}")
    return EXIT_OK


# ---------------------------------------------------------------------- fsck


def _fsck(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage import DATABASE_FILE
    from mailhaven.storage.fsck import check_database

    path = config.data_dir / DATABASE_FILE
    if not path.exists():
        raise CommandError(f"no store at {path}")
    problems = check_database(path)
    for problem in problems:
        print(f"inconsistent: {problem}")
    if problems:
        print(f"store {path}: {len(problems)} problem(s)")
        return EXIT_FAILED
    print(f"store {path}: consistent")
    return EXIT_OK
