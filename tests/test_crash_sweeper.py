"""The sweeper against real Redis and a real catalog: what it reclaims, requeues, re-hands and repairs, and that
two sweeps at once do each thing once."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from tasks.catalog.queries import Catalog
from tasks.ops import sweeper
from tasks.ops.sweeper import sweep
from tasks.recordings import Recordings
from tasks.slots import keys
from tasks.slots.jobs import finish_job, get_job
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked, Stale
from tasks.worker.tasks import sweep_task
from tests.conftest import run_threads
from tests.crashkit import holder_of, queued_messages, queued_task_ids

BIZ = "biz1"


def wanted(rclient, settings, call_sid, business_id=BIZ):
    """Register a recording and ask for it, as the API does; returns its job's task id."""
    catalog = Catalog(settings)
    rec, _ = catalog.register(business_id, call_sid, f"http://127.0.0.1:9/{business_id}/{call_sid}.wav", None)
    Recordings(rclient, settings, business_id).request(rec, "fetch")
    return get_job(rclient, business_id, call_sid).task_id


def drain(rclient):
    """Forget the messages sent so far (no worker runs here): what the sweep sends is what is left after."""
    rclient.delete("recplay", "recplay-handoff")


def expire(rclient, call_sid, business_id=BIZ):
    """Move a lease (or reservation) expiry into the past, as if its holder had died a lease ago."""
    rclient.zadd(keys.holders(business_id), {call_sid: 1})


def take(rclient, settings, call_sid, business_id=BIZ):
    task_id = wanted(rclient, settings, call_sid, business_id)
    return BusinessSlots(rclient, business_id, settings).acquire(call_sid, task_id, "w1"), task_id


def test_an_expired_lease_is_reclaimed_and_its_job_requeued_with_a_new_attempt_and_fence(rclient, settings):
    old, old_task = take(rclient, settings, "CA1")
    assert isinstance(old, Acquired)
    expire(rclient, "CA1")
    drain(rclient)

    report = sweep(rclient, settings)

    assert report.reclaimed == 1
    assert report.requeued == 1
    assert report.dispatched == [(BIZ, "CA1")]
    job = get_job(rclient, BIZ, "CA1")
    assert job.status == "queued"
    assert queued_task_ids(rclient, "CA1") == [job.task_id]
    slots = BusinessSlots(rclient, BIZ, settings)
    assert isinstance(slots.acquire("CA1", old_task, "w1"), Stale)
    new = slots.acquire("CA1", job.task_id, "w2")
    assert isinstance(new, Acquired)
    assert new.attempts == 2
    assert new.fence > old.fence
    assert finish_job(rclient, settings, BIZ, "CA1", old.fence, "ready") is False


def test_a_lost_hand_off_is_handed_again_once_its_reservation_expires(rclient, settings):
    slots = BusinessSlots(rclient, BIZ, settings)
    slots.set_limit(1)
    holder, _ = take(rclient, settings, "CA0")
    parked, _ = take(rclient, settings, "CP0")
    assert isinstance(parked, Parked)
    assert finish_job(rclient, settings, BIZ, "CA0", holder.fence, "ready")
    _, handed = slots.release("CA0", holder.fence)
    [(_, lost_task)] = handed  # its message is never sent: the process died right after the release
    expire(rclient, "CP0")
    drain(rclient)

    report = sweep(rclient, settings)

    assert report.reparked == 1
    assert report.dispatched == [(BIZ, "CP0")]
    [new_task] = queued_task_ids(rclient, "CP0")
    assert new_task != lost_task
    reservation = holder_of(rclient, BIZ, "CP0")
    assert (reservation.task_id, reservation.worker) == (new_task, "")
    assert isinstance(slots.acquire("CP0", lost_task, "w1"), Stale)
    claimed = slots.acquire("CP0", new_task, "w1")
    assert isinstance(claimed, Acquired)
    assert claimed.fence == reservation.fence
    assert slots.parked() == []


def test_a_lost_hand_off_keeps_its_place_at_the_head_of_the_line(rclient, settings):
    # Given one slot, two parked jobs, and the first of them handed the slot by a release whose message was lost
    slots = BusinessSlots(rclient, BIZ, settings)
    slots.set_limit(1)
    holder, _ = take(rclient, settings, "CA0")
    take(rclient, settings, "CP0")
    take(rclient, settings, "CP1")
    assert finish_job(rclient, settings, BIZ, "CA0", holder.fence, "ready")
    [(handed, lost_task)] = slots.release("CA0", holder.fence)[1]
    assert handed == "CP0"
    expire(rclient, "CP0")

    # When a new job asks while the expired reservation leaves the slot free, it does not jump the line
    newcomer, _ = take(rclient, settings, "CN")
    assert isinstance(newcomer, Parked)

    # Then the sweep puts the job whose hand-off was lost back at the head of the line and hands it the slot
    drain(rclient)
    report = sweep(rclient, settings)
    assert report.reparked == 1 and report.dispatched == [(BIZ, "CP0")]
    assert slots.parked() == ["CP1", "CN"]
    [new_task] = queued_task_ids(rclient, "CP0")
    assert new_task != lost_task
    assert isinstance(slots.acquire("CP0", lost_task, "w1"), Stale)
    assert isinstance(slots.acquire("CP0", new_task, "w1"), Acquired)


