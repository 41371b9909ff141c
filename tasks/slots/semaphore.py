"""Per-business concurrency slots held as leases in Redis.

Holders live in a sorted set scored by lease expiry, so a crashed worker's slot stops counting the moment its
lease ends; every operation is one Lua script (``lua/``) whose cost is O(log n) in the business's backlog. Jobs
wait for a slot in a sorted set ordered by arrival: a new job parks there when its business has no free slot
(or older jobs wait), without a Celery message; the release that frees a slot hands it to the oldest parked job
in the same script, with a short reservation, and the caller sends that job's message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from tasks.settings import Settings
from tasks.slots import keys
from tasks.slots.client import now_ms
from tasks.slots.scripts import script

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acquired:
    """A slot is ours: ``fence`` identifies this attempt, ``attempts`` counts it."""

    fence: int
    attempts: int


@dataclass(frozen=True)
class Parked:
    """The business is at its limit (or older jobs wait): the job waits in Redis, in arrival order."""


@dataclass(frozen=True)
class Stale:
    """The message is not the job's current one (duplicate, superseded, deleted): drop it."""

    reason: str


@dataclass(frozen=True)
class Holder:
    call_sid: str
    fence: str
    task_id: str
    worker: str
    lease_seconds_left: float

    @property
    def reserved(self) -> bool:
        """A slot handed to a parked job whose task has not claimed it yet."""
        return self.worker == ""


Acquisition = Acquired | Parked | Stale
#: Called with the (call_sid, task_id) pairs a release handed a slot to; sends their messages.
HandOff = Callable[[str, list[tuple[str, str]]], None]


def format_holder_info(fence: int | str, task_id: str, worker: str) -> str:
    """The holder-info value of a slot: ``fence|task_id|worker``, worker "" for a reservation (lua/lib.lua
    parses the same format)."""
    return f"{fence}|{task_id}|{worker}"


def parse_holder_info(raw: str | None) -> tuple[str, str, str]:
    """(fence, task_id, worker) of a holder-info value; three empty strings for a missing one."""
    fence, task_id, worker = (raw or "||").split("|", 2)
    return fence, task_id, worker


def new_task_prefix() -> str:
    """128 random bits in hex, as a uuid4's: the task ids a release hands out are this, a dot and a number.
    Every release asks for one, and most hand nothing: os.urandom costs a seventh of uuid.uuid4()."""
    return os.urandom(16).hex()


