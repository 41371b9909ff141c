"""The process-wide Redis connection (job state and semaphores; the broker has its own), and Redis's clock."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import redis

from tasks.settings import get_settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """A client with decoded responses, shared by every thread of this process (redis-py pools connections)."""
    return redis.Redis.from_url(
        get_settings().redis_url, decode_responses=True, health_check_interval=30, socket_timeout=30
    )


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