def test_a_request_whose_message_was_lost_is_dispatched_again_when_its_reservation_runs_out(rclient, settings,
                                                                                             caplog):
    lost_task = wanted(rclient, settings, "CA1")
    drain(rclient)  # the message was lost
    assert not sweep(rclient, settings).did_anything

    expire(rclient, "CA1")  # the slot reserved for it runs out
    with caplog.at_level(logging.INFO, logger="tasks"):
        report = sweep(rclient, settings)

    assert report.dispatched == [(BIZ, "CA1")]
    [new_task] = queued_task_ids(rclient, "CA1")
    assert new_task != lost_task
    assert get_job(rclient, BIZ, "CA1").task_id == new_task
    # one line for the job's new message, saying the sweep sent it
    assert [r.getMessage() for r in caplog.records if "dispatched" in r.getMessage()
            and "call_sid=" in r.getMessage()] == [
        f"dispatched business_id={BIZ} call_sid=CA1 task_id={new_task} countdown=None by=sweep"]
    assert isinstance(BusinessSlots(rclient, BIZ, settings).acquire("CA1", lost_task, "w1"), Stale)


def test_a_retry_whose_message_is_overdue_goes_back_in_line(rclient, settings):
    got, _ = take(rclient, settings, "CA1")
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "retry", error="503", retry_task_id="t-retry",
                      retry_in_seconds=30)
    BusinessSlots(rclient, BIZ, settings).release("CA1", got.fence)
    drain(rclient)
    assert not sweep(rclient, settings).did_anything  # its message waits out its backoff

    rclient.zadd(keys.due(BIZ), {"CA1": 1})  # the backoff and the deadline passed: the message was lost
    report = sweep(rclient, settings)

    assert report.dispatched == [(BIZ, "CA1")]
    [new_task] = queued_task_ids(rclient, "CA1")
    assert isinstance(BusinessSlots(rclient, BIZ, settings).acquire("CA1", "t-retry", "w1"), Stale)
    assert isinstance(BusinessSlots(rclient, BIZ, settings).acquire("CA1", new_task, "w1"), Acquired)


def test_a_job_that_lost_its_worker_on_its_last_attempt_is_failed(rclient, settings):
    take(rclient, settings, "CA1")
    rclient.hset(keys.job(BIZ, "CA1"), "attempts", settings.max_attempts)
    expire(rclient, "CA1")
    drain(rclient)

    report = sweep(rclient, settings)

    assert report.failed == [(BIZ, "CA1")]
    assert get_job(rclient, BIZ, "CA1").status == "failed"
    rec = Catalog(settings).get(BIZ, "CA1")
    assert (rec.state, rec.error) == ("failed", "worker lost during the last attempt")
    assert queued_messages(rclient) == []


def test_two_sweeps_at_once_requeue_rehand_and_rerequest_each_job_exactly_once(rclient, settings):
    # Given expired leases, overdue queued jobs, a lost hand-off and forgotten jobs, all at once
    for i in range(3):
        take(rclient, settings, f"E{i}")
    for i in range(2):
        wanted(rclient, settings, f"Q{i}")
        expire(rclient, f"Q{i}")  # the slot reserved for it ran out: its message was lost
    for i in range(2):
        wanted(rclient, settings, f"F{i}")
        rclient.delete(keys.job(BIZ, f"F{i}"))
    other = BusinessSlots(rclient, "biz2", settings)
    other.set_limit(1)
    holder, _ = take(rclient, settings, "X", "biz2")
    take(rclient, settings, "P", "biz2")
    assert finish_job(rclient, settings, "biz2", "X", holder.fence, "ready")
    other.release("X", holder.fence)
    expire(rclient, "P", "biz2")
    for i in range(3):
        expire(rclient, f"E{i}")
    drain(rclient)

    # When two sweeps run at the same moment
    reports = run_threads(2, lambda _i: sweep(rclient, settings))

    # Then each job was requeued, re-handed or re-requested by exactly one of them, with one message each
    done = Counter(c for r in reports for _, c in r.dispatched + r.rerequested)
    assert done == Counter(["E0", "E1", "E2", "F0", "F1", "P"])
    assert sum(r.reclaimed for r in reports) == 3
    assert sum(r.reparked for r in reports) == 3  # P's hand-off and Q0's and Q1's reservations
    for business_id, call_sid in [(BIZ, c) for c in ("E0", "E1", "E2")] + [("biz2", "P")]:
        assert queued_task_ids(rclient, call_sid) == [get_job(rclient, business_id, call_sid).task_id]
    # The slots the requeued jobs took were the business's free ones: the lost requests wait in line, once each,
    # ahead of the re-requested ones (they arrived first), without a message until a slot is handed to them.
    slots = BusinessSlots(rclient, BIZ, settings)
    assert slots.parked() == ["Q0", "Q1", "F0", "F1"]
    assert [queued_task_ids(rclient, c) for c in ("Q0", "Q1", "F0", "F1")] == [[], [], [], []]
    # And a sweep after them has nothing left to do
    assert not sweep(rclient, settings).did_anything


