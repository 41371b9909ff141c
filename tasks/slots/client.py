"""The process-wide Redis connection (job state and semaphores; the broker has its own), and Redis's clock."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import redis
from redis.driver_info import DriverInfo
from redis.sentinel import Sentinel

from tasks.settings import get_settings

#: What each new connection tells the server (CLIENT SETINFO), as redis-py would, with the version given here: left to
#: redis-py, it is read from the package's metadata for every new connection (a third of the connect's CPU; a burst
#: that grows a gevent worker's pool by a connection per waiting request spent 13 % of the API's CPU on it).
DRIVER_INFO = DriverInfo(lib_version=redis.__version__)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """A client with decoded responses, shared by every thread of this process (redis-py pools connections).

    With a ``sentinel://`` REDIS_URL it talks to the master the sentinels name, and finds the new one by itself
    after a failover (a command that meets the old one fails with a connection error, the next one goes to the
    new master).
    """
    settings = get_settings()
    options = {"decode_responses": True, "health_check_interval": 30, "socket_timeout": 30, "driver_info": DRIVER_INFO}
    sentinels = settings.sentinels
    if sentinels is None:
        return redis.Redis.from_url(settings.redis_url, **options)
    addresses, db = sentinels
    sentinel = Sentinel(addresses, socket_timeout=5, socket_connect_timeout=5)
    return sentinel.master_for(settings.sentinel_master, db=db, **options)


def reset_redis() -> None:
    """Forget the cached client (tests point REDIS_URL elsewhere)."""
    get_redis.cache_clear()


def time_ms(reply: Sequence[int | str]) -> int:
    """Milliseconds since the epoch of a Redis ``TIME`` reply (seconds, microseconds), as the scripts count."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def now_ms(client: redis.Redis) -> int:
    """Redis's clock in milliseconds: the one clock that leases, heartbeats and deadlines are measured on."""
    return time_ms(client.time())
