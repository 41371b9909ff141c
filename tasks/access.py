"""Access tokens: JWTs signed with HS256 and RECPLAY_SECRET_KEY. Used by the API and the CLI alike.

A *business token* (``sub`` = business_id) goes in the Authorization header. A *stream token* (``typ`` =
"stream", plus ``call_sid``) is short-lived, valid for one recording, and is the only token a query string
may carry, so a business token never lands in an access log.
"""

from __future__ import annotations

import time

import jwt

from tasks.errors import AccessDenied
from tasks.ids import is_valid_id
from tasks.settings import Settings

ALGORITHM = "HS256"
STREAM = "stream"


def mint_token(settings: Settings, business_id: str, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    payload = {"sub": business_id, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(payload, settings.signing_key(), algorithm=ALGORITHM)


def mint_stream_token(settings: Settings, business_id: str, call_sid: str) -> str:
    now = int(time.time())
    payload = {"sub": business_id, "call_sid": call_sid, "typ": STREAM, "iat": now,
               "exp": now + settings.stream_token_seconds}
    return jwt.encode(payload, settings.signing_key(), algorithm=ALGORITHM)


def _decode(settings: Settings, token: str) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(
            token, settings.signing_key(), algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AccessDenied("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AccessDenied("invalid token") from exc
    if not is_valid_id(claims.get("sub")):
        raise AccessDenied("token subject is not a valid business_id")
    return claims


def verify_business_token(settings: Settings, token: str) -> str:
    """The business_id a business token names.

    Raises:
        AccessDenied: missing, malformed, forged, expired, or a stream token.
    """
    claims = _decode(settings, token)
    if claims.get("typ") not in (None, "access"):
        raise AccessDenied("a stream token is not a business token")
    return str(claims["sub"])


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