def test_a_beat_sweep_is_skipped_while_another_holds_the_lock(rclient, settings):
    lock = rclient.lock(keys.SWEEP_LOCK, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert sweep_task() == {"skipped": True}
    finally:
        lock.release()
    assert "reclaimed" in sweep_task()


def test_a_result_claimed_in_redis_but_never_stored_is_fetched_again_after_one_lease(rclient, settings):
    # Given a worker that marked its job ready and died before writing the catalog
    got, _ = take(rclient, settings, "CA1")
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "ready")
    drain(rclient)

    # Then a sweep within a lease leaves it to the worker, one after its lease ran out fetches it again
    assert not sweep(rclient, settings).did_anything
    rclient.zadd(keys.claimed(BIZ), {"CA1": 1})  # claimed a lease ago (and more)
    expire(rclient, "CA1")
    report = sweep(rclient, settings)

    assert report.rerequested == [(BIZ, "CA1")]
    job = get_job(rclient, BIZ, "CA1")
    assert job.status == "queued"
    assert queued_task_ids(rclient, "CA1") == [job.task_id]


def test_a_claimed_result_is_left_to_its_worker_while_it_renews_its_lease_however_long_it_takes(rclient, settings):
    # Given a worker that marked its job ready a long time ago and is still storing the result (its lease live)
    got, _ = take(rclient, settings, "CA1")
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "ready")
    rclient.zadd(keys.claimed(BIZ), {"CA1": 1})  # claimed a lease ago (and more)
    drain(rclient)

    # Then the sweeper does not fetch it again
    report = sweep(rclient, settings)

    assert report.rerequested == []
    assert get_job(rclient, BIZ, "CA1").status == "ready"
    assert queued_messages(rclient) == []
    assert BusinessSlots(rclient, BIZ, settings).renew("CA1", got.fence) is True


def test_a_failure_the_catalog_did_not_hear_of_is_written_to_it(rclient, settings):
    got, _ = take(rclient, settings, "CA1")
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "failed", error="provider answered 404")
    assert Catalog(settings).get(BIZ, "CA1").state == "wanted"

    report = sweep(rclient, settings)

    assert report.repaired == [(BIZ, "CA1")]
    rec = Catalog(settings).get(BIZ, "CA1")
    assert (rec.state, rec.error, rec.attempts) == ("failed", "provider answered 404", 1)


def test_forgotten_jobs_are_found_on_every_page_of_the_catalog(rclient, settings, monkeypatch):
    monkeypatch.setattr(sweeper, "WANTED_PAGE", 3)
    for i in range(7):
        wanted(rclient, settings, f"CA{i}")
        rclient.delete(keys.job(BIZ, f"CA{i}"))
    drain(rclient)

    report = sweep(rclient, settings)

    assert sorted(c for _, c in report.rerequested) == [f"CA{i}" for i in range(7)]
    # Each got its slot back (the reservation of its earlier life is void), up to the limit; the rest wait.
    assert len(queued_messages(rclient)) == settings.max_concurrent == 5
    assert BusinessSlots(rclient, BIZ, settings).parked() == ["CA5", "CA6"]


@pytest.mark.parametrize("status", ["queued", "processing"])
def test_a_live_job_is_left_alone(rclient, settings, status):
    if status == "processing":
        take(rclient, settings, "CA1")
    else:
        wanted(rclient, settings, "CA1")
    before = get_job(rclient, BIZ, "CA1")
    drain(rclient)

    assert not sweep(rclient, settings).did_anything
    assert get_job(rclient, BIZ, "CA1") == before
    assert queued_messages(rclient) == []
