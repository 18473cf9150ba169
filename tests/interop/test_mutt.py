"""Mutt, driven under tmux (it needs a terminal): open INBOX over implicit TLS,
read one message, flag one, save one to another folder, delete one, then save a
draft (postponed with APPEND to Drafts)."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.interop.helpers import (
    USER,
    append_all,
    imap_session,
    ok,
    password,
    require_program,
)
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(90)

READ, FLAG, SAVE, DELETE = (
    f"Subject: {word}\r\nFrom: x@example.org\r\n"
    f"Date: Mon, 1 Jan 2024 10:0{n}:00 +0000\r\n\r\n{word}\r\n"
    for n, word in enumerate(("read me", "flag me", "save me", "delete me"))
)
KEYS_ON_INBOX = (
    "<display-message><exit><next-entry><flag-message><next-entry>"
    "<save-message>=Archive<enter><next-entry><delete-message><sync-mailbox><quit>"
)


def muttrc(server: ServerThread, cert_file: Path) -> str:
    return f"""\
set folder="imaps://{USER}@127.0.0.1:{server.imaps_port}/"
set imap_pass="{password()}"
set spoolfile="+INBOX"
set postponed="+Drafts"
set record=""
set certificate_file="{cert_file}"
set sort=date
set resolve=no
# Otherwise mutt keeps unread messages it has seen listed with an "Old" keyword.
set mark_old=no
set delete=yes
set confirmappend=no
set move=no
set header_cache=""
set editor="true"
set from="{USER}@example.org"
"""


def screen(tmux: str, session: str) -> str:
    return subprocess.run(
        [tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def wait_until(condition, describe) -> None:  # noqa: ANN001
    """Poll *condition* for up to a minute; on timeout fail showing *describe()*."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"mutt did not get there; its screen:\n{describe()}")
        time.sleep(0.1)


def wait_for_screen(tmux: str, session: str, text: str) -> None:
    wait_until(lambda: text in screen(tmux, session), lambda: screen(tmux, session))


def run_in_tmux(tmux: str, session: str, command: str, done: Path) -> None:
    """Run *command* in a detached tmux session and wait until it has finished."""
    script = f"{command}; echo $? > {shlex.quote(str(done))}"
    subprocess.run(
        [tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", script], check=True
    )
    wait_until(done.exists, lambda: screen(tmux, session))
    assert done.read_text().strip() == "0"


def subjects_and_flags(server: ServerThread, mailbox: str) -> dict[str, set[str]]:
    with imap_session(server) as client:
        ok(client.select(mailbox, readonly=True))
        found = {}
        for item in ok(client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")):
            if isinstance(item, tuple):
                flags = item[0].partition(b"FLAGS (")[2].partition(b")")[0].decode().split()
                subject = item[1].decode().strip().removeprefix("Subject: ")
                found[subject] = set(flags) - {"\\Recent"}
        return found


def test_mutt_read_flag_move_delete_and_draft(
    server: ServerThread, cert_file: Path, tmp_path: Path
) -> None:
    mutt = require_program("mutt")
    tmux = require_program("tmux")
    with imap_session(server) as client:
        append_all(client, "INBOX", [m.encode() for m in (READ, FLAG, SAVE, DELETE)])
    rc = tmp_path / "muttrc"
    rc.write_text(muttrc(server, cert_file))
    session = f"mailhaven-mutt-{tmp_path.name}"
    mutt_command = f"{shlex.quote(mutt)} -n -F {shlex.quote(str(rc))}"

    keys = shlex.quote(f"push {KEYS_ON_INBOX}")
    run_in_tmux(tmux, session, f"{mutt_command} -e {keys}", tmp_path / "inbox.done")
    assert subjects_and_flags(server, "INBOX") == {
        "read me": {"\\Seen"},
        "flag me": {"\\Flagged"},
    }
    assert subjects_and_flags(server, "Archive") == {"save me": set()}

    draft = tmp_path / "draft.eml"
    draft.write_text("To: bob@example.org\nSubject: unfinished\n\nTo be continued.\n")
    # -H asks to confirm To: and Subject: and flushes pushed keys before asking,
    # so the keys are typed into the terminal once each prompt shows.
    done = tmp_path / "draft.done"
    draft_session = session + "-draft"
    script = f"{mutt_command} -H {shlex.quote(str(draft))}; echo $? > {shlex.quote(str(done))}"
    subprocess.run(
        [tmux, "new-session", "-d", "-s", draft_session, "-x", "120", "-y", "40", script],
        check=True,
    )
    for prompt, key in (("To: bob@", "Enter"), ("Subject: unfinished", "Enter"), ("Compose", "P")):
        wait_for_screen(tmux, draft_session, prompt)
        subprocess.run([tmux, "send-keys", "-t", draft_session, key], check=True)
    wait_until(done.exists, lambda: screen(tmux, draft_session))
    drafts = subjects_and_flags(server, "Drafts")
    assert drafts == {"unfinished": {"\\Draft"}} or drafts == {"unfinished": {"\\Draft", "\\Seen"}}
