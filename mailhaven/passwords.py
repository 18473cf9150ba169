"""Password hashing with argon2id (RFC 9106) via argon2-cffi.

The cost parameters are argon2-cffi's defaults (``argon2.profiles.RFC_9106_LOW_MEMORY``:
3 iterations, 64 MiB, 4 lanes), which take a few tens of milliseconds per
verification.  When the library raises its defaults, :func:`needs_rehash` reports
old hashes so the server can upgrade them at the next successful login.

Hashes imported from a Dovecot passwd-file (``{SHA512-CRYPT}$6$...`` and friends, see
:mod:`mailhaven.dovecot_hashes`) are verified too, and always need a rehash.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error

from mailhaven import dovecot_hashes

_hasher = PasswordHasher()

# A real hash of a password nobody knows: verifying against it costs exactly what a
# real verification costs, so "no such user" and "wrong password" look alike.
_DUMMY_HASH = _hasher.hash("mailhaven: no such user")


def hash_password(password: str) -> str:
    """Return an encoded argon2id hash (salt and parameters included)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when *password* matches; False on a mismatch or a malformed hash."""
    scheme_and_data = dovecot_hashes.split_scheme(stored_hash)
    if scheme_and_data is not None:
        scheme, data = scheme_and_data
        if scheme in dovecot_hashes.ARGON2_SCHEMES:
            return verify_password(data, password)
        return dovecot_hashes.verify(stored_hash, password)
    try:
        return _hasher.verify(stored_hash, password)
    # ValueError covers InvalidHashError and a password that cannot be UTF-8 encoded
    # (lone surrogates); Argon2Error covers mismatches and corrupt parameters.
    except (Argon2Error, ValueError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when *stored_hash* uses weaker parameters than the current defaults.

    A malformed hash also needs replacing, so it answers True rather than raising.
    """
    if dovecot_hashes.is_dovecot_hash(stored_hash):
        return True
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except ValueError:  # includes InvalidHashError
        return True


def verify_dummy(password: str) -> None:
    """Spend the time of one real verification (used when the user does not exist)."""
    verify_password(_DUMMY_HASH, password)
