"""Who is asking: the business named by a bearer token, or by a stream token in the query string."""

from __future__ import annotations

from flask import current_app, request

from tasks.access import PLAY, verify_business_access, verify_stream_token
from tasks.errors import AccessDenied
from tasks.settings import Settings


def settings() -> Settings:
    found: Settings = current_app.extensions["recplay.settings"]
    return found


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def business_from_header(needs: str = PLAY) -> str:
    """The business_id of the request's bearer token, if its scope grants ``needs`` (PLAY or MANAGE).

    Raises:
        AccessDenied: no usable business token in the Authorization header. A token in the query string is
            never accepted here.
        Forbidden: the token's scope does not grant ``needs``.
    """
    if "token" in request.args and bearer_token() is None:
        raise AccessDenied("a business token is only accepted in the Authorization header")
    token = bearer_token()
    if token is None:
        raise AccessDenied("missing bearer token")
    return verify_business_access(settings(), token).require(needs)


def business_for_stream(call_sid: str) -> str:
    """For the stream endpoint: a bearer business token that may play, or a stream token for this recording in
    ``?token=``."""
    token = bearer_token()
    if token is not None:
        return verify_business_access(settings(), token).require(PLAY)
    query_token = request.args.get("token")
    if not query_token:
        raise AccessDenied("missing bearer token")
    return verify_stream_token(settings(), query_token, call_sid)
