"""The benchmark's own correctness (benchmarks/): its corpus is deterministic and its
planted answers are what a MIME decoder finds, and its scenarios, run against a
real server on a small corpus, accept that server's answers.  No timings here."""

from __future__ import annotations

import asyncio
import datetime
import zlib

import pytest

from benchmarks import corpus, preload, servers
from benchmarks.client import ImapClient
from benchmarks.scenarios import (
    APPEND_MAILBOX,
    SCENARIOS,
    Run,
    Settings,
    WrongAnswer,
    check_preloaded,
)
from benchmarks.servers import Account, Target
from mailhaven.mailflow import importer, maildir
from mailhaven.mailflow.progress import Report
from mailhaven.mime import analyze
from tests.support import PASSWORD, ServerThread

COUNT = 120


def test_corpus_is_deterministic_and_mixed():
    first = [corpus.generate(i, COUNT, 5) for i in range(COUNT)]
    assert first == [corpus.generate(i, COUNT, 5) for i in range(COUNT)]
    assert first != [corpus.generate(i, COUNT, 6) for i in range(COUNT)]
    assert any(b"multipart/alternative" in raw for raw in first)
    assert any(b"multipart/mixed" in raw for raw in first)
    assert any(b"=?UTF-8?B?" in raw for raw in first)
    assert any(b"In-Reply-To:" in raw for raw in first)
    assert all(b"\n" not in raw.replace(b"\r\n", b"") for raw in first)


@pytest.mark.parametrize(
    ("needle", "planted"),
    [
        (corpus.RARE_BODY_WORD, corpus.has_rare_word),
        (corpus.COMMON_TEXT_WORD, corpus.has_common_word),
        (corpus.NON_ASCII_BODY_WORD, corpus.has_non_ascii_word),
    ],
)
def test_planted_body_words_are_exactly_where_planted(needle, planted):
    for i in range(COUNT):
        text = analyze(corpus.generate(i, COUNT, 1)).body_text.casefold()
        assert (needle.casefold() in text) == planted(i), i


def test_planted_headers_decode_to_their_needles():
    for i in range(COUNT):
        headers = analyze(corpus.generate(i, COUNT, 1)).header_text.casefold()
        assert ("quarterly forecast" in headers) == corpus.has_subject_phrase(i), i
        assert ("wintergreen" in headers) == corpus.is_from_ophelia(i), i


def _settings(*, preloaded: bool = False) -> Settings:
    return Settings(
        messages=COUNT // 2,
        seed=3,
        lmtp_messages=4,
        login_clients=2,
        logins_per_client=1,
        idlers=2,
        mixed_clients=2,
        mixed_seconds=0.5,
        download_messages=COUNT // 2,
        copy_messages=20,
        single_stores=5,
        preloaded=preloaded,
        append_messages=7,
    )


def _figure_names(run: Run, scenarios: list[str]) -> list[str]:
    figures = {}
    for name in scenarios:
        figures[name] = asyncio.run(SCENARIOS[name](run))
        assert figures[name], name
    return [figure.name for found in figures.values() for figure in found]


ACCOUNTS = [Account("bench", PASSWORD), Account("bench2", PASSWORD)]


@pytest.fixture
def bench_server(tmp_path):
    server = ServerThread(tmp_path).start()
    for account in ACCOUNTS:
        server.add_user(account.user)
    yield server
    server.stop()


def test_every_scenario_accepts_a_correct_server(bench_server):
    target = Target("mailhaven", "127.0.0.1", bench_server.imap_port, None, ACCOUNTS)
    target.lmtp_port = bench_server.lmtp_port
    names = _figure_names(Run(target, _settings()), list(SCENARIOS))
    assert "LMTP delivery" in names
    assert "flag resync CHANGEDSINCE (5 changed)" in names


def test_preload_maildir_holds_what_append_stores(tmp_path):
    """Message i: UID i + 1, the corpus bytes (CRLF again once read), \\Seen on three
    of four, the corpus INTERNALDATE; sizes and checksums of the CRLF bytes."""
    written = preload.write_maildir(tmp_path / "Maildir", COUNT, 5)
    (folder,) = maildir.read_maildir(tmp_path / "Maildir")
    assert (folder.name, folder.uidvalidity, folder.uidnext) == (
        "INBOX",
        preload.UIDVALIDITY,
        COUNT + 1,
    )
    messages = list(folder.messages)
    assert [message.uid for message in messages] == list(range(1, COUNT + 1))
    for i, message in enumerate(messages):
        raw = corpus.generate(i, COUNT, 5)
        assert message.raw == raw
        assert message.flags == ({"\\Seen"} if corpus.is_seen(i) else set())
        assert message.internal_date == corpus.internal_date(i, COUNT)
        assert (written.sizes[i], written.checksums[i]) == (len(raw), zlib.crc32(raw))
    assert {message.flags for message in messages} == {frozenset(), frozenset({"\\Seen"})}
    assert messages[0].internal_date.tzinfo == datetime.UTC


