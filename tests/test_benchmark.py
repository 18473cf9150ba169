"""The benchmark's own correctness (benchmarks/): its corpus is deterministic and its
planted answers are what a MIME decoder finds, and its scenarios, run against a
real server on a small corpus, accept that server's answers.  No timings here."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import corpus
from benchmarks.scenarios import SCENARIOS, Run, Settings
from benchmarks.servers import Account, Target
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


def test_every_scenario_accepts_a_correct_server(tmp_path):
    server = ServerThread(tmp_path).start()
    accounts = [Account("bench", PASSWORD), Account("bench2", PASSWORD)]
    for account in accounts:
        server.add_user(account.user)
    target = Target("mailhaven", "127.0.0.1", server.imap_port, None, accounts)
    settings = Settings(
        messages=COUNT // 2,
        seed=3,
        lmtp_messages=0,
        login_clients=2,
        logins_per_client=1,
        idlers=2,
        mixed_clients=2,
        mixed_seconds=0.5,
        download_messages=COUNT // 2,
        copy_messages=20,
        single_stores=5,
    )
    run = Run(target, settings)
    try:
        for name, scenario in SCENARIOS.items():
            if name == "lmtp":
                continue  # this server has no LMTP listener
            figures = asyncio.run(scenario(run))
            assert figures, name
    finally:
        server.stop()
