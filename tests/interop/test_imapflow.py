"""ImapFlow (Node), which many services use to read mail: list, create, append,
fetch, search, flag, move and IDLE, over implicit TLS with the certificate
verified.  The script is tests/interop/node/imapflow_session.mjs; .ci/run installs
its locked dependencies with ``npm ci``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.interop.helpers import USER, corpus_sample, missing, password, require_program, run
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(60)

NODE_DIR = Path(__file__).parent / "node"


def test_imapflow_session(server: ServerThread, cert_file: Path) -> None:
    node = require_program("node")
    if not (NODE_DIR / "node_modules" / "imapflow").is_dir():
        missing(f"imapflow (run npm ci in {NODE_DIR})")
    message = corpus_sample(1, start=77)[0]
    completed = run(
        [node, NODE_DIR / "imapflow_session.mjs"],
        env={
            "MH_PORT": str(server.imaps_port),
            "MH_USER": USER,
            "MH_PASS": password(),
            "MH_CA": str(cert_file),
            "MH_MESSAGE": str(message),
        },
        timeout=45,
    )
    report = json.loads(completed.stdout)
    assert "IDLE" in report["capabilities"] and "MOVE" in report["capabilities"]
    assert {"INBOX", "Rechnungen", "Rechnungen/Grüße 📬", "Sent"} <= set(report["mailboxes"])
    assert base64.b64decode(report["source"]) == message.read_bytes()
    assert set(report["flags"]) - {"\\Recent"} == {"\\Seen"}
    assert report["search"] == [2]
    assert report["flagged"] == [2]
    assert report["moved"] == {"1": 1}
    assert report["left"] == [1]
    assert report["idle_exists"] == 2
    assert report["target"] == [1]
