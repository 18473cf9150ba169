"""Fixtures for the interoperability suite: a running server with one user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.helpers import USER
from tests.support import ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    running = ServerThread(data_dir).start()
    running.add_user(USER)
    yield running
    running.stop()


@pytest.fixture
def cert_file(server: ServerThread) -> Path:
    """The server's self-signed certificate, for clients that verify TLS."""
    return server.config.tls_dir / "cert.pem"
