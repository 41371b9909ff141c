"""Repairs an operator runs: ``recplay purge-stuck``, ``purge-queue``, ``set-limit`` and ``retry``.

Library code; the CLI only calls it. ``purge-stuck`` is a plan, then its application:

* the plan reads one snapshot of each business (holders, parked list, live jobs) and asks the workers named by
  holders whether they are alive (heartbeat, ping) and still run the task they hold a slot for;
* applying it releases the slots of gone workers (``lua/evict.lua``, compare-and-delete on the fence) and runs
  one :func:`tasks.ops.sweeper.sweep`, the beat's own recovery pass, which drops expired leases, requeues the jobs
  that lost their slot, re-sends overdue messages and hands free slots to parked jobs.

A dry run computes the same plan and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from tasks import metrics
from tasks.catalog.models import RecordingRow
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_handed
from tasks.errors import NotFound
from tasks.ops.sweeper import SweepReport, sweep
from tasks.ops.workers import WorkerState, check_workers
from tasks.recordings import Recordings, Status
from tasks.settings import Settings
from tasks.slots import keys
from tasks.slots.client import time_ms
from tasks.slots.jobs import get_job
from tasks.slots.scripts import script
from tasks.slots.semaphore import BusinessSlots, parse_holder_info

log = logging.getLogger(__name__)

#: Waiting jobs one purge script call drops at most.
PURGE_BATCH = 500
#: Seconds ``purge-stuck`` waits for a running beat sweep to finish before it sweeps anyway (sweeps are safe
#: to run together; the lock only saves doing the same work twice).
SWEEP_LOCK_WAIT_SECONDS = 10


@dataclass(frozen=True)
class SlotRelease:
    """A slot the repair frees: an expired lease (the sweep drops it) or a gone worker's (evicted)."""

    business_id: str
    call_sid: str
    task_id: str
    worker: str
    fence: str
    expired: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"business_id": self.business_id, "call_sid": self.call_sid, "task_id": self.task_id,
                "worker": self.worker or None, "reason": self.reason}


@dataclass(frozen=True)
class JobRepair:
    """What the sweep will do to one job: requeue, fail, redispatch, repark, hand-off or rerequest."""

    business_id: str
    call_sid: str
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"business_id": self.business_id, "call_sid": self.call_sid, "action": self.action,
                "reason": self.reason}


@dataclass
class RepairPlan:
    releases: list[SlotRelease] = field(default_factory=list)
    jobs: list[JobRepair] = field(default_factory=list)
    workers: dict[str, WorkerState] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.releases and not self.jobs

    def as_dict(self) -> dict[str, Any]:
        return {"release": [r.as_dict() for r in self.releases], "jobs": [j.as_dict() for j in self.jobs]}


@dataclass
class RepairResult:
    evicted: list[tuple[str, str]]
    sweep: SweepReport

    def as_dict(self) -> dict[str, Any]:
        evicted = [{"business_id": b, "call_sid": c} for b, c in self.evicted]
        return {"evicted": evicted, **self.sweep.as_dict()}


@dataclass
class _Snapshot:
    business_id: str
    now_ms: int
    limit: int
    holders: list[tuple[str, int, str, str, str]]  # call_sid, expiry ms, fence, task_id, worker
    first_parked: list[str]  # the oldest few parked jobs (the hand-offs a repair would make come from these)
    overdue: list[str]  # queued jobs whose retry message is overdue (a bounded batch)
    jobs: dict[str, dict[str, str]]  # call_sid -> status, fence, task_id, attempts


_JOB_FIELDS = ("status", "fence", "task_id", "attempts")
#: Entries of each index a plan reads per business, as a sweep script call handles at most.
PLAN_BATCH = 100


