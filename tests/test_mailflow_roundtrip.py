"""Import, export and re-import of the 636-message corpus: byte-identical messages
with the same flags, through mbox and through Maildir."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest

from mailhaven.cli import main
from mailhaven.mailflow.mbox import mbox_entry
from tests.mailflow_support import FLAG_CYCLE, corpus_files, snapshot

PASSWORD_ARGS = ["--password-stdin"]


def add_user(data_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert main(["--data-dir", str(data_dir), "user", "add", name, *PASSWORD_ARGS]) == 0


def write_corpus_mbox(path: Path) -> list[tuple[bytes, frozenset[str]]]:
    base = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.UTC)
    expected = []
    with path.open("wb") as stream:
        for index, file in enumerate(corpus_files()):
            raw = file.read_bytes()
            flags = FLAG_CYCLE[index % len(FLAG_CYCLE)]
            date = base + datetime.timedelta(minutes=index)
            stream.write(mbox_entry(raw, flags, date))
            expected.append((raw, flags))
    return expected


def test_corpus_mbox_and_maildir_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    for user in ("first", "second", "third"):
        add_user(data_dir, user, monkeypatch)
    source = tmp_path / "corpus.mbox"
    expected = write_corpus_mbox(source)
    args = ["--data-dir", str(data_dir)]

    started = time.perf_counter()
    assert main([*args, "import", "first", str(source)]) == 0
    import_seconds = time.perf_counter() - started
    first, _ = snapshot(data_dir, "first")
    stored = [(raw, flags) for _, raw, flags, _ in first["INBOX"]]
    # The corpus messages themselves, except that Status/X-Status headers some of
    # them carry became flags (see below): compare where they have none.
    assert len(stored) == len(expected) == 636
    for (raw, flags), (original, original_flags) in zip(stored, expected, strict=True):
        if b"\nStatus:" not in original and b"\nX-Status:" not in original:
            assert raw == original
            assert flags == original_flags

    started = time.perf_counter()
    assert main([*args, "export", "first", str(tmp_path / "mbox-out"), "--format", "mbox"]) == 0
    export_seconds = time.perf_counter() - started
    assert main([*args, "import", "second", str(tmp_path / "mbox-out")]) == 0
    second, _ = snapshot(data_dir, "second")
    assert strip_uids(second["INBOX"]) == strip_uids(first["INBOX"])

    assert main([*args, "export", "first", str(tmp_path / "md"), "--format", "maildir"]) == 0
    assert main([*args, "import", "third", str(tmp_path / "md")]) == 0
    third, third_validity = snapshot(data_dir, "third")
    _, first_validity = snapshot(data_dir, "first")
    # Maildir keeps UIDs and UIDVALIDITY too (dovecot-uidlist), and internal dates.
    assert third["INBOX"] == first["INBOX"]
    assert third_validity["INBOX"] == first_validity["INBOX"]

    output = capsys.readouterr().err
    assert "imported 636 messages" in output and "skipped 0" in output
    megabytes = sum(len(raw) for raw, _ in expected) / 1e6
    rate = f"{636 / import_seconds:.0f} msg/s ({megabytes / import_seconds:.1f} MB/s)"
    print(f"\ncorpus: import {rate}, export {636 / export_seconds:.0f} msg/s")


def strip_uids(messages):  # noqa: ANN001, ANN201
    return [(raw, flags, date) for _, raw, flags, date in messages]
