"""Abuse limits: request rates per business on the recordings API (flask-limiter, counters in Redis).

- Requests are counted per business (the ``sub`` of a valid bearer or stream token); requests without a valid
  token are counted per client address (the real one behind a trusted proxy, see RECPLAY_TRUST_PROXY).
- ``RECPLAY_RATE_LIMIT`` (default ``600/minute``) covers the recordings endpoints; the stream endpoint has its
  own counter and limit, ``RECPLAY_STREAM_RATE_LIMIT`` (default ``3000/minute``), because a player seeking
  through a recording issues many Range requests. Limits use flask-limiter's syntax
  (``"100/second;2000/hour"``); an empty value disables that limit.
- Counters use a sliding window in Redis (``RECPLAY_RATE_LIMIT_STORAGE_URL``, default REDIS_URL), shared by
  every API process. If Redis fails, requests pass (the limits protect the service; they must not stop it).
- Over a limit: 429 ``rate_limited`` with ``Retry-After`` (seconds until the window lets a request through).
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded

from api.auth import bearer_token, settings
from api.errors import error_response
from tasks.access import verify_business_token, verify_stream_token
from tasks.errors import AccessDenied
from tasks.settings import Settings

KEY_PREFIX = "recplay:limits"
STREAM_ENDPOINT = "recordings.stream"


def rate_key() -> str:
    """Whose request this is: ``business:<id>`` for a valid token, else ``address:<client address>``."""
    try:
        token = bearer_token()
        if token is not None:
            return "business:" + verify_business_token(settings(), token)
        query_token = request.args.get("token")
        call_sid = (request.view_args or {}).get("call_sid")
        if query_token and call_sid and request.endpoint == STREAM_ENDPOINT:
            return "business:" + verify_stream_token(settings(), query_token, str(call_sid))
    except AccessDenied:
        pass
    return f"address:{request.remote_addr or 'unknown'}"


def _is_stream() -> bool:
    return request.endpoint == STREAM_ENDPOINT


def _too_many(exc: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions["recplay.limiter"]
    current = limiter.current_limit
    wait = max(1, math.ceil(current.reset_at - time.time())) if current is not None else 1
    response = error_response(429, "rate_limited", f"too many requests: {exc.description}",
                              {"Retry-After": str(wait)})
    return response


def init_limits(app: Flask, blueprint: Blueprint, app_settings: Settings) -> Limiter | None:
    """Install the limits on ``blueprint`` (the recordings API); None when both limits are disabled."""
    if not app_settings.rate_limit and not app_settings.stream_rate_limit:
        return None
    limiter = Limiter(
        rate_key,
        app=app,
        storage_uri=app_settings.rate_limit_storage,
        strategy="sliding-window-counter",
        key_prefix=KEY_PREFIX,
        # flask-limiter's headers would replace the Retry-After of a 202 (poll again in 2 s) with its window.
        headers_enabled=False,
        swallow_errors=True,
    )
    # Shared limits: one counter per business for all the endpoints of a scope.
    if app_settings.rate_limit:
        limiter.shared_limit(lambda: settings().rate_limit, scope="api", exempt_when=_is_stream)(blueprint)
    if app_settings.stream_rate_limit:
        limiter.shared_limit(lambda: settings().stream_rate_limit, scope="stream",
                             exempt_when=lambda: not _is_stream())(blueprint)
    app.extensions["recplay.limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter
