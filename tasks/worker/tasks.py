"""The Celery tasks, thin: ``tasks.download`` runs one download attempt, ``tasks.sweep`` one recovery pass.

Their names are the wire format (``tasks.dispatch`` sends them by name): they never change when code moves.
"""

from __future__ import annotations

import logging

import redis
from celery import Task

from tasks import app
from tasks.dispatch import DOWNLOAD_TASK, MESSAGE_VERSION, SWEEP_TASK
from tasks.ops.sweeper import sweep
from tasks.settings import get_settings
from tasks.slots import keys
from tasks.slots.client import get_redis
from tasks.worker.download import Attempt

log = logging.getLogger(__name__)


@app.task(name=DOWNLOAD_TASK, bind=True, acks_late=True, ignore_result=True)
def download(self: Task, business_id: str, call_sid: str, v: int = MESSAGE_VERSION) -> str:
    """Download one recording for (business_id, call_sid); idempotent, safe to deliver twice."""
    if v not in (MESSAGE_VERSION, MESSAGE_VERSION - 1):
        log.error("unknown message version %s business_id=%s call_sid=%s", v, business_id, call_sid)
        return "rejected"
    worker = f"{self.request.hostname}"
    return Attempt(business_id, call_sid, str(self.request.id), worker, get_settings()).run()


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep_task() -> dict[str, object]:
    """The beat's periodic sweep; skipped when another sweep holds the lock.

    The lock only saves repeated work (sweeps are safe together), so it is short: a worker killed in the middle
    of a sweep holds up the next ones for two periods at most.
    """
    client = get_redis()
    settings = get_settings()
    lock = client.lock(keys.SWEEP_LOCK, timeout=max(2.0, 2 * settings.sweep_seconds), blocking=False)
    if not lock.acquire():
        return {"skipped": True}
    try:
        return sweep(client, settings).as_dict()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("sweep lock expired before the sweep finished")
