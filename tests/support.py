"""A real Mailhaven server on loopback, run in a background thread for tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import imaplib
import socket
import sqlite3
import ssl
import threading
from array import array
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from mailhaven.config import (
    AuthConfig,
    Config,
    LimitsConfig,
    LockoutConfig,
    QuotaConfig,
    TlsConfig,
)
from mailhaven.imap.selected import SelectedMailbox
from mailhaven.passwords import hash_password
from mailhaven.security import scram
from mailhaven.server import Server
from mailhaven.storage import sqlite as sqlite_backend
from mailhaven.storage.interface import Mailbox

T = TypeVar("T")

PASSWORD = "correct horse battery staple"


@functools.cache
def cached_hash(password: str) -> str:
    """argon2id is slow by design; tests reuse one hash per password (its salt is
    random, so this changes nothing about what the server verifies)."""
    return hash_password(password)


class ServerThread:
    """Starts a :class:`Server` on ephemeral loopback ports in its own event loop."""

    def __init__(
        self,
        data_dir: Path,
        *,
        allow_plaintext: bool = True,
        limits: LimitsConfig | None = None,
        quota: QuotaConfig | None = None,
        lockout: LockoutConfig | None = None,
        oauth_validator: str = "",
        tls: TlsConfig | None = None,
    ) -> None:
        self.config = Config(
            data_dir=data_dir,
            imap_listen=("127.0.0.1", 0),
            imaps_listen=("127.0.0.1", 0),
            lmtp_listen=("127.0.0.1", 0),
            limits=limits or LimitsConfig(),
            quota=quota or QuotaConfig(),
            auth=AuthConfig(
                allow_plaintext_on_loopback=allow_plaintext, oauth_validator=oauth_validator
            ),
            tls=tls or TlsConfig(),
            # No penalty delay unless a test asks for it: tests that fail logins on
            # purpose would otherwise wait seconds.  test_lockout.py checks the delay.
            lockout=lockout or LockoutConfig(delay_base_ms=0),
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = Server(self.config)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)

    def start(self) -> ServerThread:
        self.thread.start()
        self.call(self.server.start())
        return self

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def storage(self):  # noqa: ANN201
        assert self.server.storage is not None
        return self.server.storage

    @property
    def imap_port(self) -> int:
        return self.server.addresses["imap"][1]

    @property
    def imaps_port(self) -> int:
        return self.server.addresses["imaps"][1]

    @property
    def lmtp_port(self) -> int:
        assert self.server.lmtp is not None and self.server.lmtp.port is not None
        return self.server.lmtp.port

    def add_user(self, name: str, password: str = PASSWORD):  # noqa: ANN201
        """Create an account the way ``mailhaven user add`` does (with SCRAM keys)."""
        user = self.call(self.storage.create_user(name, cached_hash(password)))
        credentials = scram.credentials_for(password)
        assert credentials is not None
        self.call(self.storage.set_scram_credentials(name, credentials))
        return user

    @property
    def context(self):  # noqa: ANN201
        assert self.server.context is not None
        return self.server.context

    # ------------------------------------------------------------- clients

    def imaplib_client(self, user: str | None = None) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        if user is not None:
            client.login(user, PASSWORD)
        return client

    def imaplib_tls_client(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=insecure_context())

    def raw(self) -> RawClient:
        return RawClient(socket.create_connection(("127.0.0.1", self.imap_port), timeout=10))


def database_before_step(
    path: Path,
    script: str,
    contents: Sequence[tuple[bytes, bytes]],
    *,
    mailbox_id: int = 1,
    internal_date: int = 0,
) -> None:
    """A database migrated up to, not including, the migration step *script*, holding
    *contents* ((raw, metadata) pairs) as UIDs 1.. of one INBOX: what an older server
    left behind, for testing that step's backfill."""
    before = sqlite_backend._MIGRATIONS.index(script)
    conn = sqlite3.connect(path)
    for version, step in enumerate(sqlite_backend._MIGRATIONS[:before], start=1):
        conn.executescript(f"{step}\nPRAGMA user_version = {version};")
    conn.execute("INSERT INTO users (id, name, password_hash, created) VALUES (1, 'a', 'x', 0)")
    conn.execute(
        "INSERT INTO mailboxes (id, user_id, name, uidvalidity, uidnext)"
        " VALUES (?, 1, 'INBOX', 1, ?)",
        (mailbox_id, len(contents) + 1),
    )
    for uid, (raw, metadata) in enumerate(contents, start=1):
        conn.execute("INSERT INTO contents VALUES (?, '', '', ?, ?)", (uid, metadata, raw))
        conn.execute(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, tz_offset,"
            " size, recent, content_id) VALUES (?, ?, 1, '', ?, 0, ?, 0, ?)",
            (mailbox_id, uid, internal_date, len(raw), uid),
        )
    conn.commit()
    conn.close()


