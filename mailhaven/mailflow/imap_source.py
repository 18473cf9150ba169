"""Import from another IMAP server (``mailhaven import USER imap://login@host``).

Every selectable folder is copied with each message's flags and INTERNALDATE
(RFC 9051 sections 6.3.9 LIST, 6.4.5 FETCH BODY.PEEK[], which does not set \\Seen
on the source).  What was copied is recorded per (source, folder, UIDVALIDITY, UID)
in the same transaction as the messages, so an interrupted import resumes where
it stopped and a rerun copies nothing twice.  If the source folder's UIDVALIDITY
changed, its UIDs mean other messages and the folder is copied again.

``imap://`` uses STARTTLS when the server offers it; ``imaps://`` is TLS from the
start (RFC 8314).  Certificates are verified unless ``insecure`` is set.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import urllib.parse
from dataclasses import dataclass

from imapclient import IMAPClient

from mailhaven.codec.mailbox_names import canonical_mailbox
from mailhaven.mailflow.importer import ensure_mailbox
from mailhaven.mailflow.messages import prepare
from mailhaven.mailflow.progress import Report
from mailhaven.storage.flags import RECENT
from mailhaven.storage.interface import ImportOrigin, Mailbox, Storage, User

SCHEMES = {"imap": 143, "imaps": 993}
BATCH_MESSAGES = 100
FETCH_ITEMS = [b"FLAGS", b"INTERNALDATE", b"BODY.PEEK[]"]
TIMEOUT_SECONDS = 120
SEPARATOR = "/"


class SourceError(Exception):
    """The source server cannot be used (bad URL, login refused, ...)."""


@dataclass(frozen=True, slots=True)
class ImapSource:
    scheme: str
    login: str
    host: str
    port: int

    @property
    def key(self) -> str:
        """Names the source in the import records."""
        return f"{self.login}@{self.host}:{self.port}"


def parse_url(url: str) -> ImapSource:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in SCHEMES:
        raise SourceError(f"{url!r}: use imap://login@host[:port] or imaps://login@host[:port]")
    if not parsed.username or not parsed.hostname:
        raise SourceError(f"{url!r}: the URL needs a login and a host (imap://login@host)")
    try:
        port = parsed.port or SCHEMES[parsed.scheme]
    except ValueError as error:
        raise SourceError(f"{url!r}: {error}") from None
    login = urllib.parse.unquote(parsed.username)
    return ImapSource(parsed.scheme, login, parsed.hostname, port)


def looks_like_url(text: str) -> bool:
    return any(text.startswith(f"{scheme}://") for scheme in SCHEMES)


def _tls_context(insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(source: ImapSource, password: str, *, insecure: bool) -> IMAPClient:
    """A logged-in client (blocking: run it in a thread)."""
    implicit = source.scheme == "imaps"
    context = _tls_context(insecure)
    try:
        client = IMAPClient(
            source.host, source.port, ssl=implicit, ssl_context=context, timeout=TIMEOUT_SECONDS
        )
        if not implicit and b"STARTTLS" in client.capabilities():
            client.starttls(context)
        client.normalise_times = False  # keep each INTERNALDATE's own zone
        client.login(source.login, password)
    except (OSError, IMAPClient.Error) as error:
        raise SourceError(f"{source.key}: {error}") from None
    return client


async def import_from_imap(
    storage: Storage, user: User, client: IMAPClient, source: ImapSource, report: Report
) -> None:
    folders = await asyncio.to_thread(client.list_folders)
    for flags, delimiter, name in folders:
        if any(flag.lower() in (b"\\noselect", b"\\nonexistent") for flag in flags):
            continue
        local = _local_name(name, delimiter)
        if local is None:
            report.skip(f"folder {name}", f"contains '{SEPARATOR}', which is our separator")
            continue
        await _import_folder(storage, user, client, source, name, local, report)


def _local_name(name: str, delimiter: bytes | None) -> str | None:
    separator = delimiter.decode() if delimiter else None
    if separator and separator != SEPARATOR:
        if SEPARATOR in name:
            return None
        name = name.replace(separator, SEPARATOR)
    return canonical_mailbox(name)


async def _import_folder(
    storage: Storage,
    user: User,
    client: IMAPClient,
    source: ImapSource,
    remote: str,
    local: str,
    report: Report,
) -> None:
    selected = await asyncio.to_thread(client.select_folder, remote, readonly=True)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    uids = await asyncio.to_thread(client.search, "ALL")
    done = await storage.imported_uids(user.id, source.key, remote, uidvalidity)
    todo = sorted(set(uids) - done)
    mailbox = await ensure_mailbox(storage, user, local)
    report.folder(local)
    for start in range(0, len(todo), BATCH_MESSAGES):
        chunk = todo[start : start + BATCH_MESSAGES]
        fetched = await asyncio.to_thread(client.fetch, chunk, FETCH_ITEMS)
        await _store(storage, mailbox, source, remote, uidvalidity, chunk, fetched, report)


async def _store(
    storage: Storage,
    mailbox: Mailbox,
    source: ImapSource,
    remote: str,
    uidvalidity: int,
    chunk: list[int],
    fetched: dict[int, dict[bytes, object]],
    report: Report,
) -> None:
    items = []
    for uid in chunk:
        data = fetched.get(uid)
        if data is None:  # expunged on the source since the SEARCH
            report.skip(f"{remote} UID {uid}", "gone from the source during the import")
            continue
        raw = data.get(b"BODY[]")
        if not isinstance(raw, bytes) or not raw:
            report.skip(f"{remote} UID {uid}", "the source sent no message body")
            continue
        flags = {flag.decode("utf-8", "replace") for flag in data.get(b"FLAGS", ())}  # type: ignore[union-attr]
        flags.discard(RECENT)
        internal_date = data.get(b"INTERNALDATE")
        if not isinstance(internal_date, datetime.datetime) or internal_date.tzinfo is None:
            internal_date = None
        items.append((uid, raw, flags, internal_date))
    if not items:
        return
    prepared = await asyncio.to_thread(
        lambda: [prepare(raw, flags, date) for _, raw, flags, date in items]
    )
    origin = ImportOrigin(source.key, remote, uidvalidity, tuple(uid for uid, *_ in items))
    await storage.append_imported(mailbox.id, prepared, origin)
    for _, raw, _, _ in items:
        report.message(len(raw))
