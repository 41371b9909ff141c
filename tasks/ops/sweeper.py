"""Recovery as library code: the beat task (``tasks.sweep``, :mod:`tasks.worker.tasks`) and ``recplay
purge-stuck`` both call :func:`sweep`.

A sweep visits only what is due, through indexes ordered by deadline (lua/lib.lua): expired leases (their
jobs go back in line for a new attempt, with a new fence), expired reservations (lost hand-offs: back in line),
overdue retry messages, and finished jobs the catalog never heard of (a worker died in between); then it hands
free slots to the oldest parked jobs. Its cost follows what went wrong, not the size of the backlog: a business
with nothing due costs three O(log n) counts, and every script call handles a bounded batch. After Redis lost
its data it also brings back, once, the recordings the catalog says are wanted.

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
from tasks.catalog.models import FAILED, WANTED, RecordingRow
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_download, send_handed
from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.client import now_ms
from tasks.slots.jobs import RequestMode, finished_ttl_ms, get_job, request_job, settle
from tasks.slots.scripts import script

log = logging.getLogger(__name__)


#: Catalog rows read per query while looking for forgotten jobs.
WANTED_PAGE = 500
#: Entries of each index one sweep script call handles at most: a call stays well under a millisecond.
BATCH = 100
#: Businesses probed per pipeline (and asked per SSCAN step).
PROBE_PAGE = 500


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
    """One business's recovery, in bounded script calls (each at most :data:`BATCH` entries of each index)."""
    catalog: Catalog | None = None
    while True:
        reply = script(client, "sweep")(
            keys=keys.business_keys(business_id),
            args=[settings.max_concurrent, settings.reservation_seconds * 1000, settings.max_attempts,
                  uuid.uuid4().hex, finished_ttl_ms(settings), BATCH, settings.lease_seconds * 1000],
        )
        result = json.loads(reply)
        report.reclaimed += int(result["reclaimed"])
        report.reparked += int(result["reparked"]) + int(result["overdue"])
        report.requeued += int(result["requeued"])
        metrics.count(client, metrics.RECLAIMED_LEASES, int(result["reclaimed"]))
        metrics.count(client, "lost_handoffs", int(result["reparked"]))
        metrics.count(client, "requeued_jobs", int(result["requeued"]))
        # cjson encodes an empty table as an object.
        dispatch = [(str(call_sid), str(task_id)) for call_sid, task_id in result["dispatch"] or []]
        send_handed(business_id, dispatch, by="sweep")  # (one round trip, as a release's; it logs each)
        report.dispatched.extend((business_id, call_sid) for call_sid, _ in dispatch)
        if result["failed"] or result["claimed"]:
            catalog = catalog or Catalog(settings)
            for call_sid in result["failed"] or []:
                _settle_failed(client, catalog, business_id, call_sid, "worker lost during the last attempt")
                report.failed.append((business_id, call_sid))
                log.warning("failed after losing its worker business_id=%s call_sid=%s", business_id, call_sid)
            for call_sid, status, live in result["claimed"] or []:
                _settle_claimed(client, settings, catalog, business_id, call_sid, status, bool(live), report)
        if not result["more"]:
            return


def _settle_failed(client: redis.Redis, catalog: Catalog, business_id: str, call_sid: str, error: str) -> None:
    rec = catalog.get(business_id, call_sid)
    job = get_job(client, business_id, call_sid)
    if rec is not None and (job is None or job.recording_id == str(rec.id)):
        catalog.mark_failed(rec.id, job.error if job and job.error else error, job.attempts if job else 0)
    if job is not None:
        events.publish(client, business_id, call_sid, "failed", job.attempts, job.error or error, job.fence)
    settle(client, business_id, call_sid)


def _settle_claimed(client: redis.Redis, settings: Settings, catalog: Catalog, business_id: str, call_sid: str,
                    status: str, live: bool, report: SweepReport) -> None:
    """A job finished a lease ago and the catalog has not recorded it: its worker died in between (or is still
    storing the result, renewing its lease: then look again later)."""
    if live:
        client.zadd(keys.claimed(business_id), {call_sid: now_ms(client)})
        return
    rec = catalog.get(business_id, call_sid)
    job = get_job(client, business_id, call_sid)
    if rec is None or job is None or job.recording_id != str(rec.id) or rec.state != WANTED:
        settle(client, business_id, call_sid)  # deleted, expired, or the catalog caught up
        return
    if status == FAILED:
        _settle_failed(client, catalog, business_id, call_sid, "failed")
        report.repaired.append((business_id, call_sid))
        return
    # Claimed ready, never stored: fetch it again, even inside the dedup window.
    settle(client, business_id, call_sid)
    _rerequest(client, settings, rec, "force", report)


