"""The broker transport: kombu's Redis transport, made to survive a lost connection being cleaned up.

When Redis goes away (down, restarted, restarted empty), Celery collects the lost connection and reconnects. On
the way, kombu's Redis channel may still be asked to reach Redis through the collected connection: to put its
unacknowledged messages back while it closes, or to acknowledge a download that ran across the outage. It then
fails with AttributeError (the collected connection has no parameters left), which Celery 5.7 does not expect,
and the worker exits instead of reconnecting. Here that case raises the connection error it really is, which
Celery and kombu handle: they log it and carry on. And the channel keeps one Redis client per connection pool
instead of building one per command.

Losing those acknowledgements and restores costs nothing: every running download keeps its own lease, a
redelivered message is dropped unless it is its job's current one, and the sweeper brings back any job whose
message went missing.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class _ClosedAfterLoss:
    """The guard: a channel asked for its connection's parameters after the connection was collected."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed after it was lost")
        return super()._connparams(asynchronous)  # type: ignore[misc]


class _OneClientPerPool:
    """kombu's channel builds a new ``redis.Redis`` for every publish, acknowledgement and queue check
    (``conn_or_acquire`` -> ``_create_client``), and redis-py builds a table of some 200 reply callbacks for each
    (about 0.1 ms of CPU here, several times per task). A ``redis.Redis`` may be shared between threads (each
    command takes a connection from the pool), so the channel keeps one for as long as its pool lives."""

    _client_of_pool: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the poller's own client: kombu builds it once
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        kept = self._client_of_pool
        if kept is None or kept[0] is not pool:
            kept = self._client_of_pool = (pool, super()._create_client())  # type: ignore[misc]
        return kept[1]


class Channel(_ClosedAfterLoss, _OneClientPerPool, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_ClosedAfterLoss, _OneClientPerPool, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Make ``redis://``, ``rediss://`` and ``sentinel://`` broker URLs use these transports (``celeryconfig``
    calls it): a failover is a lost connection too.

    Registered under kombu's own names rather than through ``broker_transport``, so that the broker URL every
    tool shows and parses (Flower's queue view among them) keeps its scheme.
    """
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
    TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
