"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhaven.tls import ensure_self_signed
from tests.support import RawClient, ServerThread


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (not yet created on disk)."""
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed (certificate, key) pair for localhost, generated once per run."""
    return ensure_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """A running server with the account ``alice`` (test modules that need other
    settings define their own ``server``)."""
    running = ServerThread(tmp_path).start()
    running.add_user("alice")
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[RawClient]:
    """A raw connection to ``server``, logged in as ``alice``."""
    raw = server.raw()
    raw.login("alice")
    yield raw
    raw.close()
