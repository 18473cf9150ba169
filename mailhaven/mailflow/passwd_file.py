"""Accounts from a Dovecot passwd-file (``mailhaven user import-passwd FILE``).

Format (Dovecot's passwd-file documentation): ``user:password:uid:gid:gecos:home:
shell:extra_fields``, only the first two used here; ``#`` starts a comment line.
The password is ``{SCHEME}hash``.  Hashes are kept as they are (users keep their
passwords) and replaced by argon2id at the first successful login; PLAIN passwords
are hashed with argon2id right away, so no cleartext is ever stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailhaven import dovecot_hashes
from mailhaven.passwords import hash_password


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    password_hash: str  # what the account will store


@dataclass(frozen=True, slots=True)
class BadLine:
    line_number: int
    name: str
    reason: str


def read_passwd_file(path: Path) -> Iterator[PasswdEntry | BadLine]:
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        password = rest.split(":", 1)[0]
        if not name or not password:
            yield BadLine(number, name, "no user name or no password")
            continue
        try:
            yield PasswdEntry(name, stored_hash(password))
        except dovecot_hashes.UnsupportedScheme as error:
            yield BadLine(number, name, str(error))


def stored_hash(password: str) -> str:
    """What to store for a passwd-file password field."""
    dovecot_hashes.check_supported(password)
    scheme_and_data = dovecot_hashes.split_scheme(password)
    assert scheme_and_data is not None, "check_supported accepted it"
    scheme, data = scheme_and_data
    if scheme in dovecot_hashes.PLAIN_SCHEMES:
        return hash_password(data)
    if scheme in dovecot_hashes.ARGON2_SCHEMES:
        return data  # argon2-cffi's own encoding already
    return password
