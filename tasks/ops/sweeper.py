"""Recovery as library code: the beat task (``tasks.sweep``, :mod:`tasks.worker.tasks`) and ``recplay
purge-stuck`` both call :func:`sweep`.

A sweep reclaims expired leases and requeues the jobs that lost their slot (with a new attempt and fence),
gives jobs whose hand-off message was lost their place back at the head of the parked list, re-dispatches
overdue messages, hands free slots to parked jobs, and brings back what Redis forgot: recordings the catalog
says are wanted whose Redis job is gone (a flushed or restarted Redis), or whose job finished without the
catalog hearing of it (a worker died in between).

It is idempotent, and two sweeps at once are safe: every per-business step is one Lua script that sees the state
the other left, and re-requesting goes through the job registry's create-or-return. The beat task also takes a
short lock, only so that concurrent beats do not repeat each other's work.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field

import redis

from tasks import metrics
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_download
from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.client import now_ms
from tasks.slots.jobs import RequestMode, finished_ttl_ms, get_job, request_job
from tasks.slots.scripts import script

log = logging.getLogger(__name__)


#: Catalog rows read per query while looking for forgotten jobs.
WANTED_PAGE = 500


@dataclass
class SweepReport:
    reclaimed: int = 0
    dispatched: list[tuple[str, str]] = field(default_factory=list)  # (business_id, call_sid)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rerequested: list[tuple[str, str]] = field(default_factory=list)
    #: Reservations that expired before their task claimed them (a lost hand-off): back at the parked head.
    reparked: int = 0
    #: Catalog rows set to failed to match their finished Redis job (a worker died between the two writes).
    repaired: list[tuple[str, str]] = field(default_factory=list)
    #: Jobs found `processing` without their slot (their worker died or stalled), queued again (in dispatched).
    requeued: int = 0

    @property
    def did_anything(self) -> bool:
        return bool(self.reclaimed or self.dispatched or self.failed or self.rerequested or self.reparked
                    or self.repaired)

    def as_dict(self) -> dict[str, object]:
        return {
            "reclaimed": self.reclaimed,
            "dispatched": [{"business_id": b, "call_sid": c} for b, c in self.dispatched],
            "failed": [{"business_id": b, "call_sid": c} for b, c in self.failed],
            "rerequested": [{"business_id": b, "call_sid": c} for b, c in self.rerequested],
            "reparked": self.reparked,
            "repaired": [{"business_id": b, "call_sid": c} for b, c in self.repaired],
            "requeued": self.requeued,
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
    report.reparked += int(result["reparked"])
    report.requeued += int(result["requeued"])
    metrics.count(client, metrics.RECLAIMED_LEASES, int(result["reclaimed"]))
    metrics.count(client, "lost_handoffs", int(result["reparked"]))
    metrics.count(client, "requeued_jobs", int(result["requeued"]))
    # cjson encodes an empty table as an object.
    for call_sid, task_id in result["dispatch"] or []:
        send_download(business_id, call_sid, task_id)
        report.dispatched.append((business_id, call_sid))
        log.info("sweep dispatched business_id=%s call_sid=%s task_id=%s", business_id, call_sid, task_id)
    if result["failed"]:
        catalog = Catalog(settings)
        for call_sid in result["failed"]:
            rec = catalog.get(business_id, call_sid)
            job = get_job(client, business_id, call_sid)
            if rec is not None:
                catalog.mark_failed(rec.id, "worker lost during the last attempt", job.attempts if job else 0)
            if job is not None:
                events.publish(client, business_id, call_sid, "failed", job.attempts, job.error, job.fence)
            report.failed.append((business_id, call_sid))
            log.warning("failed after losing its worker business_id=%s call_sid=%s", business_id, call_sid)


def rerequest_forgotten(client: redis.Redis, settings: Settings, report: SweepReport) -> None:
    """Bring back the wanted recordings Redis forgot, page by page through the catalog.

    A wanted recording whose job is gone (Redis flushed or restarted) or belongs to an earlier registration is
    requested again. One whose job is ``ready`` although the catalog never heard of it (the worker died after
    claiming the result and before storing it) is requested again even inside the dedup window, once its
    attempt no longer holds a live lease (a live one renews it while it stores, however long that takes) and a
    lease has passed since the claim. One whose job failed gets its catalog row set to failed.
    """
    catalog = Catalog(settings)
    now = now_ms(client)
    grace_ms = settings.lease_seconds * 1000
    after_id = 0
    while True:
        page = catalog.wanted(WANTED_PAGE, after_id)
        if not page:
            return
        after_id = page[-1].id
        pipe = client.pipeline(transaction=False)
        for rec in page:
            pipe.hmget(keys.job(rec.business_id, rec.call_sid), "status", "recording_id", "done_at", "error",
                       "attempts")
            pipe.zscore(keys.holders(rec.business_id), rec.call_sid)
        replies = pipe.execute()
        for rec, (status, recording_id, done_at, error, attempts), lease in zip(
                page, replies[::2], replies[1::2], strict=True):
            mode: RequestMode
            if status is None or recording_id != str(rec.id):
                mode = "fetch"
            elif status == "ready" and now - int(done_at or 0) > grace_ms and (lease or 0) <= now:
                mode = "force"
            elif status == "failed":
                catalog.mark_failed(rec.id, error or "failed", int(attempts or 0))
                report.repaired.append((rec.business_id, rec.call_sid))
                continue
            else:
                continue
            result = request_job(client, settings, rec.business_id, rec.call_sid, media_url=rec.media_url or "",
                                 recording_id=rec.id, mode=mode)
            if result.outcome == "enqueued" and result.task_id:
                send_download(rec.business_id, rec.call_sid, result.task_id)
                report.rerequested.append((rec.business_id, rec.call_sid))
                log.warning("re-requested a forgotten job business_id=%s call_sid=%s mode=%s",
                            rec.business_id, rec.call_sid, mode)
        if len(page) < WANTED_PAGE:
            return


def sweep(client: redis.Redis, settings: Settings, business_id: str | None = None) -> SweepReport:
    """One recovery pass over one business, or all of them."""
    report = SweepReport()
    businesses = [business_id] if business_id else sorted(str(b) for b in client.smembers(keys.BUSINESSES))
    for biz in businesses:
        sweep_business(client, settings, biz, report)
    if business_id is None:
        rerequest_forgotten(client, settings, report)
    if report.did_anything:
        log.info("sweep reclaimed=%s requeued=%s reparked=%s dispatched=%s failed=%s rerequested=%s repaired=%s",
                 report.reclaimed, report.requeued, report.reparked, len(report.dispatched), len(report.failed),
                 len(report.rerequested), len(report.repaired))
    return report
