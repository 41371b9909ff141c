"""Recovery as library code: the beat task and ``recplay purge-stuck`` both call :func:`sweep`.

A sweep reclaims expired leases, requeues the jobs that lost their slot, re-dispatches overdue messages, hands
free slots to parked jobs, and re-requests recordings the catalog says are wanted but Redis has forgotten (a
flushed or restarted Redis). It is idempotent, and two sweeps at once are safe: every per-business step is one
Lua script, and a lock keeps concurrent beats from doing the same work twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field

import redis

from tasks import app, keys, metrics
from tasks.catalog import Catalog
from tasks.dispatch import send_download
from tasks.jobs import finished_ttl_ms, get_job, request_job
from tasks.scripts import script
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    reclaimed: int = 0
    dispatched: list[tuple[str, str]] = field(default_factory=list)  # (business_id, call_sid)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rerequested: list[tuple[str, str]] = field(default_factory=list)

    @property
    def did_anything(self) -> bool:
        return bool(self.reclaimed or self.dispatched or self.failed or self.rerequested)

    def as_dict(self) -> dict[str, object]:
        return {
            "reclaimed": self.reclaimed,
            "dispatched": [{"business_id": b, "call_sid": c} for b, c in self.dispatched],
            "failed": [{"business_id": b, "call_sid": c} for b, c in self.failed],
            "rerequested": [{"business_id": b, "call_sid": c} for b, c in self.rerequested],
        }


def sweep_business(client: redis.Redis, settings: Settings, business_id: str, report: SweepReport) -> None:
    reply = script(client, "sweep")(
        keys=keys.business_keys(business_id),
        args=[settings.max_concurrent, keys.job_prefix(business_id), settings.reservation_seconds * 1000,
              settings.queued_deadline_seconds * 1000, settings.max_attempts, uuid.uuid4().hex,
              finished_ttl_ms(settings)],
    )
    result = json.loads(reply)
    report.reclaimed += int(result["reclaimed"])
    metrics.count(client, "reclaimed_leases", int(result["reclaimed"]))
    # cjson encodes an empty table as an object.
    for call_sid, task_id in result["dispatch"] or []:
        send_download(business_id, call_sid, task_id)
        report.dispatched.append((business_id, call_sid))
    if result["failed"]:
        catalog = Catalog(settings)
        for call_sid in result["failed"]:
            rec = catalog.get(business_id, call_sid)
            job = get_job(client, business_id, call_sid)
            if rec is not None:
                catalog.mark_failed(rec.id, "worker lost during the last attempt", job.attempts if job else 0)
            report.failed.append((business_id, call_sid))
            log.warning("failed after losing its worker business_id=%s call_sid=%s", business_id, call_sid)


def rerequest_forgotten(client: redis.Redis, settings: Settings, report: SweepReport) -> None:
    """Recordings the catalog says were asked for, whose Redis job is gone (Redis flushed or restarted)."""
    for rec in Catalog(settings).wanted():
        if get_job(client, rec.business_id, rec.call_sid) is not None:
            continue
        result = request_job(client, settings, rec.business_id, rec.call_sid, media_url=rec.media_url or "",
                             recording_id=rec.id, mode="fetch")
        if result.outcome == "enqueued" and result.task_id:
            send_download(rec.business_id, rec.call_sid, result.task_id)
            report.rerequested.append((rec.business_id, rec.call_sid))
            log.warning("re-requested a forgotten job business_id=%s call_sid=%s",
                        rec.business_id, rec.call_sid)


def sweep(client: redis.Redis, settings: Settings, business_id: str | None = None) -> SweepReport:
    """One recovery pass over one business, or all of them."""
    report = SweepReport()
    businesses = [business_id] if business_id else sorted(str(b) for b in client.smembers(keys.BUSINESSES))
    for biz in businesses:
        sweep_business(client, settings, biz, report)
    if business_id is None:
        rerequest_forgotten(client, settings, report)
    if report.did_anything:
        log.info("sweep reclaimed=%s dispatched=%s failed=%s rerequested=%s", report.reclaimed,
                 len(report.dispatched), len(report.failed), len(report.rerequested))
    return report


@app.task(name="tasks.sweep", ignore_result=True)
def sweep_task() -> dict[str, object]:
    """The beat's periodic sweep; skipped when another sweep holds the lock."""
    from tasks.redis_client import get_redis

    client = get_redis()
    settings = get_settings()
    lock = client.lock(keys.SWEEP_LOCK, timeout=60, blocking=False)
    if not lock.acquire():
        return {"skipped": True}
    try:
        return sweep(client, settings).as_dict()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("sweep lock expired before the sweep finished")
