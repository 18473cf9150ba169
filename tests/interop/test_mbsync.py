"""isync's mbsync: two-way sync of several folders into a local Maildir, over
implicit TLS with the server's certificate verified.

mbsync 1.4 keeps IMAP4rev1 modified UTF-7 names as the local folder names, and
stores messages with LF line ends; both are mbsync's documented behaviour.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailhaven.codec.mailbox_names import encode_mutf7
from tests.interop import sync_scenario as scenario
from tests.interop.helpers import (
    TRICKY_NAMES,
    USER,
    maildir_messages,
    password,
    require_program,
    run,
    server_snapshot,
)
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(120)


def mbsyncrc(server: ServerThread, cert_file: Path, maildir: Path) -> str:
    return f"""\
IMAPAccount mailhaven
Host 127.0.0.1
Port {server.imaps_port}
User {USER}
Pass "{password()}"
SSLType IMAPS
CertificateFile {cert_file}

IMAPStore remote
Account mailhaven

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel everything
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
"""


def test_two_way_sync_converges(server: ServerThread, cert_file: Path, tmp_path: Path) -> None:
    mbsync = require_program("mbsync")
    layout = scenario.MaildirLayout(tmp_path / "Mail", lambda name: encode_mutf7(name).decode())
    layout.root.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(mbsyncrc(server, cert_file, layout.root))
    sync = [mbsync, "-c", config, "-a"]
    inbox = scenario.seed(server, TRICKY_NAMES)

    run(sync)
    # Every folder, tricky names included, arrives byte for byte (LF line ends).
    layout.assert_matches(server_snapshot(server))
    local_inbox = sorted(body for body, _ in maildir_messages(layout.folder("INBOX")))
    assert local_inbox == sorted(raw.replace(b"\r\n", b"\n") for raw in inbox)

    scenario.change_server(server)
    scenario.change_local(layout)
    second = run(sync)
    # mbsync sees a rename as a deletion plus a creation, and for safety never
    # deletes a non-empty folder: the old one stays local, with a warning.
    stale = layout.folder(scenario.RENAMED_FROM)
    assert f"near side box {scenario.RENAMED_FROM} is not empty".encode() in second.stderr
    assert len(maildir_messages(stale)) == 2
    # Deleting its cur/ tells mbsync the user deleted it too.
    shutil.rmtree(stale / "cur")
    run(sync)
    converged = server_snapshot(server)
    layout.assert_matches(converged)
    scenario.assert_changes_arrived(converged, inbox)
    assert scenario.RENAMED_FROM not in converged

    # A third sync finds nothing left to do.
    run(sync)
    assert server_snapshot(server) == converged
    layout.assert_matches(converged)
