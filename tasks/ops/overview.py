"""The status picture of the queue and the slots: ``recplay status``, the ops API and /metrics share it."""

from __future__ import annotations

from typing import Any

import redis

from tasks.dispatch import DOWNLOAD_QUEUE, HANDOFF_QUEUE
from tasks.settings import Settings
from tasks.slots import keys
from tasks.slots.semaphore import Picture, pictures

# kombu's Redis transport keeps one list per priority step; messages without a priority use the plain name.
PRIORITY_SEP = "\x06\x16"
#: How many of a business's parked jobs the picture names (the count covers them all).
FIRST_PARKED = 10


def queue_length(client: redis.Redis, queues: tuple[str, ...] = (DOWNLOAD_QUEUE, HANDOFF_QUEUE)) -> int:
    """Download messages waiting for a worker, in the broker's download and hand-off queues."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
        for step in (3, 6, 9):
            pipe.llen(f"{queue}{PRIORITY_SEP}{step}")
    return int(sum(pipe.execute()))


def business_overview(picture: Picture) -> dict[str, Any]:
    return {
        "business_id": picture.business_id,
        "limit": picture.limit,
        "active": len(picture.holders),
        "parked": picture.parked,
        "first_parked": picture.first_parked,
        "holders": [
            {"call_sid": h.call_sid, "task_id": h.task_id, "worker": h.worker or None,
             "lease_seconds_left": h.lease_seconds_left}
            for h in picture.holders
        ],
    }


def overview(client: redis.Redis, settings: Settings, business_id: str | None = None) -> dict[str, Any]:
    """``{"queue_length", "businesses": [{"business_id", "limit", "active", "parked", "first_parked",
    "holders"}]}``; ``first_parked`` names the oldest few parked jobs, ``parked`` counts them all. A few round
    trips however many businesses there are (:func:`tasks.slots.semaphore.pictures`)."""
    businesses = [business_id] if business_id else sorted(str(b) for b in client.smembers(keys.BUSINESSES))
    return {
        "queue_length": queue_length(client),
        "businesses": [business_overview(p) for p in pictures(client, settings, businesses, FIRST_PARKED)],
    }
