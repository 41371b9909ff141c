"""Releasing, on every path: the registry of the slots the tasks of this process hold, and giving them up.

The download code records every slot it holds here (task id -> business_id, call_sid, fence) for as long as it
holds it; its own ``finally`` releases the slot and forgets it. Whatever is still recorded when Celery reports
the task over (``task_postrun``, ``task_failure``, ``task_revoked``) or when the worker goes away (a cold
shutdown, the end of any shutdown, a pool child exiting; :mod:`tasks.worker.hooks` connects those signals) is
given up here: the job is requeued at once with a
new task id, and the slot is released and passed to the next parked job of its business. Nothing waits for the
lease to run out, and nothing waits for the broker's visibility timeout.

A SIGKILL runs none of this. There the lease runs out, and the sweeper requeues the job (:mod:`tasks.ops.sweeper`).
Giving up is fenced like everything else: it only touches a job whose current attempt is the one recorded, so a
late signal can never requeue a job that has moved on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from tasks.dispatch import send_handed
from tasks.ids import is_valid_id
from tasks.settings import get_settings
from tasks.slots import keys
from tasks.slots.client import get_redis
from tasks.slots.jobs import finish_job
from tasks.slots.semaphore import BusinessSlots, parse_holder_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldSlot:
    """A slot a task of this process holds: the attempt that holds it is identified by its fence, the run of the
    task that holds it by its thread (``owner``)."""

    business_id: str
    call_sid: str
    fence: int
    owner: int = 0


_held: dict[str, HeldSlot] = {}
_held_lock = threading.Lock()


def hold(task_id: str, business_id: str, call_sid: str, fence: int) -> None:
    """Record that ``task_id`` holds a slot (the download code calls this right after acquiring), in this run of
    the task (this thread)."""
    with _held_lock:
        _held[task_id] = HeldSlot(business_id, call_sid, fence, threading.get_ident())


def forget(task_id: str) -> None:
    """The task's own ``finally`` takes care of its slot from here on."""
    with _held_lock:
        found = _held.get(task_id)
        if found is not None and found.owner == threading.get_ident():
            del _held[task_id]


@contextmanager
def holding(task_id: str, business_id: str, call_sid: str, fence: int) -> Iterator[None]:
    """Record the slot while the block runs; the caller's ``finally`` (``slots.semaphore.slot``) releases it.

    A block cut short by the process being stopped (SystemExit, KeyboardInterrupt, Celery terminating the task)
    gives the slot up on its way out, so that the job is requeued at once rather than after a sweep.
    """
    hold(task_id, business_id, call_sid, fence)
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):
            safely("give up an interrupted attempt", give_up, task_id, f"interrupted by {type(exc).__name__}",
                   threading.get_ident())
        raise
    finally:
        forget(task_id)


def held() -> dict[str, HeldSlot]:
    """A copy of what this process holds right now, by task id."""
    with _held_lock:
        return dict(_held)


def give_up(task_id: str, reason: str, owner: int | None = None) -> bool:
    """Requeue the job of the slot ``task_id`` still holds, and release the slot. False if it holds none.

    ``owner``: only the slot held by that run of the task (its thread). A message delivered twice to one process
    runs twice under one task id: the run that found its job already running (and took no slot) must not give
    up the slot of the run that holds it when Celery reports it over.
    """
    with _held_lock:
        slot = _held.get(task_id)
        if slot is None or (owner is not None and slot.owner != owner):
            return False
        del _held[task_id]
    _requeue_and_release(slot, task_id, reason)
    return True


def give_up_all(reason: str) -> int:
    """Give up every slot this process holds; returns how many there were."""
    with _held_lock:
        found = dict(_held)
        _held.clear()
    for task_id, slot in found.items():
        try:
            _requeue_and_release(slot, task_id, reason)
        except Exception:
            log.exception("could not give up a slot business_id=%s call_sid=%s task_id=%s",
                          slot.business_id, slot.call_sid, task_id)
    return len(found)


def give_up_task(task_id: str, business_id: str, call_sid: str, reason: str) -> bool:
    """Give up the slot of ``task_id``, found in this process or else in Redis (a prefork pool child held it).

    Returns:
        True when a slot held by ``task_id`` was found and given up.
    """
    if give_up(task_id, reason):
        return True
    if not (is_valid_id(business_id) and is_valid_id(call_sid)):
        return False
    client = get_redis()
    info = client.hget(keys.holder_info(business_id), call_sid)
    if not info:
        return False
    fence, holder_task, worker = parse_holder_info(str(info))
    if holder_task != task_id or not worker or not fence.isdigit():
        return False  # another attempt's slot, or a reservation: not ours to give up
    _requeue_and_release(HeldSlot(business_id, call_sid, int(fence)), task_id, reason)
    return True


def _requeue_and_release(slot: HeldSlot, task_id: str, reason: str) -> None:
    client, settings = get_redis(), get_settings()
    # Requeue first: the job goes back in line at its arrival place (the fence makes this a no-op when the
    # attempt is no longer the job's current one), then the release hands the slot to the oldest in line.
    requeued = finish_job(client, settings, slot.business_id, slot.call_sid, slot.fence, "retry",
                          error=f"attempt given up: {reason}")
    released, handed = BusinessSlots(client, slot.business_id, settings).release(slot.call_sid, slot.fence)
    if handed:
        send_handed(slot.business_id, handed, by="give-up")
    log.warning("gave up a slot business_id=%s call_sid=%s task_id=%s fence=%s reason=%s requeued=%s "
                "released=%s", slot.business_id, slot.call_sid, task_id, slot.fence, reason, requeued, released)


def safely(what: str, fn: Any, *args: Any) -> None:
    # A signal handler must never break the worker: log and go on (the lease and the sweeper remain).
    try:
        fn(*args)
    except (redis.RedisError, OSError):
        log.warning("%s: Redis unreachable, the lease will run out instead", what, exc_info=True)
    except Exception:
        log.exception("%s failed", what)