def test_every_scenario_accepts_a_preloaded_server(bench_server, tmp_path):
    settings = _settings(preloaded=True)
    written = preload.write_maildir(tmp_path / "Maildir", settings.messages, settings.seed)
    # What `mailhaven import bench PATH` does (servers.mailhaven runs that command).
    user = bench_server.call(bench_server.storage.get_user("bench"))
    folders = maildir.read_maildir(written.path)
    bench_server.call(
        importer.import_folders(bench_server.storage, user, folders, Report("imported"))
    )
    target = Target("mailhaven", "127.0.0.1", bench_server.imap_port, None, ACCOUNTS)
    run = Run(target, settings)
    asyncio.run(check_preloaded(run, written.sizes, written.checksums))
    # The scenarios that read INBOX verify every answer against the corpus.
    names = _figure_names(run, ["append", "select", "first-sync", "flags", "search", "download"])
    assert "SELECT (60 msgs)" in names
    assert "SELECT first (60 msgs)" in names
    assert "APPEND" in names
    status = asyncio.run(_status(bench_server, "(MESSAGES)"))
    assert b"MESSAGES 60" in status["INBOX"]
    assert b"MESSAGES 7" in status[APPEND_MAILBOX]


async def _status(server: ServerThread, items: str) -> dict[str, bytes]:
    client = await ImapClient.login("127.0.0.1", server.imap_port, "bench", PASSWORD)
    status = {}
    for mailbox in ("INBOX", APPEND_MAILBOX):
        response = await client.command(f'STATUS "{mailbox}" {items}'.encode())
        status[mailbox] = b"".join(response.untagged)
    await client.logout()
    return status


def test_check_preloaded_refuses_a_server_without_the_corpus(bench_server):
    target = Target("mailhaven", "127.0.0.1", bench_server.imap_port, None, ACCOUNTS)
    run = Run(target, _settings(preloaded=True))
    with pytest.raises(WrongAnswer, match="preloaded INBOX: 0 messages"):
        asyncio.run(check_preloaded(run, [], []))


def test_started_mailhaven_imports_the_preload_maildir(tmp_path):
    """The benchmark's own `mailhaven serve` with --preload, LMTP listener included."""
    written = preload.write_maildir(tmp_path / "corpus", 5, 1)
    (tmp_path / "server").mkdir()
    with servers.mailhaven(ACCOUNTS[:1], tmp_path / "server", preload=written.path) as target:
        assert target.lmtp_port is not None
        run = Run(target, _settings(preloaded=True))
        run.settings.messages = 5
        asyncio.run(check_preloaded(run, written.sizes, written.checksums))
        figures = asyncio.run(SCENARIOS["first-sync"](run))
    assert figures[0].name.startswith("first sync (5 msgs")


def test_preload_from_a_kept_run_reuses_its_maildir_and_database(tmp_path):
    """--preload-from: the Maildir is checked and described again without rewriting it,
    and the started server takes a copy of the kept database instead of importing."""
    written = preload.write_maildir(tmp_path / "corpus", 5, 1)
    (tmp_path / "kept").mkdir()
    with servers.mailhaven(ACCOUNTS[:1], tmp_path / "kept", preload=written.path):
        pass
    reused = preload.reuse_maildir(written.path, 5, 1)
    assert (reused.sizes, reused.checksums) == (written.sizes, written.checksums)
    with pytest.raises(ValueError, match="does not hold 6 messages"):
        preload.reuse_maildir(written.path, 6, 1)
    kept_database = tmp_path / "kept" / "mailhaven-data" / "mailhaven.db"
    (tmp_path / "again").mkdir()
    with servers.mailhaven(
        ACCOUNTS[:1], tmp_path / "again", preload=reused.path, database=kept_database
    ) as target:
        run = Run(target, _settings(preloaded=True))
        run.settings.messages = 5
        asyncio.run(check_preloaded(run, reused.sizes, reused.checksums))
    assert any("database copied" in note for note in target.notes)
