"""The benchmark's scenarios: each runs against one :class:`Target`, verifies every
answer (a wrong answer raises :class:`WrongAnswer`, it is never a time) and returns
its figures.

They run in order on one server: APPEND loads the corpus that the later scenarios
read, so the order below is part of the workload.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import re
import smtplib
import statistics
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks import corpus
from benchmarks.client import ImapClient, ImapError, literal_plus, quoted, search_uids
from benchmarks.servers import Target

GENERATE_BATCH = 500
IDLE_MAILBOX = "Bench Idle"
COPY_MAILBOX = "Bench Copies"
CHANGEDSINCE_REPEATS = 5
APPEND_MAILBOX = "Bench Append"  # the APPEND scenario's mailbox when INBOX was preloaded
MOVE_MAILBOX = "Bench Moved"


class WrongAnswer(Exception):
    """The server answered, but not what the corpus says it must."""


class Skipped(Exception):
    """The target cannot run this scenario (for example: no LMTP listener)."""


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    higher_is_better: bool = False


@dataclass
class Settings:
    messages: int
    seed: int
    lmtp_messages: int
    login_clients: int
    logins_per_client: int
    idlers: int
    mixed_clients: int
    mixed_seconds: float
    download_messages: int
    copy_messages: int
    single_stores: int
    preloaded: bool = False  # INBOX holds the corpus before the scenarios (--preload)
    append_messages: int = 2000  # APPENDed to APPEND_MAILBOX when preloaded


@dataclass
class Run:
    """State shared by the scenarios of one target."""

    target: Target
    settings: Settings
    sizes: list[int] = field(default_factory=list)
    checksums: list[int] = field(default_factory=list)
    uid_base: int = 0  # the UID of corpus message 0 is uid_base + 1

    @property
    def user(self) -> str:
        return self.target.accounts[0].user

    async def client(self, account: int = 0) -> ImapClient:
        credentials = self.target.accounts[account]
        return await ImapClient.login(
            self.target.host, self.target.imap_port, credentials.user, credentials.password
        )

    async def scram_client(self, account: int = 0) -> ImapClient:
        credentials = self.target.accounts[account]
        return await ImapClient.login_scram(
            self.target.host, self.target.imap_port, credentials.user, credentials.password
        )

    def index(self, uid: int) -> int:
        return uid - self.uid_base - 1


Scenario = Callable[[Run], Awaitable[list[Figure]]]


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongAnswer(message)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _imap_datetime(moment: datetime.datetime) -> bytes:
    return moment.strftime('"%d-%b-%Y %H:%M:%S +0000"').encode()


def _exists(response_lines: list[bytes]) -> int | None:
    for line in response_lines:
        match = re.match(rb"\* (\d+) EXISTS", line)
        if match:
            return int(match.group(1))
    return None


async def _status_messages(client: ImapClient, mailbox: str) -> int:
    response = await client.command(b"STATUS " + quoted(mailbox) + b" (MESSAGES)")
    for line in response.untagged:
        match = re.search(rb"MESSAGES (\d+)", line)
        if match:
            return int(match.group(1))
    raise WrongAnswer(f"no STATUS MESSAGES for {mailbox}")


# --------------------------------------------------------------------------- scenarios


async def login_rate(run: Run) -> list[Figure]:
    """Concurrent clients each LOGIN and LOGOUT repeatedly (password hashing included:
    both servers verify the same argon2id hash)."""
    settings = run.settings

    async def one_client() -> None:
        for _ in range(settings.logins_per_client):
            client = await run.client()
            await client.logout()

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(settings.login_clients)))
    elapsed = time.perf_counter() - start
    total = settings.login_clients * settings.logins_per_client
    return [
        Figure(f"login ({settings.login_clients} concurrent)", total / elapsed, "logins/s", True)
    ]


async def _uidnext(client: ImapClient, mailbox: str) -> int:
    status = await client.command(b"STATUS " + quoted(mailbox) + b" (UIDNEXT)")
    return int(re.search(rb"UIDNEXT (\d+)", b"".join(status.untagged)).group(1))


async def append(run: Run) -> list[Figure]:
    """Loads the corpus with one APPEND per message (one connection, as a client
    uploading a mailbox does); the date and \\Seen come with the message.  When INBOX
    was preloaded, the first ``append_messages`` of the corpus go to a mailbox of
    their own instead: the same messages, the same commands, a smaller count."""
    settings = run.settings
    client = await run.client()
    if settings.preloaded:
        mailbox, count = APPEND_MAILBOX, min(settings.append_messages, settings.messages)
        await client.command(b"CREATE " + quoted(mailbox))
        uid_base = await _uidnext(client, mailbox) - 1
    else:
        mailbox, count = "INBOX", settings.messages
        uid_base = run.uid_base = await _uidnext(client, mailbox) - 1
    elapsed = 0.0
    total_bytes = 0
    command = b"APPEND " + quoted(mailbox) + b" "
    for first in range(0, count, GENERATE_BATCH):
        batch = range(first, min(first + GENERATE_BATCH, count))
        raws = [corpus.generate(i, settings.messages, settings.seed) for i in batch]
        if not settings.preloaded:
            run.sizes.extend(len(raw) for raw in raws)
            run.checksums.extend(zlib.crc32(raw) for raw in raws)
        start = time.perf_counter()
        for i, raw in zip(batch, raws, strict=True):
            flags = b"(\\Seen) " if corpus.is_seen(i) else b""
            date = _imap_datetime(corpus.internal_date(i, settings.messages))
            response = await client.command(command + flags + date + b" " + literal_plus(raw))
            match = re.search(rb"APPENDUID \d+ (\d+)", response.text)
            if match and int(match.group(1)) != uid_base + i + 1:
                raise WrongAnswer(f"APPENDUID {match.group(1)!r} for message {i}")
        elapsed += time.perf_counter() - start
        total_bytes += sum(map(len, raws))
    expect(
        await _status_messages(client, mailbox) == count,
        f"{mailbox} does not hold every appended message",
    )
    await client.logout()
    return [
        Figure("APPEND", count / elapsed, "msgs/s", True),
        Figure("APPEND bytes", total_bytes / elapsed / 1e6, "MB/s", True),
    ]


async def check_preloaded(run: Run, sizes: list[int], checksums: list[int]) -> None:
    """Adopt a preloaded INBOX (message i is UID i + 1) after checking that the
    server holds exactly the corpus there; the scenarios verify the rest."""
    client = await run.client()
    response = await client.command(b"STATUS INBOX (MESSAGES UIDNEXT)")
    await client.logout()
    status = b"".join(response.untagged)
    messages = int(re.search(rb"MESSAGES (\d+)", status).group(1))
    uidnext = int(re.search(rb"UIDNEXT (\d+)", status).group(1))
    count = run.settings.messages
    expect(
        messages == count and uidnext == count + 1,
        f"preloaded INBOX: {messages} messages, UIDNEXT {uidnext}; expected {count}, {count + 1}",
    )
    run.uid_base = 0
    run.sizes, run.checksums = sizes, checksums


async def lmtp_delivery(run: Run) -> list[Figure]:
    """One LMTP session delivering messages one transaction each to the second user."""
    target, settings = run.target, run.settings
    if target.lmtp_port is None:
        raise Skipped("no LMTP port")
    recipient = target.accounts[1].user + "@localhost"
    raws = [
        corpus.generate(i, settings.messages, settings.seed + 1)
        for i in range(settings.lmtp_messages)
    ]

    def deliver() -> float:
        with smtplib.LMTP(target.host, target.lmtp_port) as lmtp:
            start = time.perf_counter()
            for raw in raws:
                refused = lmtp.sendmail("sender@example.net", [recipient], raw)
                if refused:
                    raise WrongAnswer(f"LMTP refused {refused}")
            return time.perf_counter() - start

    elapsed = await asyncio.to_thread(deliver)
    client = await run.client(1)
    delivered = await _status_messages(client, "INBOX")
    await client.logout()
    expect(delivered == len(raws), f"LMTP: {delivered} of {len(raws)} messages in INBOX")
    return [Figure("LMTP delivery", len(raws) / elapsed, "msgs/s", True)]


SELECT_REPEATS = 9


async def select(run: Run) -> list[Figure]:
    """SELECT of the large INBOX on one connection: the first (the server may have
    to read the mailbox from disk), then the median of SELECT_REPEATS more (a client
    switching back to a mailbox)."""
    client = await run.client()
    times = []
    for _ in range(1 + SELECT_REPEATS):
        start = time.perf_counter()
        response = await client.command(b"SELECT INBOX")
        times.append(time.perf_counter() - start)
        expect(_exists(response.untagged) == run.settings.messages, "SELECT: wrong EXISTS")
    await client.logout()
    messages = run.settings.messages
    return [
        Figure(f"SELECT first ({messages} msgs)", times[0] * 1e3, "ms"),
        Figure(f"SELECT ({messages} msgs)", statistics.median(times[1:]) * 1e3, "ms"),
    ]


_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_MESSAGE_ID = re.compile(rb"<(\d+)\.\d+\.bench@mailhaven\.example>")
_MESSAGE_ID_HEADER = re.compile(rb"Message-ID: <(\d+)\.\d+\.bench@mailhaven\.example>", re.I)


async def first_sync(run: Run) -> list[Figure]:
    """What a new device does: every message's flags, date, size, envelope and
    body structure."""
    client = await run.client()
    await client.command(b"SELECT INBOX")
    start = time.perf_counter()
    response = await client.command(
        b"UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"
    )
    elapsed = time.perf_counter() - start
    seen = set()
    for line in response.untagged:
        uid = int(_UID.search(line).group(1))
        i = run.index(uid)
        expect(0 <= i < run.settings.messages, f"first sync: unexpected UID {uid}")
        expect(int(_SIZE.search(line).group(1)) == run.sizes[i], f"first sync: size of {uid}")
        expect(b"BODYSTRUCTURE (" in line and b"ENVELOPE (" in line, f"first sync: {uid}")
        # The envelope's last message id is its own (in-reply-to comes before it).
        own_id = int(_MESSAGE_ID.findall(line)[-1])
        expect(own_id == i, f"first sync: ENVELOPE of UID {uid}")
        expect(
            (b"\\Seen" in _FLAGS.search(line).group(1)) == corpus.is_seen(i),
            f"first sync: FLAGS of UID {uid}",
        )
        seen.add(uid)
    expect(len(seen) == run.settings.messages, f"first sync: {len(seen)} messages")
    await client.logout()
    count = run.settings.messages
    return [Figure(f"first sync ({count} msgs, ENVELOPE+BODYSTRUCTURE)", elapsed * 1e3, "ms")]


async def header_fetch(run: Run) -> list[Figure]:
    """The headers a message list shows, for every message."""
    client = await run.client()
    await client.command(b"SELECT INBOX")
    start = time.perf_counter()
    response = await client.command(
        b"UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID"
        b" IN-REPLY-TO REFERENCES)])"
    )
    elapsed = time.perf_counter() - start
    for line in response.untagged:
        uid = int(_UID.search(line).group(1))
        own_id = _MESSAGE_ID_HEADER.search(line)
        expect(
            own_id is not None and int(own_id.group(1)) == run.index(uid),
            f"header fetch: UID {uid}",
        )
    expect(len(response.untagged) == run.settings.messages, "header fetch: message count")
    await client.logout()
    return [Figure("header fetch (all msgs)", elapsed * 1e3, "ms")]


async def flag_resync(run: Run) -> list[Figure]:
    """A phone waking up: all flags; then, with CONDSTORE, only what changed after
    single-message STOREs."""
    settings = run.settings
    client = await run.client()
    condstore = b"CONDSTORE" in client.capabilities
    selected = await client.command(b"SELECT INBOX (CONDSTORE)" if condstore else b"SELECT INBOX")
    start = time.perf_counter()
    response = await client.command(b"UID FETCH 1:* (FLAGS)")
    full = time.perf_counter() - start
    for line in response.untagged:
        i = run.index(int(_UID.search(line).group(1)))
        expect(
            (b"\\Seen" in _FLAGS.search(line).group(1)) == corpus.is_seen(i), "flag resync: FLAGS"
        )
    expect(len(response.untagged) == settings.messages, "flag resync: message count")

    rng = random.Random(settings.seed)
    stored = sorted(
        run.uid_base + 1 + i for i in rng.sample(range(settings.messages), settings.single_stores)
    )
    times = []
    for uid in stored:
        start = time.perf_counter()
        response = await client.command(b"UID STORE %d +FLAGS (\\Flagged)" % uid)
        times.append(time.perf_counter() - start)
        expect(any(b"\\Flagged" in line for line in response.untagged), "STORE: no FETCH FLAGS")
    figures = [
        Figure(f"flag resync ({settings.messages} msgs)", full * 1e3, "ms"),
        Figure("STORE one message (mean)", statistics.mean(times) * 1e3, "ms"),
    ]
    if condstore:
        modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(selected.untagged)).group(1))
        times = []
        for _ in range(CHANGEDSINCE_REPEATS):  # a few milliseconds: one run is mostly noise
            start = time.perf_counter()
            response = await client.command(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % modseq)
            times.append(time.perf_counter() - start)
            changed = sorted(int(_UID.search(line).group(1)) for line in response.untagged)
            expect(changed == stored, "CHANGEDSINCE: not exactly the stored messages")
        figures.append(
            Figure(
                f"flag resync CHANGEDSINCE ({len(stored)} changed)",
                statistics.median(times) * 1e3,
                "ms",
            )
        )
    else:
        run.target.notes.append("no CONDSTORE: CHANGEDSINCE not measured")
    await client.logout()
    return figures


async def store_all(run: Run) -> list[Figure]:
    """STORE on every message, checked with SEARCH, then undone."""
    client = await run.client()
    await client.command(b"SELECT INBOX")
    start = time.perf_counter()
    await client.command(b"UID STORE 1:* +FLAGS.SILENT (\\Answered)")
    elapsed = time.perf_counter() - start
    answered = search_uids(await client.command(b"UID SEARCH ANSWERED"))
    expect(len(answered) == run.settings.messages, "STORE all: not every message \\Answered")
    await client.command(b"UID STORE 1:* -FLAGS.SILENT (\\Answered)")
    await client.logout()
    return [Figure(f"STORE all ({run.settings.messages} msgs)", elapsed * 1e3, "ms")]


async def searches(run: Run) -> list[Figure]:
    """Each planted search, the median of three runs, checked against its answer."""
    settings = run.settings
    client = await run.client()
    await client.command(b"SELECT INBOX")
    figures = []
    for search in corpus.planted_searches(settings.messages):
        expected = {run.uid_base + 1 + i for i in range(settings.messages) if search.matches(i)}
        times = []
        for _ in range(3):
            start = time.perf_counter()
            response = await client.command(b"UID SEARCH " + search.criteria)
            times.append(time.perf_counter() - start)
            found = search_uids(response)
            expect(
                found == expected,
                f"SEARCH {search.name}: {len(found)} found, {len(expected)} expected,"
                f" {len(found - expected)} wrong, {len(expected - found)} missing",
            )
        figures.append(
            Figure(
                f"SEARCH {search.name} ({len(expected)} hits)", statistics.median(times) * 1e3, "ms"
            )
        )
    await client.logout()
    return figures


async def body_download(run: Run) -> list[Figure]:
    """Every message's full bytes, as an offline-sync client downloads them; each
    body is compared (CRC-32) with what was appended."""
    count = min(run.settings.download_messages, run.settings.messages)
    client = await run.client()
    await client.command(b"SELECT INBOX")
    received: dict[int, tuple[int, int]] = {}

    def on_fetch(line: bytes) -> None:
        uid = int(_UID.search(line).group(1))
        literal = line.index(b"}\r\n") + 3
        size = int(line[line.rindex(b"{", 0, literal) + 1 : literal - 3])
        received[uid] = (size, zlib.crc32(line[literal : literal + size]))

    start = time.perf_counter()
    await client.command(
        b"UID FETCH %d:%d (UID BODY.PEEK[])" % (run.uid_base + 1, run.uid_base + count), on_fetch
    )
    elapsed = time.perf_counter() - start
    expect(len(received) == count, f"body download: {len(received)} of {count} messages")
    for uid, (size, checksum) in received.items():
        i = run.index(uid)
        expect(size == run.sizes[i] and checksum == run.checksums[i], f"body download: UID {uid}")
    total = sum(run.sizes[:count])
    await client.logout()
    return [
        Figure(f"body download ({count} msgs)", total / elapsed / 1e6, "MB/s", True),
    ]


async def copy_move(run: Run) -> list[Figure]:
    """COPY of a run of messages to another mailbox, then MOVE of all of them on."""
    count = min(run.settings.copy_messages, run.settings.messages)
    client = await run.client()
    for mailbox in (COPY_MAILBOX, MOVE_MAILBOX):
        await client.command(b"CREATE " + quoted(mailbox))
    await client.command(b"SELECT INBOX")
    start = time.perf_counter()
    await client.command(
        b"UID COPY %d:%d " % (run.uid_base + 1, run.uid_base + count) + quoted(COPY_MAILBOX)
    )
    copy_time = time.perf_counter() - start
    await client.command(b"SELECT " + quoted(COPY_MAILBOX))
    start = time.perf_counter()
    await client.command(b"UID MOVE 1:* " + quoted(MOVE_MAILBOX))
    move_time = time.perf_counter() - start
    await client.command(b"UNSELECT")
    expect(await _status_messages(client, COPY_MAILBOX) == 0, "MOVE left messages behind")
    expect(await _status_messages(client, MOVE_MAILBOX) == count, "MOVE lost messages")
    await client.logout()
    return [
        Figure(f"COPY {count} msgs", copy_time * 1e3, "ms"),
        Figure(f"MOVE {count} msgs", move_time * 1e3, "ms"),
    ]


async def idle_fan_out(run: Run) -> list[Figure]:
    """N connections IDLE on one mailbox; one APPEND; how long until each has seen
    EXISTS, and what each idling connection costs the server in memory.

    Idlers log in with SCRAM-SHA-256 when the server offers it (a client caching its
    salted password costs the server a few HMACs, not a password hash: 10,000 argon2id
    LOGINs would take most of an hour here).  While they wait, each idler's socket is
    read by an :class:`_ExistsWatcher`, which stamps the arrival time in the callback
    that receives the bytes: the client's own processing stays out of the figure."""
    settings = run.settings
    setup = await run.client()
    await setup.command(b"CREATE " + quoted(IDLE_MAILBOX))
    memory_before = run.target.memory_kib()
    use_scram = await _offers_scram(run)
    gate = asyncio.Semaphore(IDLE_LOGINS_IN_FLIGHT)

    countdown = _Countdown(settings.idlers)

    async def start_idler() -> _ExistsWatcher:
        async with gate:
            client = await (run.scram_client() if use_scram else run.client())
            await client.command(b"SELECT " + quoted(IDLE_MAILBOX))
            await client.send(b"IDLE")
            line = await client.read_response()
            if not line.startswith(b"+"):
                raise WrongAnswer(f"IDLE: {line!r}")
            return _ExistsWatcher.take_over(client, countdown)

    idlers = await asyncio.gather(*(start_idler() for _ in range(settings.idlers)))
    await asyncio.sleep(1.0)  # let the server settle before measuring memory
    memory_idle = run.target.memory_kib()
    cpu_before = time.process_time()
    start = time.perf_counter()
    await setup.command(
        b"APPEND " + quoted(IDLE_MAILBOX) + b" " + literal_plus(corpus.generate(0, 1, 7))
    )
    try:
        await asyncio.wait_for(countdown.everyone, IDLE_WAIT_SECONDS)
    except TimeoutError:
        missing = sum(idler.arrived is None for idler in idlers)
        raise WrongAnswer(
            f"IDLE: {missing} idlers never saw EXISTS within {IDLE_WAIT_SECONDS} s"
        ) from None
    finally:
        for idler in idlers:
            idler.stop()
    client_cpu = time.process_time() - cpu_before
    latencies = [(idler.arrived - start) * 1e3 for idler in idlers if idler.arrived is not None]
    await setup.logout()
    figures = [
        Figure(f"IDLE {settings.idlers}: EXISTS p50", percentile(latencies, 0.5), "ms"),
        Figure(f"IDLE {settings.idlers}: EXISTS p99", percentile(latencies, 0.99), "ms"),
        Figure(f"IDLE {settings.idlers}: EXISTS max", max(latencies), "ms"),
        Figure(f"IDLE {settings.idlers}: benchmark client CPU", client_cpu * 1e3, "ms"),
    ]
    if memory_before is not None and memory_idle is not None:
        per_idler = (memory_idle - memory_before) / settings.idlers
        figures.append(Figure(f"IDLE {settings.idlers}: server memory per idler", per_idler, "KiB"))
    return figures


