"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhaven.tls import ensure_self_signed


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (not yet created on disk)."""
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed (certificate, key) pair for localhost, generated once per run."""
    return ensure_self_signed(tmp_path_factory.mktemp("tls"))
