"""The process-wide Redis connection (job state and semaphores; the broker has its own)."""

from __future__ import annotations

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