def _snapshot(client: redis.Redis, settings: Settings, business_id: str) -> _Snapshot:
    """What a sweep of this business would look at now: its holders (the limit plus expired ones), the oldest
    parked jobs and overdue messages; never its whole line."""
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.zrange(keys.holders(business_id), 0, -1, withscores=True)
    pipe.hgetall(keys.holder_info(business_id))
    pipe.get(keys.limit(business_id))
    clock, members, info, own_limit = pipe.execute()
    now = time_ms(clock)
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.waiting(business_id), 0, PLAN_BATCH - 1)
    pipe.zrangebyscore(keys.due(business_id), "-inf", now, start=0, num=PLAN_BATCH)
    first_parked, overdue = pipe.execute()
    holders = []
    for call_sid, expiry in members:
        fence, task_id, worker = parse_holder_info(info.get(call_sid))
        holders.append((call_sid, int(expiry), fence, task_id, worker))
    names = list(dict.fromkeys([*(h[0] for h in holders), *overdue, *first_parked]))
    pipe = client.pipeline(transaction=False)
    for call_sid in names:
        pipe.hmget(keys.job(business_id, call_sid), _JOB_FIELDS)
    jobs = {}
    for call_sid, values in zip(names, pipe.execute(), strict=True):
        if values[0] is not None:
            jobs[call_sid] = {k: v or "" for k, v in zip(_JOB_FIELDS, values, strict=True)}
    return _Snapshot(business_id, now, int(own_limit) if own_limit is not None else settings.max_concurrent,
                     holders, first_parked, overdue, jobs)


def _businesses(client: redis.Redis, business_id: str | None) -> list[str]:
    if business_id:
        return [business_id]
    return sorted(str(b) for b in client.sscan_iter(keys.BUSINESSES, count=500))


def _plan_releases(snap: _Snapshot, workers: dict[str, WorkerState], heartbeat: float) -> list[SlotRelease]:
    found = []
    for call_sid, expiry, fence, task_id, worker in snap.holders:
        reason = None
        if expiry <= snap.now_ms:
            reason = f"lease expired {(snap.now_ms - expiry) / 1000:.1f}s ago"
        elif worker and worker in workers:
            state = workers[worker]
            if state.gone(heartbeat):
                reason = f"its worker is gone: {state.describe(heartbeat)}"
            elif not state.runs(task_id):
                reason = "its worker answers but no longer runs this task (restarted under the same name?)"
        if reason:
            found.append(SlotRelease(snap.business_id, call_sid, task_id, worker, fence,
                                     expired=expiry <= snap.now_ms, reason=reason))
    return found


def _plan_jobs(snap: _Snapshot, released: set[str], max_attempts: int) -> list[JobRepair]:
    """Mirror of sweep.lua over the snapshot, with the planned releases already applied."""
    biz, found = snap.business_id, []
    back_in_line: list[str] = []
    live = 0
    for call_sid, expiry, fence, task_id, worker in snap.holders:
        job = snap.jobs.get(call_sid, {})
        if call_sid not in released and expiry > snap.now_ms:
            live += 1
            continue
        if not worker:
            if job.get("status") == "queued" and job.get("task_id") == task_id:
                found.append(JobRepair(biz, call_sid, "repark", "its hand-off message never claimed the slot"))
                back_in_line.append(call_sid)
        elif job.get("status") == "processing" and job.get("fence") == fence:
            if int(job.get("attempts") or 0) >= max_attempts:
                found.append(JobRepair(biz, call_sid, "fail", "lost its slot on its last attempt"))
            else:
                found.append(JobRepair(biz, call_sid, "requeue", "lost its slot; back in line for a new attempt"))
                back_in_line.append(call_sid)
    for call_sid in snap.overdue:
        if snap.jobs.get(call_sid, {}).get("status") == "queued":
            found.append(JobRepair(biz, call_sid, "repark", "its retry message is overdue"))
            back_in_line.append(call_sid)
    free = snap.limit - live
    # Jobs put back in line arrived before every parked one (they were running or on their way): they go first.
    for call_sid in [*back_in_line, *snap.first_parked][:max(free, 0)]:
        found.append(JobRepair(biz, call_sid, "hand-off", "a slot of its business is free"))
    return found


