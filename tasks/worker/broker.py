"""The broker transport: kombu's Redis transport, made to survive a lost connection being cleaned up.

When Redis goes away (down, restarted, restarted empty), Celery collects the lost connection and reconnects. On
the way, kombu's Redis channel may still be asked to reach Redis through the collected connection: to put its
unacknowledged messages back while it closes, or to acknowledge a download that ran across the outage. It then
fails with AttributeError (the collected connection has no parameters left), which Celery 5.7 does not expect,
and the worker exits instead of reconnecting. Here that case raises the connection error it really is, which
Celery and kombu handle: they log it and carry on.

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


class Channel(_ClosedAfterLoss, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_ClosedAfterLoss, kombu_redis.SentinelChannel):
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
