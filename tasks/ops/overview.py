"""The status picture of the queue and the slots: ``recplay status``, the ops API and /metrics share it."""

from __future__ import annotations

from typing import Any

import redis

from tasks.settings import Settings
from tasks.slots import keys
from tasks.slots.semaphore import BusinessSlots

QUEUE = "recplay"
# kombu's Redis transport keeps one list per priority step; messages without a priority use the plain name.
PRIORITY_SEP = "\x06\x16"


def queue_length(client: redis.Redis, queue: str = QUEUE) -> int:
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for step in (3, 6, 9):
        pipe.llen(f"{queue}{PRIORITY_SEP}{step}")
    return int(sum(pipe.execute()))


def business_overview(client: redis.Redis, settings: Settings, business_id: str) -> dict[str, Any]:
    slots = BusinessSlots(client, business_id, settings)
    holders = slots.holders()
    return {
        "business_id": business_id,
        "limit": slots.limit(),
        "active": len(holders),
        "parked": len(slots.parked()),
        "holders": [
            {"call_sid": h.call_sid, "task_id": h.task_id, "worker": h.worker or None,
             "lease_seconds_left": h.lease_seconds_left}
            for h in holders
        ],
    }


def overview(client: redis.Redis, settings: Settings, business_id: str | None = None) -> dict[str, Any]:
    """``{"queue_length", "businesses": [{"business_id", "limit", "active", "parked", "holders"}]}``."""
    businesses = [business_id] if business_id else sorted(str(b) for b in client.smembers(keys.BUSINESSES))
    return {
        "queue_length": queue_length(client),
        "businesses": [business_overview(client, settings, b) for b in businesses],
    }