def _rerequest(client: redis.Redis, settings: Settings, rec: RecordingRow, mode: RequestMode,
               report: SweepReport) -> None:
    result = request_job(client, settings, rec.business_id, rec.call_sid, media_url=rec.media_url or "",
                         recording_id=rec.id, mode=mode)
    if result.outcome in ("enqueued", "parked"):
        if result.task_id:
            send_download(rec.business_id, rec.call_sid, result.task_id)
        report.rerequested.append((rec.business_id, rec.call_sid))
        log.warning("re-requested a forgotten job business_id=%s call_sid=%s mode=%s",
                    rec.business_id, rec.call_sid, mode)


def rerequest_forgotten(client: redis.Redis, settings: Settings, report: SweepReport) -> None:
    """Bring back the wanted recordings Redis forgot, page by page through the catalog, once per loss.

    Redis keeps a marker (``keys.CATALOG_SYNCED``) holding the run id of the server it was written on. A Redis
    that lost its data (flushed, restarted empty or from an older snapshot, a replica promoted before it had
    every write) lacks it or holds another server's run id. Then this reads the catalog's wanted rows once and
    requests again each one whose job is gone or belongs to an earlier registration; one whose job failed gets
    its catalog row set to failed. Otherwise this costs a GET and an INFO: what a dead worker leaves between
    Redis and the catalog is found through ``claimed`` instead (:func:`sweep_business`).
    """
    run_id = str(client.info("server").get("run_id", ""))
    if client.get(keys.CATALOG_SYNCED) == run_id:
        return
    catalog = Catalog(settings)
    after_id = 0
    while True:
        page = catalog.wanted(WANTED_PAGE, after_id)
        if not page:
            break
        after_id = page[-1].id
        pipe = client.pipeline(transaction=False)
        for rec in page:
            pipe.hmget(keys.job(rec.business_id, rec.call_sid), "status", "recording_id", "error", "attempts")
        for rec, (status, recording_id, error, attempts) in zip(page, pipe.execute(), strict=True):
            if status is None or recording_id != str(rec.id):
                _rerequest(client, settings, rec, "fetch", report)
            elif status == FAILED:
                catalog.mark_failed(rec.id, error or "failed", int(attempts or 0))
                report.repaired.append((rec.business_id, rec.call_sid))
        if len(page) < WANTED_PAGE:
            break
    client.set(keys.CATALOG_SYNCED, run_id)


def due_businesses(client: redis.Redis, settings: Settings) -> list[str]:
    """The businesses with something due now: an expired lease or reservation, an overdue message, a finished
    job the catalog has not recorded for a lease. Three O(log n) counts a business, pipelined, SSCAN'd in
    pages: a pass over 10,000 businesses is a few tens of thousands of cheap commands, no script."""
    now = now_ms(client)
    settled_before = now - settings.lease_seconds * 1000
    found: list[str] = []
    page: list[str] = []
    for business_id in client.sscan_iter(keys.BUSINESSES, count=PROBE_PAGE):
        page.append(str(business_id))
        if len(page) == PROBE_PAGE:
            found.extend(_probe(client, page, now, settled_before))
            page = []
    if page:
        found.extend(_probe(client, page, now, settled_before))
    return sorted(set(found))


def _probe(client: redis.Redis, businesses: list[str], now: int, settled_before: int) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for business_id in businesses:
        pipe.zcount(keys.holders(business_id), "-inf", now)
        pipe.zcount(keys.due(business_id), "-inf", now)
        pipe.zcount(keys.claimed(business_id), "-inf", settled_before)
    counts = pipe.execute()
    return [b for i, b in enumerate(businesses) if any(counts[3 * i:3 * i + 3])]


def sweep(client: redis.Redis, settings: Settings, business_id: str | None = None) -> SweepReport:
    """One recovery pass over one business, or over every business that has something due."""
    report = SweepReport()
    if business_id is None:
        migrate_layout(client, settings)
        businesses = due_businesses(client, settings)
    else:
        businesses = [business_id]
    for biz in businesses:
        sweep_business(client, settings, biz, report)
    if business_id is None:
        rerequest_forgotten(client, settings, report)
    if report.did_anything:
        log.info("sweep reclaimed=%s requeued=%s reparked=%s dispatched=%s failed=%s rerequested=%s repaired=%s",
                 report.reclaimed, report.requeued, report.reparked, len(report.dispatched), len(report.failed),
                 len(report.rerequested), len(report.repaired))
    return report


def migrate_layout(client: redis.Redis, settings: Settings) -> None:
    """Move every business's state from the layout of earlier releases, once (``lua/migrate.lua``)."""
    if client.exists(keys.LAYOUT_V2):
        return
    for business_id in client.sscan_iter(keys.BUSINESSES, count=PROBE_PAGE):
        legacy = [keys.legacy_parked(str(business_id)), keys.legacy_active(str(business_id))]
        while script(client, "migrate")(keys=[*keys.business_keys(str(business_id)), *legacy],
                                        args=[BATCH, settings.queued_deadline_seconds * 1000]):
            pass
    client.set(keys.LAYOUT_V2, "1")