def plan_repair(
    app: Celery, client: redis.Redis, settings: Settings, business_id: str | None = None,
    ping_timeout: float = 2.0,
) -> RepairPlan:
    """What ``purge-stuck`` would do now; reads only (the workers are pinged)."""
    snaps = [_snapshot(client, settings, biz) for biz in _businesses(client, business_id)]
    names = {w for s in snaps for c, expiry, _f, _t, w in s.holders if w and expiry > s.now_ms}
    workers = check_workers(app, client, names, ping_timeout, with_tasks=True)
    plan = RepairPlan(workers=workers)
    for snap in snaps:
        releases = _plan_releases(snap, workers, settings.worker_heartbeat_seconds)
        plan.releases.extend(releases)
        plan.jobs.extend(_plan_jobs(snap, {r.call_sid for r in releases}, settings.max_attempts))
    if business_id is None and client.get(keys.CATALOG_SYNCED) != str(client.info("server").get("run_id", "")):
        # Redis lost its data: the sweep will read the catalog's wanted rows once (sweeper.rerequest_forgotten).
        wanted: list[RecordingRow] = Catalog(settings).wanted(PLAN_BATCH)
        for rec in wanted:
            if get_job(client, rec.business_id, rec.call_sid) is None:
                plan.jobs.append(JobRepair(rec.business_id, rec.call_sid, "rerequest",
                                           "wanted, but Redis has no job for it"))
    return plan


def evict(client: redis.Redis, business_id: str, holders: list[tuple[str, str]]) -> list[str]:
    """Release the slots of (call_sid, fence) holders found gone; returns the call_sids released."""
    if not holders:
        return []
    args = [value for pair in holders for value in pair]
    return list(script(client, "evict")(keys=keys.business_keys(business_id), args=args))


def apply_repair(client: redis.Redis, settings: Settings, plan: RepairPlan,
                 business_id: str | None = None) -> RepairResult:
    """Evict the gone workers' slots of ``plan``, then sweep (the sweep reclaims, requeues and hands off)."""
    lock = client.lock(keys.SWEEP_LOCK, timeout=60, blocking_timeout=SWEEP_LOCK_WAIT_SECONDS)
    locked = lock.acquire()
    try:
        evicted: list[tuple[str, str]] = []
        by_business: dict[str, list[tuple[str, str]]] = {}
        for r in plan.releases:
            if not r.expired:
                by_business.setdefault(r.business_id, []).append((r.call_sid, r.fence))
        for biz, holders in by_business.items():
            for call_sid in evict(client, biz, holders):
                evicted.append((biz, call_sid))
                log.warning("slot released, its worker is gone business_id=%s call_sid=%s", biz, call_sid)
        metrics.count(client, metrics.EVICTED_LEASES, len(evicted))
        report = sweep(client, settings, business_id)
    finally:
        if locked:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("sweep lock expired before the repair finished")
    return RepairResult(evicted, report)


@dataclass
class QueuePurge:
    business_id: str
    dropped: list[str]
    returned_to_new: list[str]
    handed: list[tuple[str, str]]


def waiting_jobs(client: redis.Redis, business_id: str, first: int = PURGE_BATCH) -> tuple[int, list[str]]:
    """How many of the business's jobs wait to run, and the oldest ``first`` of them: parked ones, then those
    whose retry message is out. Jobs holding a reservation (a slot waits for them) are not counted here, though
    :func:`purge_queue` drops them too."""
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.waiting(business_id))
    pipe.zcard(keys.due(business_id))
    pipe.zrange(keys.waiting(business_id), 0, first - 1)
    pipe.zrange(keys.due(business_id), 0, first - 1)
    parked, retrying, first_parked, first_retrying = pipe.execute()
    return int(parked) + int(retrying), [*first_parked, *first_retrying][:first]


