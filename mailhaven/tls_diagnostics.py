"""What a failed TLS handshake log line says: the versions the client offered and
why OpenSSL refused.  Certificate and version mismatches are the most common cause
of "IMAP does not work", so the line has to name them plainly.

The client's versions come from its ClientHello (RFC 8446 section 4.1.2), read with
MSG_PEEK before the handshake starts so the TLS layer still sees every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

_RECORD_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SUPPORTED_VERSIONS = 0x002B
_VERSION_NAMES = {
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}
PEEK_BYTES = 16384


async def peek_client_hello(sock: socket.socket | None, timeout: float) -> bytes:
    """The first bytes the client sent, left in the socket; b"" if none arrive in
    *timeout* seconds.  The caller has paused its transport's reading."""
    if sock is None:
        return b""
    loop = asyncio.get_running_loop()
    # A duplicate descriptor: the transport keeps the original registered with the
    # event loop, and the loop refuses a second reader on the same descriptor.
    duplicate = socket.socket(fileno=socket.dup(sock.fileno()))
    duplicate.setblocking(False)
    readable = loop.create_future()
    loop.add_reader(duplicate.fileno(), lambda: readable.done() or readable.set_result(None))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(readable, timeout)
        with contextlib.suppress(BlockingIOError, OSError):
            return duplicate.recv(PEEK_BYTES, socket.MSG_PEEK)
        return b""
    finally:
        loop.remove_reader(duplicate.fileno())
        duplicate.close()


def offered_versions(hello: bytes) -> str:
    """The TLS versions a ClientHello offers: "TLSv1.2,TLSv1.3" from its
    supported_versions extension, "up-to-TLSv1.1" from an older client's
    legacy_version; or a description of what the bytes are instead."""
    if not hello:
        return "none (nothing received)"
    if hello[0] != _RECORD_HANDSHAKE:
        if hello[:1].isalpha() or hello[:1].isdigit():
            return "none (plaintext, not TLS: a client without TLS on the TLS port?)"
        return "none (not a TLS handshake)"
    try:
        return _versions_of(hello)
    except (IndexError, ValueError):
        return "unknown (truncated ClientHello)"


def _versions_of(hello: bytes) -> str:
    if hello[5] != _CLIENT_HELLO:
        raise ValueError("not a ClientHello")
    position = 9  # record header (5), handshake type (1), length (3)
    legacy_version = int.from_bytes(hello[position : position + 2], "big")
    position += 2 + 32  # version, random
    position += 1 + hello[position]  # session id
    position += 2 + int.from_bytes(hello[position : position + 2], "big")  # cipher suites
    position += 1 + hello[position]  # compression methods
    versions: list[int] = []
    if position + 2 <= len(hello):
        end = position + 2 + int.from_bytes(hello[position : position + 2], "big")
        position += 2
        while position + 4 <= min(end, len(hello)):
            kind = int.from_bytes(hello[position : position + 2], "big")
            length = int.from_bytes(hello[position + 2 : position + 4], "big")
            body = hello[position + 4 : position + 4 + length]
            if kind == _SUPPORTED_VERSIONS and body:
                versions = [
                    int.from_bytes(body[i : i + 2], "big") for i in range(1, 1 + body[0], 2)
                ]
            position += 4 + length
    if not versions:
        # No supported_versions extension: legacy_version is the highest it speaks.
        return f"up-to-{_VERSION_NAMES.get(legacy_version, 'unknown')}"
    names = sorted({_VERSION_NAMES[v] for v in versions if v in _VERSION_NAMES})
    return ",".join(names) if names else "unknown"


def failure_reason(error: BaseException) -> str:
    """OpenSSL's short reason ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_UNKNOWN_CA", ...)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"CERTIFICATE_VERIFY_FAILED {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason
    if isinstance(error, TimeoutError):
        return "TIMEOUT (no complete handshake)"
    return type(error).__name__ + (f" {error}" if str(error) else "")
