"""Job status changes over Redis pub/sub: one channel per (business_id, call_sid) (:func:`tasks.slots.keys.events`).

Publishers (the API when it enqueues a job, the worker when an attempt finishes, the sweeper when it fails a job)
call :func:`publish` right after the state change is stored; the acquire script announces an attempt taking its
slot itself, with the same message (lua/acquire.lua). A message is
``{"status", "attempts", "error", "fence"}``; ``"deleted"`` says the recording is gone. A subscriber reads the
state itself once subscribed (and again after its connection was lost), then follows the messages.

:class:`Hub` is the subscriber side of one process: one Redis connection and one listening thread (a greenlet
under gevent) for every waiting client of the process, each of which has a queue; nothing polls.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import redis

from tasks.slots import keys

log = logging.getLogger(__name__)

DELETED = "deleted"
#: Put in every waiter's queue after the listening connection was lost and came back: messages may be missing.
RESYNC: dict[str, Any] = {"resync": True}


def publish(client: redis.Redis, business_id: str, call_sid: str, status: str, attempts: int = 0,
            error: str = "", fence: int | str = 0, stored: dict[str, Any] | None = None) -> None:
    """Announce a job's new status; a Redis error is logged, never raised (the change itself is stored).

    ``fence`` is the attempt's (0 before the first): with the status it orders the changes of one job
    (:func:`change_order`), so a subscriber can drop a message older than the state it has read. ``stored``
    (with ``ready``: the file, size_bytes, content_type) spares every subscriber a read of the fact.
    """
    text = message(status, attempts, error, fence, stored)
    try:
        client.publish(keys.events(business_id, call_sid), text)
    except redis.RedisError:
        log.warning("could not publish status=%s business_id=%s call_sid=%s", status, business_id, call_sid,
                    exc_info=True)


def message(status: str, attempts: int = 0, error: str = "", fence: int | str = 0,
            stored: dict[str, Any] | None = None) -> str:
    """The message announcing a change (:func:`publish` sends it; tasks.slots.facts.announce_ready too)."""
    return json.dumps({"status": status, "attempts": attempts, "error": error, "fence": int(fence or 0),
                       **(stored or {})})


#: Where each status stands in an attempt: queued for it, running it, queued again after it, finished.
_RANK = {"new": 0, "queued": 1, "processing": 2, "ready": 4, "failed": 4}


def change_order(status: str, fence: int, attempts: int) -> tuple[int, int]:
    """A key that grows with every change of one job: the attempt's fence, then the status within it (a job
    queued again after attempt n is after attempt n's `processing`, before attempt n+1's)."""
    rank = _RANK.get(status, 0)
    if status == "queued" and attempts > 0:
        rank = 3  # queued again after a failed attempt (whose fence this is)
    return fence, rank


class Subscription:
    """One waiting client's messages; use as a context manager (unsubscribes on exit)."""

    def __init__(self, hub: Hub, channel: str) -> None:
        self.hub, self.channel = hub, channel
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()

    def __enter__(self) -> Subscription:
        self.hub._add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.hub._remove(self)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds without one."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


