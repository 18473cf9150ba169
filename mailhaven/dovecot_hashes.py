"""Password hashes imported from a Dovecot passwd-file, verified as Dovecot does.

Dovecot writes a hash as ``{SCHEME}data`` (its "Password schemes" documentation).
Mailhaven keeps such a hash as it is until the user's next successful login, when
:mod:`mailhaven.imap.commands.authentication` replaces it with argon2id.  The crypt
schemes are verified with passlib (the maintained ``libpass`` distribution), bcrypt
through the ``bcrypt`` package, SSHA512 with hashlib; ARGON2ID hashes are already in
the format argon2-cffi reads and are stored without the prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from passlib.hash import bcrypt, md5_crypt, sha256_crypt, sha512_crypt

_PREFIX = re.compile(r"\{([A-Za-z0-9-]+)(?:\.(B64|BASE64|HEX))?\}(.*)", re.DOTALL | re.IGNORECASE)
SHA512_DIGEST_SIZE = 64

_CRYPT_SCHEMES = {
    "SHA512-CRYPT": sha512_crypt,
    "SHA256-CRYPT": sha256_crypt,
    "BLF-CRYPT": bcrypt,
    "MD5-CRYPT": md5_crypt,
}
# Schemes whose hashes argon2-cffi verifies once the "{...}" prefix is removed.
ARGON2_SCHEMES = ("ARGON2ID", "ARGON2I")
PLAIN_SCHEMES = ("PLAIN", "CLEAR", "CLEARTEXT")
SUPPORTED_SCHEMES = (*_CRYPT_SCHEMES, "SSHA512", *ARGON2_SCHEMES, *PLAIN_SCHEMES)


class UnsupportedScheme(ValueError):
    """A ``{SCHEME}`` Mailhaven cannot verify."""


def split_scheme(stored: str) -> tuple[str, str] | None:
    """``("SHA512-CRYPT", "$6$...")`` for a Dovecot-style hash; None when *stored*
    has no ``{SCHEME}`` prefix.  An encoding suffix (``{SSHA512.HEX}``) is decoded
    into base64 so each scheme sees one format."""
    match = _PREFIX.fullmatch(stored)
    if match is None:
        return None
    scheme, encoding, data = match.group(1).upper(), (match.group(2) or "").upper(), match.group(3)
    if encoding == "HEX":
        try:
            data = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        except ValueError:
            data = ""
    return scheme, data


def is_dovecot_hash(stored: str) -> bool:
    return split_scheme(stored) is not None


def check_supported(stored: str) -> None:
    """Raise :class:`UnsupportedScheme` unless :func:`verify` can check *stored*."""
    parts = split_scheme(stored)
    if parts is None or parts[0] not in SUPPORTED_SCHEMES:
        scheme = "none" if parts is None else parts[0]
        raise UnsupportedScheme(f"unsupported password scheme {scheme}")


def verify(stored: str, password: str) -> bool:
    """True when *password* matches the Dovecot-style *stored* hash."""
    parts = split_scheme(stored)
    if parts is None:
        return False
    scheme, data = parts
    secret = password.encode("utf-8", "surrogateescape")
    if scheme in PLAIN_SCHEMES:
        return hmac.compare_digest(data.encode("utf-8", "surrogateescape"), secret)
    if scheme == "SSHA512":
        return _verify_ssha512(data, secret)
    handler = _CRYPT_SCHEMES.get(scheme)
    if handler is None:
        return False
    try:
        return bool(handler.verify(secret, data))
    except (ValueError, TypeError):  # malformed hash, or a password bcrypt refuses
        return False


def _verify_ssha512(data: str, secret: bytes) -> bool:
    """Dovecot SSHA512: base64(SHA-512(password + salt) + salt)."""
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    digest, salt = decoded[:SHA512_DIGEST_SIZE], decoded[SHA512_DIGEST_SIZE:]
    if len(digest) != SHA512_DIGEST_SIZE:
        return False
    return hmac.compare_digest(hashlib.sha512(secret + salt).digest(), digest)
