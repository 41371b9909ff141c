"""Worker liveness: heartbeats each worker writes to Redis, and Celery pings.

A worker process writes ``keys.WORKERS[name] = Redis TIME (ms)`` every ``RECPLAY_WORKER_HEARTBEAT_SECONDS``
from a :class:`HeartbeatWriter` thread (started on ``worker_ready`` by :mod:`tasks.worker.hooks`), and removes
its entry on a clean shutdown.
A worker is *gone* when it has missed :data:`MISSED_HEARTBEATS` heartbeats or does not answer a ping; a worker
that answers but no longer runs a task it holds a slot for (it restarted under the same name) orphaned it.
``recplay status`` and ``recplay purge-stuck`` ask here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from celery import Celery

from tasks.slots import keys
from tasks.slots.client import now_ms

log = logging.getLogger(__name__)

#: A worker whose last heartbeat is older than this many intervals is gone.
MISSED_HEARTBEATS = 3
#: Entries of workers silent this long are dropped when a worker starts (hostnames come and go).
FORGET_AFTER_SECONDS = 24 * 3600


def record_heartbeat(client: redis.Redis, worker: str) -> None:
    client.hset(keys.WORKERS, worker, now_ms(client))


def forget_worker(client: redis.Redis, worker: str) -> None:
    client.hdel(keys.WORKERS, worker)


def heartbeat_ages(client: redis.Redis) -> dict[str, float]:
    """Seconds since each known worker's last heartbeat (by the Redis clock)."""
    now = now_ms(client)
    beats: dict[str, str] = client.hgetall(keys.WORKERS)  # type: ignore[assignment]
    return {name: round((now - int(ms)) / 1000, 3) for name, ms in beats.items()}


def forget_silent_workers(client: redis.Redis, older_than: float = FORGET_AFTER_SECONDS) -> list[str]:
    silent = [name for name, age in heartbeat_ages(client).items() if age > older_than]
    if silent:
        client.hdel(keys.WORKERS, *silent)
    return silent


class HeartbeatWriter:
    """Writes this worker's heartbeat every ``interval`` seconds until stopped (a daemon thread)."""

    def __init__(self, client: redis.Redis, worker: str, interval: float) -> None:
        self.client, self.worker, self.interval = client, worker, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recplay-heartbeat", daemon=True)

    def start(self) -> HeartbeatWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 5)

    def _run(self) -> None:
        failing = False
        while True:
            try:
                record_heartbeat(self.client, self.worker)
                if failing:
                    log.info("heartbeat written again worker=%s", self.worker)
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.warning("heartbeat failed worker=%s error=%s", self.worker, exc)
                failing = True
            if self._stop.wait(self.interval):
                return


def ping(app: Celery, workers: Iterable[str], timeout: float) -> set[str]:
    """The workers among ``workers`` that answer a Celery ping within ``timeout`` seconds."""
    names = sorted(set(workers))
    if not names:
        return set()
    replies = app.control.ping(destination=names, timeout=timeout) or []
    return {name for reply in replies for name in reply}


def running_tasks(app: Celery, workers: Iterable[str], timeout: float) -> dict[str, set[str]]:
    """The task ids each of ``workers`` is executing; a worker that does not answer is absent."""
    names = sorted(set(workers))
    if not names:
        return {}
    replies = app.control.inspect(destination=names, timeout=timeout).active() or {}
    return {name: {str(t.get("id")) for t in tasks or []} for name, tasks in replies.items()}


@dataclass(frozen=True)
class WorkerState:
    """What is known of one worker named by a slot holder."""

    name: str
    heartbeat_age: float | None  # seconds since its last heartbeat; None: it never wrote one, or left cleanly
    answered: bool
    running: frozenset[str] | None = None  # task ids it runs; None: not asked, or it did not say

    def stale(self, heartbeat_seconds: float) -> bool:
        return self.heartbeat_age is not None and self.heartbeat_age > MISSED_HEARTBEATS * heartbeat_seconds

    def gone(self, heartbeat_seconds: float) -> bool:
        return not self.answered or self.stale(heartbeat_seconds)

    def runs(self, task_id: str) -> bool:
        """False only when the worker said what it runs and ``task_id`` is not among them."""
        return self.running is None or task_id in self.running

    def describe(self, heartbeat_seconds: float) -> str:
        age = self.heartbeat_age
        beat = "no heartbeat" if age is None else f"last heartbeat {age:.1f}s ago"
        if not self.answered:
            return f"not answering a ping, {beat}"
        if self.stale(heartbeat_seconds):
            return f"missed its heartbeats, {beat}"
        return f"alive, {beat}"


def check_workers(
    app: Celery, client: redis.Redis, workers: Iterable[str], timeout: float, *, with_tasks: bool = False
) -> dict[str, WorkerState]:
    """Heartbeat age and ping answer (and, ``with_tasks``, the running task ids) of each named worker."""
    names = sorted({w for w in workers if w})
    if not names:
        return {}
    ages = heartbeat_ages(client)
    answered = ping(app, names, timeout)
    running = running_tasks(app, sorted(answered), timeout) if with_tasks and answered else {}
    return {
        name: WorkerState(name, ages.get(name), name in answered,
                          frozenset(running[name]) if name in running else None)
        for name in names
    }