class Hub:
    """The process's subscriptions: SUBSCRIBE when a channel's first waiter comes, UNSUBSCRIBE when its last
    leaves, and one listener that hands each message to the waiters of its channel."""

    #: How long a new waiter waits for Redis to confirm its subscription.
    SUBSCRIBE_TIMEOUT = 10.0

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.waiters: dict[str, set[Subscription]] = {}
        self.confirmed: dict[str, threading.Event] = {}
        self.pubsub: Any = None
        self.listener: threading.Thread | None = None
        self.stopped = threading.Event()

    def subscribe(self, business_id: str, call_sid: str) -> Subscription:
        return Subscription(self, keys.events(business_id, call_sid))

    def _add(self, sub: Subscription) -> None:
        with self.lock:
            self._start()
            waiting = self.waiters.setdefault(sub.channel, set())
            first = not waiting
            waiting.add(sub)
            if first:
                self.confirmed[sub.channel] = threading.Event()
                self.pubsub.subscribe(sub.channel)
            confirmed = self.confirmed[sub.channel]
        # Only once Redis has confirmed does the caller read the state: no change can fall in between.
        if not confirmed.wait(self.SUBSCRIBE_TIMEOUT):
            self._remove(sub)
            raise redis.TimeoutError(f"no confirmation of the subscription to {sub.channel}")

    def _remove(self, sub: Subscription) -> None:
        with self.lock:
            waiting = self.waiters.get(sub.channel)
            if waiting is None or sub not in waiting:
                return
            waiting.discard(sub)
            if not waiting:
                del self.waiters[sub.channel]
                self.confirmed.pop(sub.channel, None)
                try:
                    self.pubsub.unsubscribe(sub.channel)
                except redis.RedisError:
                    log.warning("unsubscribe failed channel=%s", sub.channel, exc_info=True)

    def _start(self) -> None:
        if self.listener is not None and self.listener.is_alive():
            return
        # Its own connection, without health checks (a PING from the checker would race the listener's reads)
        # and without a read timeout (the listener waits for the next message however long it takes).
        kwargs = {**self.client.connection_pool.connection_kwargs, "health_check_interval": 0,
                  "socket_timeout": None}
        pool = redis.ConnectionPool(connection_class=self.client.connection_pool.connection_class, **kwargs)
        self.pubsub = _PubSub(pool, on_reconnect=self._resync)
        self.listener = threading.Thread(target=self._listen, name="recplay-events", daemon=True)
        self.listener.start()

    def close(self) -> None:
        """Stop listening (its waiters get nothing more)."""
        self.stopped.set()
        if self.pubsub is not None:
            self.pubsub.close()  # a listener reading from the socket gets an error at once...
            self.pubsub.subscribed_event.set()  # ...and one waiting for a first subscription is woken
        if self.listener is not None:
            self.listener.join(5)

    def _listen(self) -> None:
        while not self.stopped.is_set():
            try:
                # Blocks until a message comes (or, with no channel subscribed, until one is); the hour only
                # bounds one call (redis-py takes no "for ever" before the first subscription).
                message = self.pubsub.get_message(timeout=3600.0)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if self.stopped.is_set():
                    return
                log.warning("events connection lost; reconnecting", exc_info=True)
                threading.Event().wait(0.5)  # Redis is away: the next read reconnects and resubscribes
                continue
            except Exception:
                if self.stopped.is_set():
                    return
                log.exception("events listener error")
                threading.Event().wait(0.5)
                continue
            if message is not None:
                self._deliver(message)

    def _resync(self) -> None:
        """After a reconnection (redis-py has subscribed again to every channel), every waiter reads the state
        again: what was published meanwhile is lost. Called from inside redis-py, maybe with ``lock`` held by
        this thread: it takes no lock (copying a dict is one step under the GIL)."""
        for waiting in list(self.waiters.values()):
            for sub in list(waiting):
                sub.messages.put(RESYNC)

    def _deliver(self, message: dict[str, Any]) -> None:
        raw = message.get("channel")
        channel = raw.decode() if isinstance(raw, bytes) else str(raw)
        if message["type"] == "subscribe":
            with self.lock:
                confirmed = self.confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            return
        if message["type"] != "message":
            return
        data = message["data"]
        try:
            body = json.loads(data.decode() if isinstance(data, bytes) else data)
        except ValueError:
            log.warning("ignored a malformed message on %s", channel)
            return
        with self.lock:
            waiting = list(self.waiters.get(channel, ()))
        for sub in waiting:
            sub.messages.put(body)


class _PubSub(redis.client.PubSub):
    """A PubSub that says when it connected again after losing its connection."""

    def __init__(self, pool: redis.ConnectionPool, on_reconnect: Any) -> None:
        super().__init__(pool, ignore_subscribe_messages=False)
        self.on_reconnect = on_reconnect
        self.connected_before = False

    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)
        if self.connected_before:
            self.on_reconnect()
        self.connected_before = True


_hubs: dict[int, Hub] = {}
_hubs_lock = threading.Lock()


def close_hubs() -> None:
    """Stop every hub of this process (tests point REDIS_URL elsewhere)."""
    with _hubs_lock:
        hubs = list(_hubs.values())
        _hubs.clear()
    for hub in hubs:
        hub.close()


def hub_for(client: redis.Redis) -> Hub:
    """The process's hub for this client (one listening connection per process)."""
    with _hubs_lock:
        found = _hubs.get(id(client))
        if found is None:
            found = _hubs[id(client)] = Hub(client)
        return found
