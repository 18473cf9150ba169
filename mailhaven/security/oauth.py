"""OAUTHBEARER (RFC 7628) message parsing and the pluggable token validator.

The validator is named in the configuration (``auth.oauth_validator =
"package.module:function"``).  It is called as ``function(token, user)`` where *user*
is the authorization identity the client sent (or None), and returns the name of the
account the token grants access to, or None when the token is not valid.  It may be a
coroutine function; a plain function runs in a worker thread, since checking a token
often means a network call to the identity provider.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailhaven.config import ConfigError

log = logging.getLogger("mailhaven.auth")

Validator = Callable[[str, str | None], Any]

# RFC 7628 section 3.2.2: the error sent before the final NO.
INVALID_TOKEN_ERROR = json.dumps({"status": "invalid_token", "schemes": "bearer"}).encode()


class OAuthError(Exception):
    """A malformed client message."""


@dataclass(frozen=True, slots=True)
class BearerRequest:
    authzid: str | None
    token: str


def load_validator(name: str) -> Validator | None:
    """The callable *name* ("module:function") refers to; None when unset."""
    if not name:
        return None
    module_name, _, attribute = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"auth.oauth_validator: cannot load {name!r}: {error}") from None
    if not callable(target):
        raise ConfigError(f"auth.oauth_validator: {name!r} is not callable")
    return target


def parse_initial_response(data: bytes) -> BearerRequest:
    """RFC 7628 section 3.1: ``gs2-header %x01 *(kvpair) %x01``, kvpair
    ``key=value %x01``; the token is in ``auth=Bearer <token>``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("the message is not UTF-8") from None
    header, separator, rest = text.partition("\x01")
    if not separator or (not rest.endswith("\x01\x01") and rest != "\x01"):
        raise OAuthError("malformed OAUTHBEARER message")
    flag, _, authzid_part = header.partition(",")
    if flag not in ("n", "y") or not authzid_part.endswith(","):
        raise OAuthError("malformed gs2 header")
    authzid_part = authzid_part[:-1]
    authzid = None
    if authzid_part:
        if not authzid_part.startswith("a="):
            raise OAuthError("malformed authzid")
        authzid = authzid_part[2:].replace("=2C", ",").replace("=3D", "=")
    pairs = dict(item.partition("=")[::2] for item in rest.split("\x01") if item)
    scheme, _, token = pairs.get("auth", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OAuthError("no bearer token in the message")
    return BearerRequest(authzid, token.strip())


async def validate(validator: Validator, request: BearerRequest) -> str | None:
    """Run the validator; any exception it raises counts as an invalid token."""
    try:
        if inspect.iscoroutinefunction(validator):
            result = await validator(request.token, request.authzid)
        else:
            result = await asyncio.to_thread(validator, request.token, request.authzid)
    except Exception:
        log.exception("the OAUTHBEARER validator failed; treating the token as invalid")
        return None
    return result if isinstance(result, str) and result else None