def purge_queue(client: redis.Redis, settings: Settings, business_id: str,
                call_sids: list[str] | None = None) -> QueuePurge:
    """Drop the business's waiting jobs (all of them, or those of ``call_sids`` still queued), in batches of
    :data:`PURGE_BATCH`: no single script call grows with the backlog. Their recordings return to ``new``."""
    catalog = Catalog(settings)
    dropped: list[str] = []
    unwanted: set[str] = set()
    batches = (call_sids[i:i + PURGE_BATCH] for i in range(0, len(call_sids), PURGE_BATCH)) if call_sids is not None \
        else _waiting_batches(client, business_id)
    for batch in batches:
        # The catalog first: a sweep between the two steps must not re-request a wanted row whose job is gone.
        marked = catalog.mark_unwanted(business_id, batch)
        done = list(script(client, "purge")(keys=keys.business_keys(business_id), args=batch))
        for call_sid in set(marked) - set(done):
            rec = catalog.get(business_id, call_sid)  # it started running meanwhile: it stays wanted
            if rec is not None:
                catalog.mark_wanted(rec.id)
        dropped.extend(done)
        unwanted.update(marked)
    handed = BusinessSlots(client, business_id, settings).hand_off()
    send_handed(business_id, handed, by="purge")
    log.info("waiting jobs dropped, recordings back to new business_id=%s dropped=%s", business_id, len(dropped))
    return QueuePurge(business_id, dropped, sorted(unwanted & set(dropped)), handed)


def _waiting_batches(client: redis.Redis, business_id: str) -> Iterator[list[str]]:
    """The oldest waiting jobs, a batch at a time, until none is left (each batch is dropped before the next
    is read, so the same range keeps bringing new ones); at most as many batches as the jobs waiting when it
    began need, so requests arriving meanwhile cannot keep it going."""
    # The jobs a slot is reserved for (their message is on its way) are waiting too: a handful, the limit's worth.
    info: dict[str, str] = client.hgetall(keys.holder_info(business_id))  # type: ignore[assignment]
    reserved = [call_sid for call_sid, value in info.items() if not parse_holder_info(value)[2]]
    if reserved:
        yield reserved
    for index in (keys.waiting(business_id), keys.due(business_id)):
        for _ in range(int(client.zcard(index)) // PURGE_BATCH + 1):
            batch = [str(c) for c in client.zrange(index, 0, PURGE_BATCH - 1)]
            if not batch:
                break
            yield batch
            client.zrem(index, *batch)  # a running job purge.lua left alone stays running, out of line


@dataclass
class LimitChange:
    business_id: str
    previous: int
    limit: int
    handed: list[tuple[str, str]]


def set_limit(client: redis.Redis, settings: Settings, business_id: str, limit: int) -> LimitChange:
    """Set a business's own limit now; a raised limit hands its new slots to parked jobs at once."""
    slots = BusinessSlots(client, business_id, settings)
    previous = slots.limit()
    handed = slots.set_limit(limit)
    send_handed(business_id, handed, by="limit")
    log.info("limit set business_id=%s limit=%s previous=%s handed=%s",
             business_id, limit, previous, len(handed))
    return LimitChange(business_id, previous, limit, handed)


@dataclass
class RetryResult:
    retried: bool
    before: Status
    after: Status


def retry(client: redis.Redis, settings: Settings, business_id: str, call_sid: str) -> RetryResult:
    """A new attempt for a failed recording; any other recording is left as it is.

    Raises:
        NotFound: the business has no such recording.
    """
    recs = Recordings(client, settings, business_id)
    rec = recs.get(call_sid)
    if rec is None:
        raise NotFound(f"business {business_id} has no recording {call_sid}")
    before = recs.status(rec)
    if before.status != "failed":
        return RetryResult(False, before, before)
    after = recs.request(rec, "fetch")
    log.info("retry requested business_id=%s call_sid=%s", business_id, call_sid)
    return RetryResult(True, before, after)
