"""Access tokens: JWTs signed with HS256 and RECPLAY_SECRET_KEY. Used by the API and the CLI alike.

A *business token* (``sub`` = business_id) goes in the Authorization header. Its ``scope`` claim says what it
may do: ``play`` (list, status, fetch, stream, events, peaks: what the web player needs) or ``manage`` (that,
and register and delete). A token without the claim has every right: it is for back ends, which mint their own;
a token handed to a browser should say ``play``. A scope other than these two grants nothing.

A *stream token* (``typ`` = "stream", plus ``call_sid``) is short-lived, valid for one recording, and is the
only token a query string may carry, so a business token never lands in an access log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import jwt

from tasks.errors import AccessDenied, Forbidden
from tasks.ids import is_valid_id
from tasks.settings import Settings

ALGORITHM = "HS256"
STREAM = "stream"
#: The scopes a business token may carry; MANAGE includes everything PLAY allows.
PLAY, MANAGE = "play", "manage"
SCOPES = (PLAY, MANAGE)


@dataclass(frozen=True)
class BusinessAccess:
    """Who a business token speaks for, and with which scope (None: no claim, every right)."""

    business_id: str
    scope: str | None

    def allows(self, needed: str) -> bool:
        """Whether the token grants ``needed`` (PLAY or MANAGE)."""
        if self.scope is None or self.scope == MANAGE:
            return True
        return self.scope == PLAY and needed == PLAY

    def require(self, needed: str) -> str:
        """The business_id, if the token grants ``needed``.

        Raises:
            Forbidden: the token's scope does not grant it.
        """
        if not self.allows(needed):
            raise Forbidden(f"a token with scope {self.scope!r} cannot do this (it needs {needed!r})")
        return self.business_id


def mint_token(settings: Settings, business_id: str, ttl_seconds: int = 3600, scope: str | None = None) -> str:
    """A business token; ``scope`` PLAY or MANAGE, or None for a token with every right (back ends only)."""
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    now = int(time.time())
    payload: dict[str, object] = {"sub": business_id, "iat": now, "exp": now + ttl_seconds}
    if scope is not None:
        payload["scope"] = scope
    return jwt.encode(payload, settings.signing_key(), algorithm=ALGORITHM)


def mint_stream_token(settings: Settings, business_id: str, call_sid: str) -> str:
    now = int(time.time())
    payload = {"sub": business_id, "call_sid": call_sid, "typ": STREAM, "iat": now,
               "exp": now + settings.stream_token_seconds}
    return jwt.encode(payload, settings.signing_key(), algorithm=ALGORITHM)


@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> Mapping[str, object]:
    """The claims of a token whose signature and claims hold now. Kept (a player sends the same token with
    every request; checking the signature was a tenth of the API's CPU): the caller checks the expiry again on
    each use. A token that does not hold raises, and nothing is kept of it."""
    claims: dict[str, object] = jwt.decode(token, secret, algorithms=[ALGORITHM],
                                           options={"require": ["sub", "exp"]})
    if not is_valid_id(claims.get("sub")):
        raise AccessDenied("token subject is not a valid business_id")
    return MappingProxyType(claims)


def _decode(settings: Settings, token: str) -> Mapping[str, object]:
    try:
        claims = _verified(settings.signing_key(), token)
    except jwt.ExpiredSignatureError as exc:
        raise AccessDenied("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AccessDenied("invalid token") from exc
    expires = claims["exp"]
    if not isinstance(expires, int | float) or expires <= time.time():  # as PyJWT: expired at exp itself
        raise AccessDenied("token expired")
    return claims


def verify_business_access(settings: Settings, token: str) -> BusinessAccess:
    """The business a business token names, and its scope.

    Raises:
        AccessDenied: missing, malformed, forged, expired, or a stream token.
    """
    claims = _decode(settings, token)
    if claims.get("typ") not in (None, "access"):
        raise AccessDenied("a stream token is not a business token")
    scope = claims.get("scope")
    # An unknown scope (or one that is not a string) grants nothing: BusinessAccess.allows refuses it all.
    return BusinessAccess(str(claims["sub"]), scope if scope is None or isinstance(scope, str) else repr(scope))


def verify_business_token(settings: Settings, token: str) -> str:
    """The business_id a business token names, whatever its scope.

    Raises:
        AccessDenied: missing, malformed, forged, expired, or a stream token.
    """
    return verify_business_access(settings, token).business_id


def verify_stream_token(settings: Settings, token: str, call_sid: str) -> str:
    """The business_id of a stream token valid for ``call_sid``.

    Raises:
        AccessDenied: not a stream token, or one for another recording.
    """
    claims = _decode(settings, token)
    if claims.get("typ") != STREAM:
        raise AccessDenied("only a stream token may be passed in the query string")
    if claims.get("call_sid") != call_sid:
        raise AccessDenied("stream token is for another recording")
    return str(claims["sub"])
