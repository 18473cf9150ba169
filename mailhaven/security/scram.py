"""SCRAM-SHA-256 (RFC 7677, RFC 5802), server side, without channel binding.

Only the salted keys are stored (RFC 5802 section 3: StoredKey and ServerKey, in the
``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` form of RFC 5803),
next to the argon2id hash; they are derived when a password is set.  Accounts without
keys (created before SCRAM support, or with a password SASLprep refuses) still go
through the whole exchange with made-up keys and fail at the proof, so the client
cannot tell them from a wrong password or a missing user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
ITERATIONS = 10000  # RFC 7677 section 4: at least 4096
SALT_BYTES = 16
NONCE_BYTES = 24
# Keys for unknown users are derived from this, so the same name always gets the
# same salt within one server run.
_FAKE_SECRET = secrets.token_bytes(32)


class ScramError(Exception):
    """A malformed or unacceptable client message (the exchange ends with BAD/NO)."""


@dataclass(frozen=True, slots=True)
class ScramKeys:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def encode(self) -> str:
        b64 = _b64
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.stored_key)}:{b64(self.server_key)}"
        )

    @classmethod
    def decode(cls, text: str) -> ScramKeys:
        try:
            mechanism, parameters, keys = text.split("$")
            iterations, salt = parameters.split(":")
            stored_key, server_key = keys.split(":")
            if mechanism != MECHANISM:
                raise ValueError(mechanism)
            return cls(int(iterations), _unb64(salt), _unb64(stored_key), _unb64(server_key))
        except (ValueError, binascii.Error):
            raise ScramError("unreadable stored SCRAM keys") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored strings profile); ValueError if *text* is prohibited."""
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(char) for char in normalized for check in prohibited):
        raise ValueError("the password contains characters SASLprep prohibits")
    if any(stringprep.in_table_d1(char) for char in normalized) and not _valid_bidi(normalized):
        raise ValueError("the password mixes right-to-left and left-to-right text")
    return normalized


def _valid_bidi(text: str) -> bool:
    """RFC 3454 section 6: text with RandALCat characters must start and end with one
    and contain no LCat character."""
    return (
        not any(stringprep.in_table_d2(char) for char in text)
        and stringprep.in_table_d1(text[0])
        and stringprep.in_table_d1(text[-1])
    )


def derive_keys(
    password: str, salt: bytes | None = None, iterations: int = ITERATIONS
) -> ScramKeys:
    """RFC 5802 section 3: SaltedPassword, then StoredKey and ServerKey."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(
        iterations=iterations,
        salt=salt,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def credentials_for(password: str) -> str | None:
    """The stored form for a new password, or None when SASLprep refuses it."""
    try:
        return derive_keys(password).encode()
    except ValueError:
        return None


def fake_keys(username: str) -> ScramKeys:
    """Stable, unguessable keys for a user who has none: the exchange looks normal
    and fails at the proof."""
    seed = _hmac(_FAKE_SECRET, username.encode("utf-8", "surrogatepass"))
    return ScramKeys(ITERATIONS, seed[:SALT_BYTES], _hmac(seed, b"stored"), _hmac(seed, b"server"))


def _attributes(message: str) -> list[tuple[str, str]]:
    pairs = []
    for item in message.split(","):
        if len(item) < 2 or item[1] != "=" or not item[0].isalpha():
            raise ScramError(f"malformed attribute {item[:20]!r}")
        pairs.append((item[0], item[2:]))
    return pairs


def _saslname(text: str) -> str:
    """RFC 5802 section 5.1: "=2C" is ",", "=3D" is "=", any other "=" is an error."""
    if "=" in text.replace("=2C", "").replace("=3D", ""):
        raise ScramError("invalid escape in the user name")
    return text.replace("=2C", ",").replace("=3D", "=")


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str
    bare: str
    username: str
    authzid: str
    nonce: str


def parse_client_first(data: bytes) -> ClientFirst:
    """``gs2-header client-first-message-bare`` (RFC 5802 section 7)."""
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("the client-first message is not UTF-8") from None
    parts = message.split(",", 2)
    if len(parts) != 3:
        raise ScramError("malformed client-first message")
    flag, authzid_part, bare = parts
    if flag.startswith("p="):
        raise ScramError("channel binding is not supported (use SCRAM-SHA-256)")
    if flag not in ("n", "y"):
        raise ScramError("invalid channel binding flag")
    authzid = ""
    if authzid_part:
        if not authzid_part.startswith("a="):
            raise ScramError("malformed authzid")
        authzid = _saslname(authzid_part[2:])
    attributes = _attributes(bare)
    if attributes[0][0] == "m":
        raise ScramError("mandatory extensions are not supported")
    if len(attributes) < 2 or attributes[0][0] != "n" or attributes[1][0] != "r":
        raise ScramError("the client-first message needs n= and r=")
    username, nonce = _saslname(attributes[0][1]), attributes[1][1]
    if not username or not nonce or not nonce.isprintable() or "," in nonce:
        raise ScramError("empty user name or nonce")
    return ClientFirst(f"{flag},{authzid_part},", bare, username, authzid, nonce)


class ServerExchange:
    """One SCRAM exchange: :meth:`first` gives the server-first message, :meth:`final`
    checks the client proof and gives the server-final message (None on a bad proof)."""

    def __init__(self, client_first: ClientFirst, keys: ScramKeys, server_nonce: str = "") -> None:
        self.client_first = client_first
        self.keys = keys
        self.nonce = client_first.nonce + (
            server_nonce or base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        )
        self.server_first = f"r={self.nonce},s={_b64(keys.salt)},i={keys.iterations}"

    def first(self) -> bytes:
        return self.server_first.encode()

    def final(self, data: bytes) -> bytes | None:
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("the client-final message is not UTF-8") from None
        without_proof, separator, proof_text = message.rpartition(",p=")
        if not separator:
            raise ScramError("the client-final message has no proof")
        attributes = dict(_attributes(without_proof))
        expected_binding = _b64(self.client_first.gs2_header.encode())
        if attributes.get("c") != expected_binding:
            raise ScramError("channel binding data does not match the gs2 header")
        if not hmac.compare_digest(attributes.get("r", "").encode(), self.nonce.encode()):
            raise ScramError("the nonce does not match")
        try:
            proof = _unb64(proof_text)
        except binascii.Error:
            raise ScramError("the proof is not base64") from None
        auth_message = f"{self.client_first.bare},{self.server_first},{without_proof}".encode()
        client_signature = _hmac(self.keys.stored_key, auth_message)
        if len(proof) != len(client_signature):
            return None
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.keys.stored_key):
            return None
        return f"v={_b64(_hmac(self.keys.server_key, auth_message))}".encode()