IDLE_LOGINS_IN_FLIGHT = 50
IDLE_WAIT_SECONDS = 60


async def _offers_scram(run: Run) -> bool:
    client = await ImapClient.connect(run.target.host, run.target.imap_port)
    await client.ensure_capabilities()
    await client.logout()
    return b"AUTH=SCRAM-SHA-256" in client.capabilities


class _Countdown:
    """The idlers yet to see ``* 1 EXISTS``: one future for all of them (a future each,
    gathered, is client CPU spent while other idlers' bytes wait to be stamped)."""

    def __init__(self, idlers: int) -> None:
        self.remaining = idlers
        self.everyone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def arrived(self) -> None:
        self.remaining -= 1
        if not self.remaining and not self.everyone.done():
            self.everyone.set_result(None)

    def lost(self) -> None:
        if not self.everyone.done():
            self.everyone.set_exception(ImapError("IDLE: connection lost"))


class _ExistsWatcher(asyncio.Protocol):
    """Reads an idling connection in place of its stream: the moment ``* 1 EXISTS``
    arrives is recorded in the transport's callback, before any other work."""

    def __init__(self, client: ImapClient, buffered: bytes, countdown: _Countdown) -> None:
        # Holding the client keeps its StreamWriter alive: collecting it would close
        # the connection.
        self.client = client
        self.transport: asyncio.Transport = client.writer.transport  # type: ignore[assignment]
        self.arrived: float | None = None
        self._countdown = countdown
        self._received = buffered

    @classmethod
    def take_over(cls, client: ImapClient, countdown: _Countdown) -> _ExistsWatcher:
        # Nothing is buffered after the continuation in practice; keep it if it is.
        buffered = bytes(client.reader._buffer)  # noqa: SLF001 (no public peek)
        watcher = cls(client, buffered, countdown)
        watcher.transport.set_protocol(watcher)
        return watcher

    def data_received(self, data: bytes) -> None:
        if self.arrived is not None:
            return
        now = time.perf_counter()
        self._received += data
        if _EXISTS_ONE.search(self._received):
            self.arrived = now
            self._countdown.arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.arrived is None:
            self._countdown.lost()

    def stop(self) -> None:
        """End IDLE and the session without waiting for answers."""
        if not self.transport.is_closing():
            self.transport.write(b"DONE\r\nz LOGOUT\r\n")
            self.transport.close()


