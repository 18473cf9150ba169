"""``mailhaven quota``: per-account limits (RFC 9208 STORAGE and MESSAGE).

    mailhaven quota set alice --storage 2G --messages 100000
    mailhaven quota set alice --storage unlimited
    mailhaven quota show alice
    mailhaven quota reset alice        # back to the [quota] defaults

``set`` changes only the limits it is given; an account without limits of its
own starts from the defaults of the configuration.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mailhaven.config import Config, parse_size

if TYPE_CHECKING:
    from mailhaven.storage.interface import QuotaUsage, Storage

UNLIMITED = "unlimited"


def add_quota_commands(commands: Any) -> None:
    """Register ``quota set|show|reset`` on the top-level subparsers."""
    quota = commands.add_parser("quota", help="show or set an account's quota")
    actions = quota.add_subparsers(dest="quota_command", required=True, metavar="ACTION")
    set_parser = actions.add_parser("set", help="set an account's limits")
    set_parser.add_argument("name")
    set_parser.add_argument(
        "--storage", type=_limit(parse_size), help='e.g. 500M, 2G, or "unlimited"'
    )
    set_parser.add_argument(
        "--messages", type=_limit(_count), help='a number of messages, or "unlimited"'
    )
    set_parser.set_defaults(handler=_quota_set)
    for action, handler, help_text in (
        ("show", _quota_show, "print an account's usage and limits"),
        ("reset", _quota_reset, "give an account the configured default limits"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("name")
        sub.set_defaults(handler=handler)


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def _limit(parse: Any) -> Any:
    """An argparse type: a limit, or -1 standing for "unlimited"."""

    def convert(text: str) -> int:
        if text.lower() == UNLIMITED:
            return -1
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


async def _account_id(storage: Storage, name: str) -> int:
    from mailhaven.cli import CommandError

    user = await storage.get_user(name)
    if user is None:
        raise CommandError(f"no such user: {name!r}")
    return user.id


def _run(config: Config, name: str, change: Any) -> QuotaUsage:
    from mailhaven.cli import _with_storage
    from mailhaven.storage import quota_defaults

    async def work(storage: Storage) -> QuotaUsage:
        storage.quota_defaults = quota_defaults(config)
        user_id = await _account_id(storage, name)
        return await change(storage, user_id)

    return _with_storage(config, work)


def _quota_set(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.cli import CommandError
    from mailhaven.storage.interface import QuotaLimits

    if arguments.storage is None and arguments.messages is None:
        raise CommandError("give --storage and/or --messages")

    def chosen(new: int | None, current: int | None) -> int | None:
        if new is None:
            return current
        return None if new < 0 else new

    async def change(storage: Storage, user_id: int) -> QuotaUsage:
        current = (await storage.quota(user_id)).limits
        limits = QuotaLimits(
            storage=chosen(arguments.storage, current.storage),
            messages=chosen(arguments.messages, current.messages),
        )
        return await storage.set_quota(user_id, limits)

    _print_usage(arguments.name, _run(config, arguments.name, change))
    return 0


def _quota_show(arguments: argparse.Namespace, config: Config) -> int:
    async def read(storage: Storage, user_id: int) -> QuotaUsage:
        return await storage.quota(user_id)

    _print_usage(arguments.name, _run(config, arguments.name, read))
    return 0


def _quota_reset(arguments: argparse.Namespace, config: Config) -> int:
    async def reset(storage: Storage, user_id: int) -> QuotaUsage:
        return await storage.set_quota(user_id, None)

    _print_usage(arguments.name, _run(config, arguments.name, reset))
    return 0


def _print_usage(name: str, usage: QuotaUsage) -> None:
    def limit(value: int | None) -> str:
        return UNLIMITED if value is None else str(value)

    print(f"user {name}")
    print(f"storage: {usage.storage} of {limit(usage.limits.storage)} octets")
    print(f"messages: {usage.messages} of {limit(usage.limits.messages)}")