def run_with_storage(
    path: Path, scenario: Callable[[sqlite_backend.SqliteStorage], Awaitable[T]]
) -> T:
    """``await scenario(storage)`` on the SQLite storage at *path*, opened for it and
    closed after it; returns what the scenario returns."""

    async def main() -> T:
        storage = sqlite_backend.SqliteStorage(path)
        await storage.open()
        try:
            return await scenario(storage)
        finally:
            await storage.close()

    return asyncio.run(main())


async def alice_inbox(storage: sqlite_backend.SqliteStorage) -> Mailbox:
    """The INBOX of a new account "alice" (a placeholder password hash: for storage
    tests that never log in)."""
    user = await storage.create_user("alice", "x")
    inbox = await storage.get_mailbox(user.id, "INBOX")
    assert inbox is not None
    return inbox


@contextlib.contextmanager
def selected_inbox_with(
    directory: Path, messages: Sequence[tuple[str | None, bytes]]
) -> Iterator[imaplib.IMAP4]:
    """An imaplib client of alice, on a server of its own, with INBOX selected after
    *messages* ((INTERNALDATE or None, raw)) were appended to it."""
    server = ServerThread(directory).start()
    server.add_user("alice")
    imap = server.imaplib_client("alice")
    for when, raw in messages:
        typ, data = imap.append("INBOX", None, None if when is None else f'"{when}"', raw)
        assert typ == "OK", data
    imap.select("INBOX")
    try:
        yield imap
    finally:
        with contextlib.suppress(imaplib.IMAP4.abort, OSError):
            imap.logout()
        server.stop()


def view_of(uids: list[int], known_modseq: int = 1) -> SelectedMailbox:
    """A read-only view of an INBOX holding *uids*, built without a store."""
    count = len(uids)
    return SelectedMailbox(
        mailbox=Mailbox(
            id=1,
            user_id=1,
            name="INBOX",
            uidvalidity=1,
            uidnext=max(uids, default=0) + 1,
            highest_modseq=known_modseq,
        ),
        readonly=True,
        uids=array("I", uids),
        flags=[frozenset()] * count,
        modseqs=array("q", [1] * count),
        internal_dates=array("q", [0] * count),
        tz_offsets=array("i", [0] * count),
        sizes=array("q", [1] * count),
        known_modseq=known_modseq,
    )


def search_numbers(imap: imaplib.IMAP4, *criteria: str) -> list[int]:
    """The numbers a SEARCH answers, as integers (failing on a NO or BAD)."""
    typ, data = imap.search(None, *criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def count_reads(storage: sqlite_backend.SqliteStorage) -> list[str]:
    """The names of the queries *storage* runs on its reader threads from now on, in
    order (the list fills as they run)."""
    calls: list[str] = []
    original = storage._read

    async def counting(query, *args):  # noqa: ANN001, ANN202
        calls.append(query.__name__)
        return await original(query, *args)

    storage._read = counting  # type: ignore[method-assign]
    return calls


def mail(n: int) -> bytes:
    """A small message whose subject and body carry the number *n*."""
    return b"Subject: message %d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n" % (n, n)


def insecure_context() -> ssl.SSLContext:
    """The tests' certificate is self-signed; the tests check TLS works, not trust."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    """Byte-level access for edge cases: send exact bytes, read until a tagged line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.greeting = self.read_line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_until_tagged(self, tag: bytes) -> list[bytes]:
        """All lines up to and including the one starting with *tag* (literals are
        returned inline as lines; tests only look at short responses)."""
        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.read_until_tagged(tag)

    def login(self, user: str, password: str = PASSWORD) -> None:
        lines = self.command(b"L", b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        assert lines[-1].startswith(b"L OK"), lines

    def close(self) -> None:
        self.sock.close()