class BusinessSlots:
    """The slot semaphore of one business."""

    def __init__(self, client: redis.Redis, business_id: str, settings: Settings) -> None:
        self.client = client
        self.business_id = business_id
        self.settings = settings
        self.keys = keys.business_keys(business_id)

    @property
    def _lease_ms(self) -> int:
        return self.settings.lease_seconds * 1000

    def acquire(self, call_sid: str, task_id: str, worker: str) -> Acquisition:
        reply = script(self.client, "acquire")(
            keys=self.keys, args=[call_sid, task_id, worker, self._lease_ms, self.settings.max_concurrent,
                                  keys.events(self.business_id, call_sid)],
        )
        kind = reply[0]
        if kind == "slot":  # the script announced `processing` (tasks.slots.events) too
            return Acquired(fence=int(reply[1]), attempts=int(reply[2]))
        if kind == "parked":
            return Parked()
        return Stale(reason=str(reply[1]))

    def renew(self, call_sid: str, fence: int) -> bool:
        """Extend our lease; False when it is no longer ours (the attempt must stop)."""
        return bool(script(self.client, "renew")(keys=self.keys, args=[call_sid, fence, self._lease_ms]))

    def release(self, call_sid: str, fence: int | None) -> tuple[bool, list[tuple[str, str]]]:
        """Free our slot (only if it is still ours) and hand free slots to parked jobs.

        Returns:
            (released, handed): whether our slot was freed, and the (call_sid, task_id) of each job handed a slot;
            the caller must send their messages.
        """
        reply = script(self.client, "release")(
            keys=self.keys,
            args=[call_sid, "" if fence is None else fence, self.settings.max_concurrent,
                  self.settings.reservation_seconds * 1000, new_task_prefix()],
        )
        handed = [(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]
        return bool(reply[0]), handed

    def hand_off(self) -> list[tuple[str, str]]:
        """Give free slots to parked jobs (after a limit was raised or a slot freed outside a release)."""
        return self.release("", None)[1]

    def limit(self) -> int:
        return _limit_of(self.client.get(keys.limit(self.business_id)), self.settings)

    def has_own_limit(self) -> bool:
        return bool(self.client.exists(keys.limit(self.business_id)))

    def set_limit(self, limit: int) -> list[tuple[str, str]]:
        """Set the business's own limit; a raised limit hands the new slots out at once."""
        if limit < 1:
            raise ValueError("a limit is at least 1")
        self.client.set(keys.limit(self.business_id), limit)
        self.client.sadd(keys.BUSINESSES, self.business_id)
        return self.hand_off()

    def active(self) -> int:
        """Slots held right now (expired leases do not count)."""
        now = now_ms(self.client)
        return int(self.client.zcount(keys.holders(self.business_id), f"({now}", "+inf"))

    def parked(self, first: int = 10) -> list[str]:
        """The ``first`` jobs waiting for a slot, oldest first (never the whole line: it may be long)."""
        return [str(c) for c in self.client.zrange(keys.waiting(self.business_id), 0, first - 1)]

    def parked_count(self) -> int:
        return int(self.client.zcard(keys.waiting(self.business_id)))

    def holders(self) -> list[Holder]:
        now = now_ms(self.client)
        pipe = self.client.pipeline(transaction=False)
        pipe.zrangebyscore(keys.holders(self.business_id), f"({now}", "+inf", withscores=True)
        pipe.hgetall(keys.holder_info(self.business_id))
        members, info = pipe.execute()
        return _holders_of(members, info, now)


@dataclass(frozen=True)
class Picture:
    """One business's slots as an operator sees them: ``parked`` counts the whole line, ``first_parked`` names its
    head."""

    business_id: str
    limit: int
    holders: list[Holder]
    parked: int
    first_parked: list[str]


#: Businesses read per pipeline by :func:`pictures` (five commands each).
PICTURE_PAGE = 200


def pictures(client: redis.Redis, settings: Settings, business_ids: list[str], first_parked: int,
             page: int = PICTURE_PAGE) -> Iterator[Picture]:
    """The :class:`Picture` of each business, on one reading of Redis's clock and in one round trip per ``page``
    businesses: a scrape of /metrics or ``recplay status`` costs the same few round trips for ten businesses or
    a hundred pages of them, never five a business."""
    now = now_ms(client)
    for start in range(0, len(business_ids), page):
        chunk = business_ids[start:start + page]
        pipe = client.pipeline(transaction=False)
        for business_id in chunk:
            pipe.get(keys.limit(business_id))
            pipe.zrangebyscore(keys.holders(business_id), f"({now}", "+inf", withscores=True)
            pipe.hgetall(keys.holder_info(business_id))
            pipe.zcard(keys.waiting(business_id))
            pipe.zrange(keys.waiting(business_id), 0, first_parked - 1)
        replies = pipe.execute()
        for i, business_id in enumerate(chunk):
            limit, members, info, parked, first = replies[5 * i:5 * i + 5]
            yield Picture(business_id, _limit_of(limit, settings), _holders_of(members, info, now), int(parked),
                          [str(c) for c in first])


def _limit_of(own: bytes | str | None, settings: Settings) -> int:
    """A business's limit from its own key's value (absent: the default)."""
    return int(own) if own is not None else settings.max_concurrent


def _holders_of(members: list[tuple[str, float]], info: dict[str, str], now: int) -> list[Holder]:
    """The live holders (ZRANGEBYSCORE of the holders above ``now``, with scores) with their holder-info."""
    found = []
    for call_sid, expiry in members:
        fence, task_id, worker = parse_holder_info(info.get(call_sid))
        found.append(Holder(call_sid, fence, task_id, worker, round((expiry - now) / 1000, 3)))
    return found


@contextmanager
def slot(
    slots: BusinessSlots, call_sid: str, task_id: str, worker: str, hand_off: HandOff
) -> Iterator[Acquisition]:
    """Acquire (or park) for one task; on the way out release only what was acquired, and pass on the slot."""
    got = slots.acquire(call_sid, task_id, worker)
    try:
        yield got
    finally:
        if isinstance(got, Acquired):
            try:
                released, handed = slots.release(call_sid, got.fence)
            except redis.RedisError:
                # The lease will expire and the sweeper hands the slot on.
                log.exception("release failed business_id=%s call_sid=%s", slots.business_id, call_sid)
            else:
                if not released:
                    log.warning("slot was no longer ours business_id=%s call_sid=%s fence=%s",
                                slots.business_id, call_sid, got.fence)
                if handed:
                    hand_off(slots.business_id, handed)
