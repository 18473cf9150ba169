"""The mail-flow commands of ``mailhaven``: import, export, user import-passwd,
backup and restore.  Registered by :func:`mailhaven.cli.build_parser`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from mailhaven import cli
from mailhaven.config import Config
from mailhaven.storage.interface import Storage, User, UserExists

PASSWORD_ENV = "MAILHAVEN_IMPORT_PASSWORD"


def add_commands(
    commands: argparse._SubParsersAction, user_commands: argparse._SubParsersAction
) -> None:
    importing = commands.add_parser(
        "import", help="import mail from mbox, Maildir, Dovecot or another IMAP server"
    )
    importing.add_argument("user")
    importing.add_argument("source", help="PATH, or imap[s]://login@host[:port]")
    importing.add_argument(
        "--format", default="auto", help="auto | maildir | mboxrd | mboxo (for PATH)"
    )
    importing.add_argument("--folder", help="folder for a single mbox file (default INBOX)")
    importing.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the source server's password from stdin (or set ${PASSWORD_ENV})",
    )
    importing.add_argument(
        "--insecure", action="store_true", help="do not verify the source server's certificate"
    )
    importing.set_defaults(handler=_import)

    exporting = commands.add_parser("export", help="export an account's mail")
    exporting.add_argument("user")
    exporting.add_argument("path", type=Path)
    exporting.add_argument("--format", choices=("mbox", "maildir"), default="mbox")
    exporting.set_defaults(handler=_export)

    backup = commands.add_parser("backup", help="consistent snapshot of the store (live)")
    backup.add_argument("destination", type=Path, help="new database file to write")
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser("restore", help="bring a backup back (server stopped)")
    restore.add_argument("backup", type=Path)
    restore.add_argument("--force", action="store_true", help="replace an existing store")
    restore.set_defaults(handler=_restore)

    passwd = user_commands.add_parser(
        "import-passwd", help="create accounts from a Dovecot passwd-file, keeping passwords"
    )
    passwd.add_argument("file", type=Path)
    passwd.set_defaults(handler=_import_passwd)


async def _user(storage: Storage, name: str) -> User:
    user = await storage.get_user(name)
    if user is None:
        raise cli.CommandError(f"no such user: {name!r}")
    return user


# ---------------------------------------------------------------------- import / export


def _source_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return getpass.getpass("Password on the source server: ")
    raise cli.CommandError(f"give the source password with --password-stdin or ${PASSWORD_ENV}")


def _import(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.mailflow import imap_source, importer
    from mailhaven.mailflow.progress import Report

    report = Report("imported")
    if imap_source.looks_like_url(arguments.source):
        try:
            source = imap_source.parse_url(arguments.source)
            password = _source_password(arguments.password_stdin)
            client = imap_source.connect(source, password, insecure=arguments.insecure)
        except imap_source.SourceError as error:
            raise cli.CommandError(str(error)) from None

        async def from_imap(storage: Storage) -> None:
            user = await _user(storage, arguments.user)
            try:
                await imap_source.import_from_imap(storage, user, client, source, report)
            finally:
                await asyncio.to_thread(client.logout)

        cli._with_storage(config, from_imap)  # noqa: SLF001 - the CLI's own helper
    else:
        try:
            folders = importer.folders_at(
                Path(arguments.source), arguments.format, arguments.folder
            )
        except importer.ImportError_ as error:
            raise cli.CommandError(str(error)) from None

        async def from_files(storage: Storage) -> None:
            user = await _user(storage, arguments.user)
            await importer.import_folders(storage, user, folders, report)

        cli._with_storage(config, from_files)  # noqa: SLF001
    report.finish()
    return cli.EXIT_OK


def _export(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.mailflow.exporter import export_account
    from mailhaven.mailflow.progress import Report

    report = Report("exported")

    async def export(storage: Storage) -> None:
        user = await _user(storage, arguments.user)
        await export_account(storage, user, arguments.path, arguments.format, report)

    cli._with_storage(config, export)  # noqa: SLF001
    report.finish()
    return cli.EXIT_OK


# ---------------------------------------------------------------------- accounts


def _import_passwd(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.mailflow.passwd_file import BadLine, read_passwd_file

    try:
        entries = list(read_passwd_file(arguments.file))
    except (OSError, UnicodeDecodeError) as error:
        raise cli.CommandError(f"cannot read {arguments.file}: {error}") from None
    created: list[str] = []
    problems = [
        f"line {e.line_number} ({e.name}): {e.reason}" for e in entries if isinstance(e, BadLine)
    ]

    async def create(storage: Storage) -> None:
        for entry in entries:
            if isinstance(entry, BadLine):
                continue
            try:
                await storage.create_user(cli._check_user_name(entry.name), entry.password_hash)  # noqa: SLF001
                created.append(entry.name)
            except UserExists:
                problems.append(f"{entry.name}: user exists, left unchanged")
            except cli.CommandError as error:
                problems.append(str(error))

    cli._with_storage(config, create)  # noqa: SLF001
    print(f"created {len(created)} users, skipped {len(problems)}")
    for problem in problems:
        print(f"  skipped {problem}")
    return cli.EXIT_OK if not problems else cli.EXIT_FAILED


# ---------------------------------------------------------------------- backup / restore


def _database(config: Config) -> Path:
    from mailhaven.storage import DATABASE_FILE

    return config.data_dir / DATABASE_FILE


def _backup(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage.sqlite_backup import BackupError, backup_database

    try:
        backup_database(_database(config), arguments.destination)
    except BackupError as error:
        raise cli.CommandError(str(error)) from None
    print(f"backed up {_database(config)} to {arguments.destination}")
    return cli.EXIT_OK


def _restore(arguments: argparse.Namespace, config: Config) -> int:
    from mailhaven.storage.sqlite_backup import BackupError, restore_database

    try:
        restore_database(arguments.backup, _database(config), replace=arguments.force)
    except BackupError as error:
        raise cli.CommandError(str(error)) from None
    print(f"restored {arguments.backup} to {_database(config)}")
    return cli.EXIT_OK
