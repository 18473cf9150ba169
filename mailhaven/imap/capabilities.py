"""What the server advertises in CAPABILITY (RFC 9051 section 6.1.1).

Only extensions that fully work are listed.  Before authentication the list depends
on whether a password may be sent: without TLS (RFC 9051 section 11.1) the server
advertises STARTTLS and LOGINDISABLED and no AUTH= mechanisms.
"""

from __future__ import annotations

from mailhaven.imap.session import Session, State

# Extensions available once authenticated; each is implemented by the handler named.
_AUTHENTICATED = (
    "ENABLE",  # commands/any_state.py (RFC 5161)
    "IDLE",  # commands/idle.py (RFC 2177)
    "NAMESPACE",  # commands/mailboxes.py (RFC 2342)
    "UNSELECT",  # commands/selected_state.py (RFC 3691)
    "UIDPLUS",  # APPENDUID/COPYUID/UID EXPUNGE (RFC 4315)
    "MOVE",  # commands/copy_move.py (RFC 6851)
    "CHILDREN",  # commands/listing.py (RFC 3348)
    "SPECIAL-USE",  # commands/listing.py (RFC 6154)
    "CREATE-SPECIAL-USE",  # commands/mailboxes.py (RFC 6154 section 3)
    "LIST-EXTENDED",  # commands/listing.py (RFC 5258)
    "LIST-STATUS",  # commands/listing.py (RFC 5819)
    "ESEARCH",  # commands/search.py (RFC 4731)
    "SEARCHRES",  # commands/search.py (RFC 5182)
    "WITHIN",  # imap/search.py OLDER/YOUNGER (RFC 5032)
    "MULTIAPPEND",  # commands/append.py (RFC 3502)
    "BINARY",  # commands/fetch.py (RFC 3516)
    "STATUS=SIZE",  # commands/mailboxes.py (RFC 8438)
    "COMPRESS=DEFLATE",  # commands/compress.py, deflate.py (RFC 4978)
    "CONDSTORE",  # imap/condstore.py and the commands it names (RFC 7162 section 3.1)
    "QRESYNC",  # imap/condstore.py, imap/selected.py VANISHED (RFC 7162 section 3.2)
    "QUOTA",  # commands/quota.py (RFC 9208)
    "QUOTA=RES-STORAGE",  # storage/sqlite_quota.py, STATUS DELETED-STORAGE
    "QUOTA=RES-MESSAGE",  # storage/sqlite_quota.py, STATUS DELETED
    "SORT",  # commands/sort_thread.py (RFC 5256)
    "SORT=DISPLAY",  # commands/sort_thread.py (RFC 5957)
    "THREAD=ORDEREDSUBJECT",  # imap/threading.py (RFC 5256)
    "THREAD=REFERENCES",  # imap/threading.py (RFC 5256)
    "OBJECTID",  # MAILBOXID, EMAILID, THREADID NIL (RFC 8474)
    "SAVEDATE",  # commands/fetch.py, imap/search.py (RFC 8514)
    "PREVIEW",  # mime/preview.py, commands/fetch.py (RFC 8970)
)

# Extensions that affect the wire syntax or are needed before login.
_ALWAYS = ("SASL-IR", "ID", "LITERAL+")


def capabilities(session: Session) -> list[str]:
    names = ["IMAP4rev1", "IMAP4rev2"]
    if session.state is State.NOT_AUTHENTICATED:
        if session.channel.tls_available and not session.channel.secure:
            names.append("STARTTLS")
        if password_login_allowed(session):
            names.extend(f"AUTH={mechanism}" for mechanism in sasl_mechanisms(session))
        else:
            names.append("LOGINDISABLED")
        names.extend(_ALWAYS)
        return names
    names.extend(_ALWAYS)
    names.extend(_AUTHENTICATED)
    names.append(f"APPENDLIMIT={session.config.limits.max_literal_size}")
    if session.user is not None and session.user.name in session.config.quota.administrators:
        names.append("QUOTASET")  # RFC 9208 section 4.1.3: only they may SETQUOTA
    return names


def sasl_mechanisms(session: Session) -> list[str]:
    """What AUTHENTICATE accepts (commands/authentication.py): PLAIN (RFC 4616), LOGIN,
    SCRAM-SHA-256 (RFC 7677), and OAUTHBEARER (RFC 7628) when a validator is set."""
    names = ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    if session.context.oauth_validator is not None:
        names.append("OAUTHBEARER")
    return names


def password_login_allowed(session: Session) -> bool:
    """RFC 9051 section 11.1 / 6.2.3: no cleartext passwords without TLS, except
    from loopback when configuration allows it."""
    channel = session.channel
    if channel.secure:
        return True
    return session.config.auth.allow_plaintext_on_loopback and channel.peer_is_loopback


def capability_code(session: Session) -> bytes:
    return b"CAPABILITY " + " ".join(capabilities(session)).encode("ascii")