_EXISTS_ONE = re.compile(rb"(?:^|\r\n)\* 1 EXISTS\r\n")


async def mixed_load(run: Run) -> list[Figure]:
    """Many clients on the large INBOX at once: one keeps appending, the others list
    headers, read bodies, set flags and check for unseen mail.  Every answer is
    checked; latency is per command."""
    settings = run.settings
    read_latencies: list[float] = []
    write_latencies: list[float] = []
    count = settings.messages
    # Everyone logs in first: the clock measures the load, not password hashing.
    clients = await asyncio.gather(*(run.client() for _ in range(settings.mixed_clients)))
    deadline = time.perf_counter() + settings.mixed_seconds

    async def writer(client: ImapClient) -> None:
        i = count
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await client.command(b"APPEND INBOX " + literal_plus(corpus.generate(i, count, 99)))
            write_latencies.append(time.perf_counter() - start)
            i += 1

    async def reader(client: ImapClient, number: int) -> None:
        rng = random.Random(settings.seed + number)
        await client.command(b"SELECT INBOX")
        while time.perf_counter() < deadline:
            kind = rng.random()
            start = time.perf_counter()
            if kind < 0.4:
                first = rng.randrange(count - 50) if count > 50 else 0
                uids = b"%d:%d" % (run.uid_base + first + 1, run.uid_base + min(first + 50, count))
                response = await client.command(
                    b"UID FETCH " + uids + b" (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
                )
                fetched = [line for line in response.untagged if b"BODY[HEADER" in line]
                expect(len(fetched) == min(50, count), "mixed: header fetch count")
            elif kind < 0.7:
                i = rng.randrange(count)
                response = await client.command(
                    b"UID FETCH %d BODY.PEEK[]" % (run.uid_base + i + 1)
                )
                body = next(line for line in response.untagged if b"BODY[]" in line)
                expect(b"{%d}\r\n" % run.sizes[i] in body, "mixed: body size")
            elif kind < 0.85:
                uid = run.uid_base + rng.randrange(count) + 1
                await client.command(b"UID STORE %d +FLAGS.SILENT (\\Flagged)" % uid)
            else:
                response = await client.command(b"UID SEARCH UNSEEN")
                expect(bool(search_uids(response)), "mixed: UNSEEN found nothing")
            read_latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(
        writer(clients[0]), *(reader(client, n) for n, client in enumerate(clients[1:]))
    )
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(client.logout() for client in clients))
    everything = read_latencies + write_latencies
    label = f"mixed {settings.mixed_clients} clients"
    return [
        Figure(f"{label}: throughput", len(everything) / elapsed, "cmds/s", True),
        Figure(f"{label}: p50", percentile(everything, 0.5) * 1e3, "ms"),
        Figure(f"{label}: p99", percentile(everything, 0.99) * 1e3, "ms"),
        Figure(f"{label}: non-APPEND p99", percentile(read_latencies, 0.99) * 1e3, "ms"),
        Figure(f"{label}: APPEND p99", percentile(write_latencies, 0.99) * 1e3, "ms"),
    ]


SCENARIOS: dict[str, Scenario] = {
    "login": login_rate,
    "append": append,
    "lmtp": lmtp_delivery,
    "select": select,
    "first-sync": first_sync,
    "headers": header_fetch,
    "flags": flag_resync,
    "store-all": store_all,
    "search": searches,
    "download": body_download,
    "copy-move": copy_move,
    "idle": idle_fan_out,
    "mixed": mixed_load,
}
