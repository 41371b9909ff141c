"""The process-wide Redis connection (job state and semaphores; the broker has its own), and Redis's clock."""

from __future__ import annotations

import select
import sys
import types
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any

import redis
from redis._parsers import hiredis as hiredis_parser
from redis.driver_info import DriverInfo
from redis.sentinel import Sentinel

from tasks.settings import get_settings

#: What each new connection tells the server (CLIENT SETINFO), as redis-py would, with the version given here: left to
#: redis-py, it is read from the package's metadata for every new connection (a third of the connect's CPU; a burst
#: that grows a gevent worker's pool by a connection per waiting request spent 13 % of the API's CPU on it).
DRIVER_INFO = DriverInfo(lib_version=redis.__version__)

#: Connections a process under gevent's patching (an API worker) keeps to one Redis URL at most. Its greenlets take
#: turns on them: a command holds one for a round trip, so a burst waits a moment for a free one rather than
#: opening a connection per waiting request (300 requests at once made two API processes open 160), and a thousand
#: clients do not make a thousand connections.
COOPERATIVE_POOL_SIZE = 16
#: How long a greenlet waits for one of them before its command fails with a connection error.
COOPERATIVE_POOL_WAIT_SECONDS = 10.0


def client_for(url: str, *, wait_seconds: float = COOPERATIVE_POOL_WAIT_SECONDS, **options: Any) -> redis.Redis:
    """A client of ``url`` (``redis.Redis.from_url`` with ``options``). Under gevent's patching its pool holds at
    most :data:`COOPERATIVE_POOL_SIZE` connections, and a greenlet that finds them all in use waits up to
    ``wait_seconds`` for one."""
    if _gevent_patched("socket") is None:
        return redis.Redis.from_url(url, **options)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=COOPERATIVE_POOL_SIZE, timeout=wait_seconds,
                                                 **options)
    return redis.Redis(connection_pool=pool)


def _gevent_patched(module: str) -> Any | None:
    """gevent's ``monkey`` module when it has patched ``module`` in this process (the API's gunicorn workers), else
    None."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey if monkey is not None and monkey.is_module_patched(module) else None


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """A client with decoded responses, shared by every thread of this process (redis-py pools connections; under
    gevent, at most :data:`COOPERATIVE_POOL_SIZE` of them).

    With a ``sentinel://`` REDIS_URL it talks to the master the sentinels name, and finds the new one by itself
    after a failover (a command that meets the old one fails with a connection error, the next one goes to the
    new master).
    """
    settings = get_settings()
    options: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30, "socket_timeout": 30,
                               "driver_info": DRIVER_INFO}
    sentinels = settings.sentinels
    if sentinels is None:
        return client_for(settings.redis_url, **options)
    addresses, db = sentinels
    sentinel = Sentinel(addresses, socket_timeout=5, socket_connect_timeout=5)
    return sentinel.master_for(settings.sentinel_master, db=db, **options)


def readiness_checks_use_os_poll() -> bool:
    """Under gevent's patching (the API's gunicorn workers), let redis-py's checks that wait for nothing (a pooled
    connection's readiness) use the operating system's ``poll`` again, not gevent's. Returns whether they do now.

    redis-py checks every connection it takes from the pool with a ``poll`` of timeout 0 (a connection the server
    closed is found and replaced). gevent's ``poll`` makes a watcher per call and goes through its hub to learn
    what the system call says at once: under gevent, a PING cost 182 us of CPU with gevent's and 137 us with the
    system's, and every command the API sends pays it. A ``poll`` with timeout 0 never blocks. One that waits (a
    pub/sub listener's ``get_message(timeout)``) still goes to gevent's, which lets the other greenlets run.
    Only the hiredis parser's module sees the change, and only when it still reads ``select.poll`` as redis-py 8
    does; anything else is left as it is.
    """
    monkey = _gevent_patched("select")
    if monkey is None:
        return False
    module = getattr(hiredis_parser, "select", None)
    if isinstance(module, types.SimpleNamespace):
        return True  # done before
    if module is not select:
        return False
    unpatched = types.SimpleNamespace(**vars(select))
    unpatched.poll = partial(_Poll, monkey.get_original("select", "poll"), select.poll)
    hiredis_parser.select = unpatched  # type: ignore[assignment]
    return True


class _Poll:
    """``select.poll()`` for redis-py's checks: the system's for a poll that does not wait, gevent's for one
    that does."""

    def __init__(self, system: Callable[[], Any], cooperative: Callable[[], Any]) -> None:
        self.system, self.cooperative = system, cooperative
        self.registered: list[tuple[Any, int]] = []

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI | select.POLLOUT) -> None:
        self.registered.append((fd, eventmask))

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        poller = self.system() if timeout == 0 else self.cooperative()
        for fd, eventmask in self.registered:
            poller.register(fd, eventmask)
        found: list[tuple[int, int]] = poller.poll(timeout)
        return found


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
