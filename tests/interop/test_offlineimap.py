"""OfflineIMAP: the same two-way Maildir round trip as mbsync, over implicit TLS
with the server's certificate verified, with UTF-8 local folder names
(``utf8foldernames``) and nested folders (``sep = /``).

OfflineIMAP 8.0.0 does not escape quotes or backslashes in the mailbox names it
sends (``SELECT "Spaces and "quotes""``, ``SELECT Back\\slash``), which is
invalid IMAP that the server rightly answers with BAD; those two names are left
out of its folder set and checked with the other clients instead.
"""

from __future__ import annotations

import email.policy
import re
import shutil
from email.parser import BytesParser
from pathlib import Path

import pytest

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

UNESCAPED_BY_OFFLINEIMAP = ('Spaces and "quotes"', "Back\\slash")
FOLDERS = [name for name in TRICKY_NAMES if name not in UNESCAPED_BY_OFFLINEIMAP]


# OfflineIMAP's own message policy (offlineimap/folder/Base.py, "8bit").
OFFLINEIMAP_POLICY = email.policy.default.clone(cte_type="8bit", utf8=True, refold_source="none")


def as_offlineimap_stores(message: bytes) -> bytes:
    """OfflineIMAP parses each message with Python's email package and stores what
    its generator writes (OfflineIMAP/offlineimap3 issue #48): it adds missing
    closing boundaries and can move line breaks.  Both sides are put through the
    same generator and compared without whitespace."""
    parsed = BytesParser(policy=OFFLINEIMAP_POLICY).parsebytes(message)
    return re.sub(rb"\s+", b"", parsed.as_bytes(policy=OFFLINEIMAP_POLICY))


def offlineimaprc(server: ServerThread, cert_file: Path, maildir: Path, metadata: Path) -> str:
    return f"""\
[general]
accounts = mailhaven
metadata = {metadata}

[Account mailhaven]
localrepository = local
remoterepository = remote
utf8foldernames = yes

[Repository local]
type = Maildir
localfolders = {maildir}
sep = /

[Repository remote]
type = IMAP
# OfflineIMAP matches the certificate's DNS names only, not its IP addresses.
remotehost = localhost
remoteport = {server.imaps_port}
remoteuser = {USER}
remotepass = {password()}
ssl = yes
sslcacertfile = {cert_file}
# OfflineIMAP cannot tell a folder renamed on the server from a local folder to
# upload (and would then stop on the new folder's UIDVALIDITY); it is told not to
# create folders on the server, so the renamed folder's old name stays local only.
createfolders = False
"""


def test_two_way_sync_converges(server: ServerThread, cert_file: Path, tmp_path: Path) -> None:
    offlineimap = require_program("offlineimap")
    layout = scenario.MaildirLayout(tmp_path / "Mail", lambda name: name, as_offlineimap_stores)
    config = tmp_path / "offlineimaprc"
    config.write_text(offlineimaprc(server, cert_file, layout.root, tmp_path / "metadata"))
    sync = [offlineimap, "-c", config, "-o", "-u", "basic"]
    inbox = scenario.seed(server, FOLDERS)

    run(sync)
    layout.assert_matches(server_snapshot(server))
    local_inbox = [body for body, _ in maildir_messages(layout.folder("INBOX"))]
    assert sorted(map(as_offlineimap_stores, local_inbox)) == sorted(
        map(as_offlineimap_stores, inbox)
    )

    scenario.change_server(server)
    scenario.change_local(layout)
    run(sync)
    # The renamed folder's old name is kept locally with its messages: nothing is
    # lost, and once the user deletes it the two sides agree.
    stale = layout.folder(scenario.RENAMED_FROM)
    assert len(maildir_messages(stale)) == 2
    shutil.rmtree(stale)
    run(sync)
    converged = server_snapshot(server)
    layout.assert_matches(converged)
    scenario.assert_changes_arrived(converged, inbox)

    run(sync)
    assert server_snapshot(server) == converged
    layout.assert_matches(converged)
