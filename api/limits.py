"""Abuse limits: request rates per business on the recordings API, counted in Redis.

- Requests are counted per business (the ``sub`` of a valid bearer or stream token); requests without a valid
  token are counted per client address (the real one behind a trusted proxy, see RECPLAY_TRUST_PROXY).
- ``RECPLAY_RATE_LIMIT`` (default ``600/minute``) covers the recordings endpoints; the stream endpoint has its
  own counter and limit, ``RECPLAY_STREAM_RATE_LIMIT`` (default ``3000/minute``), because a player seeking
  through a recording issues many Range requests. A limit is ``N/unit`` or ``N per M units`` (unit: second,
  minute, hour, day, ...), several separated by ``;`` (``"100/second;2000/hour"``: a request must fit all of
  them); an empty value disables that limit. The values are read once, when the app is built.
- Counters are sliding window counters in Redis (``RECPLAY_RATE_LIMIT_STORAGE_URL``, default REDIS_URL), shared
  by every API process: each limit keeps the count of the current and of the previous fixed window, and the
  previous one counts by the part of it a window ending now still covers. One script checks a request against
  every limit of its scope and counts it in all of them only when all let it through, so a refused request
  costs nothing. If Redis fails, requests pass (the limits protect the service; they must not stop it).
- Over a limit: 429 ``rate_limited`` naming the limit, with ``Retry-After`` (seconds until every limit lets a
  request through again).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis
from flask import Blueprint, Flask, Response, request
from limits import parse_many
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from api.auth import bearer_token, settings
from api.errors import error_response
from tasks.access import verify_business_token, verify_stream_token
from tasks.errors import AccessDenied, ConfigError
from tasks.settings import Settings
from tasks.slots.client import DRIVER_INFO, client_for

log = logging.getLogger(__name__)

KEY_PREFIX = "recplay:limits"
STREAM_ENDPOINT = "recordings.stream"
SCRIPT = Path(__file__).with_name("lua") / "request_limits.lua"
# A limiter that waits longer than this on Redis costs more than it protects: the request passes instead.
REDIS_TIMEOUT_SECONDS = 1.0
# While Redis fails, say so once in this long rather than on every request.
WARN_EVERY_SECONDS = 60.0


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


@dataclass(frozen=True)
class Scope:
    """The limits of one counter ("api" or "stream"), parsed once into what the script takes."""

    name: str
    #: Each limit as it reads in a refusal ("5 per 1 minute") and as its key ends ("5/60").
    descriptions: tuple[str, ...]
    key_tails: tuple[str, ...]
    #: amount, window in ms; amount, window in ms; ... (the script's ARGV)
    args: tuple[int, ...]

    @classmethod
    def parse(cls, name: str, variable: str, text: str) -> Scope | None:
        """None for an empty ``text`` (the scope is not limited).

        Raises:
            ConfigError: ``text`` is not a limit.
        """
        if not text:
            return None
        try:
            items = parse_many(text)
        except ValueError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
        args: list[int] = []
        for item in items:
            args += [item.amount, item.get_expiry() * 1000]
        return cls(name, tuple(str(item) for item in items),
                   tuple(f"{item.amount}/{item.get_expiry()}" for item in items), tuple(args))

    def keys(self, who: str) -> list[str]:
        # The caller in a hash tag: every key of one check is in the same Redis Cluster slot.
        head = f"{KEY_PREFIX}:{self.name}:{{{who}}}:"
        return [head + tail for tail in self.key_tails]


class RequestLimits:
    """The limits of one app: its two scopes, its Redis client and the script, all made once."""

    def __init__(self, client: redis.Redis, api: Scope | None, stream: Scope | None) -> None:
        self.client, self.api, self.stream = client, api, stream
        self.script = client.register_script(SCRIPT.read_text())
        self._next_warning = 0.0

    def check(self) -> Response | None:
        """The 429 answer when the request is over a limit of its scope, else None (it is counted)."""
        scope = self.stream if request.endpoint == STREAM_ENDPOINT else self.api
        if scope is None:
            return None
        try:
            verdict = self.script(scope.keys(rate_key()), scope.args)
        except redis.RedisError as exc:
            self._warn(exc)
            return None
        if not verdict:
            return None
        over, wait = verdict
        return error_response(429, "rate_limited", f"too many requests: {scope.descriptions[int(over) - 1]}",
                              {"Retry-After": str(int(wait))})

    def _warn(self, exc: redis.RedisError) -> None:
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + WARN_EVERY_SECONDS
            log.warning("request limits not checked, their Redis failed (requests pass): %s", exc)


def storage_client(url: str) -> redis.Redis:
    """A client for the limits' Redis: a ``redis://`` (``rediss://``, ``unix://``) URL, or
    ``redis+sentinel://[user:password@]host:port,host:port/master`` for the master the sentinels name."""
    # No retries (redis-py's default retries with backoff for seconds): a request that finds Redis failing
    # passes unchecked at once, which costs less than holding it.
    options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
               "retry": Retry(NoBackoff(), 0), "driver_info": DRIVER_INFO}
    if not url.startswith("redis+sentinel://"):
        return client_for(url.replace("redis+unix://", "unix://", 1), wait_seconds=REDIS_TIMEOUT_SECONDS, **options)
    parts = urlsplit(url)
    auth = {name: unquote(value) for name, value in
            (("username", parts.username), ("password", parts.password)) if value}
    sentinels = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.partition(":")
        sentinels.append((host, int(port or 26379)))
    master = parts.path.strip("/")
    if not master:
        raise ConfigError("RECPLAY_RATE_LIMIT_STORAGE_URL: a redis+sentinel:// URL ends with the master's name")
    # The sentinels with the same timeouts and retry: asking them for the master is part of a request's check.
    sentinel = Sentinel(sentinels, sentinel_kwargs={**auth, **options})
    client: redis.Redis = sentinel.master_for(master, **auth, **options)
    return client


def init_limits(app: Flask, blueprint: Blueprint, app_settings: Settings) -> RequestLimits | None:
    """Check every request of ``blueprint`` (the recordings API) against its limits; None when both limits are
    disabled.

    Raises:
        ConfigError: a limit that does not parse.
    """
    api = Scope.parse("api", "RECPLAY_RATE_LIMIT", app_settings.rate_limit)
    stream = Scope.parse("stream", "RECPLAY_STREAM_RATE_LIMIT", app_settings.stream_rate_limit)
    if api is None and stream is None:
        return None
    limits = RequestLimits(storage_client(app_settings.rate_limit_storage), api, stream)
    name = blueprint.name

    # On the app, not the blueprint: the blueprint is shared by every app built in this process and registered
    # already. The hook returns the 429 itself and never touches other answers, so a 202's Retry-After (poll
    # again soon) stays the API's own.
    @app.before_request
    def _check_limits() -> Response | None:
        if request.blueprint != name:
            return None
        return limits.check()

    app.extensions["recplay.limiter"] = limits
    return limits
