"""The Lua scripts against real Redis: leases, fences, parking, hand-off, and the job registry's dedup."""

from __future__ import annotations

import random

import pytest

from tasks.slots import keys
from tasks.slots.jobs import finish_job, get_job, request_job
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked, Stale

BIZ = "biz1"


@pytest.fixture
def slots(rclient, settings):
    return BusinessSlots(rclient, BIZ, settings)


def queue(rclient, settings, call_sid, recording_id=1):
    """Create a job as the API does; returns its task id, or None when it parked at once (no message)."""
    result = request_job(rclient, settings, BIZ, call_sid, media_url="http://h/x", recording_id=recording_id)
    assert result.outcome in ("enqueued", "parked")
    assert (result.task_id is not None) == (result.outcome == "enqueued")
    return result.task_id


def take(slots, rclient, settings, call_sid, worker="w1"):
    """Request a job and, when a slot was reserved for it, run its task's acquire as a worker would."""
    task_id = queue(rclient, settings, call_sid)
    if task_id is None:
        return Parked(), None
    return slots.acquire(call_sid, task_id, worker), task_id


def expire(rclient, call_sid):
    """Move a holder's lease expiry into the past, as if its worker had died a lease ago."""
    rclient.zadd(keys.holders(BIZ), {call_sid: 1})


def test_acquire_gives_a_slot_with_a_fresh_fence_up_to_the_limit_then_parks(slots, rclient, settings):
    got = [take(slots, rclient, settings, f"CA{i}")[0] for i in range(6)]
    assert [type(g) for g in got] == [Acquired] * 5 + [Parked]
    fences = [g.fence for g in got[:5]]
    # Fences only grow (seeded from Redis TIME, so they stay above any handed out before a Redis restore).
    assert fences == sorted(set(fences)) and len(fences) == 5
    assert slots.active() == 5
    assert slots.parked() == ["CA5"]
    assert get_job(rclient, BIZ, "CA5").status == "queued"
    assert get_job(rclient, BIZ, "CA0").status == "processing"


def test_expired_leases_stop_counting_at_once(slots, rclient, settings):
    for i in range(5):
        take(slots, rclient, settings, f"CA{i}")
    expire(rclient, "CA0")
    assert slots.active() == 4
    got, _ = take(slots, rclient, settings, "CA9")
    assert isinstance(got, Acquired)
    assert {h.call_sid for h in slots.holders()} == {"CA1", "CA2", "CA3", "CA4", "CA9"}


def test_release_is_compare_and_delete_on_the_fence(slots, rclient, settings):
    got, _ = take(slots, rclient, settings, "CA1")
    assert isinstance(got, Acquired)
    released, _ = slots.release("CA1", got.fence + 1)
    assert released is False
    assert slots.active() == 1
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "ready") is True
    released, _ = slots.release("CA1", got.fence)
    assert released is True
    assert slots.active() == 0
    assert slots.release("CA1", got.fence)[0] is False


def test_a_release_hands_the_slot_to_the_next_parked_job_with_a_reservation(slots, rclient, settings):
    held = [take(slots, rclient, settings, f"CA{i}")[0] for i in range(5)]
    parked = [take(slots, rclient, settings, f"CP{i}")[0] for i in range(2)]
    assert all(isinstance(p, Parked) for p in parked)

    assert finish_job(rclient, settings, BIZ, "CA0", held[0].fence, "ready") is True
    released, handed = slots.release("CA0", held[0].fence)
    assert released is True
    assert [c for c, _ in handed] == ["CP0"]
    assert slots.parked() == ["CP1"]
    assert slots.active() == 5  # the reservation counts
    reservation = next(h for h in slots.holders() if h.call_sid == "CP0")
    assert reservation.reserved
    assert reservation.lease_seconds_left <= settings.reservation_seconds

    # The handed task claims the reservation; a stale message for the same job is dropped.
    _, task_id = handed[0]
    assert isinstance(slots.acquire("CP0", "an-old-task-id", "w2"), Stale)
    claimed = slots.acquire("CP0", task_id, "w2")
    assert isinstance(claimed, Acquired)
    assert claimed.fence == int(reservation.fence)
    assert slots.active() == 5


def test_renew_extends_only_a_live_lease_of_the_same_fence(slots, rclient, settings):
    got, _ = take(slots, rclient, settings, "CA1")
    assert slots.renew("CA1", got.fence) is True
    assert slots.renew("CA1", got.fence + 1) is False
    expire(rclient, "CA1")
    assert slots.renew("CA1", got.fence) is False
    assert slots.active() == 0


def test_a_stale_fence_cannot_mark_a_job_ready(slots, rclient, settings):
    got, _ = take(slots, rclient, settings, "CA1")
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence + 7, "ready") is False
    assert get_job(rclient, BIZ, "CA1").status == "processing"
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "ready") is True
    assert get_job(rclient, BIZ, "CA1").status == "ready"
    # Once finished, no attempt can finish it again.
    assert finish_job(rclient, settings, BIZ, "CA1", got.fence, "failed", error="late") is False
    assert get_job(rclient, BIZ, "CA1").status == "ready"


def test_a_reclaimed_and_requeued_attempt_cannot_mark_the_job_ready(slots, rclient, settings):
    from tasks.ops.sweeper import sweep

    old, _ = take(slots, rclient, settings, "CA1")
    expire(rclient, "CA1")
    report = sweep(rclient, settings, BIZ)
    assert report.reclaimed == 1
    job = get_job(rclient, BIZ, "CA1")
    assert job.status == "queued"
    new = slots.acquire("CA1", job.task_id, "w2")
    assert isinstance(new, Acquired)
    assert new.fence > old.fence
    assert new.attempts == 2
    assert finish_job(rclient, settings, BIZ, "CA1", old.fence, "ready") is False
    assert slots.renew("CA1", old.fence) is False
    assert slots.release("CA1", old.fence)[0] is False
    assert slots.active() == 1


def test_a_hundred_shuffled_concurrent_requests_create_one_job(rclient, settings):
    from tests.conftest import run_threads

    order = list(range(100))
    random.shuffle(order)
    results = run_threads(100, lambda i: request_job(rclient, settings, BIZ, f"CA{order[i] % 3}",
                                                      media_url="http://h/x", recording_id=order[i] % 3 + 1))
    enqueued = [r for r in results if r.outcome == "enqueued"]
    assert len(enqueued) == 3
    assert sorted({r.task_id for r in enqueued}) == sorted(
        get_job(rclient, BIZ, f"CA{i}").task_id for i in range(3))


def test_a_finished_job_is_not_run_again_inside_the_dedup_window(slots, rclient, settings):
    got, _ = take(slots, rclient, settings, "CA1")
    finish_job(rclient, settings, BIZ, "CA1", got.fence, "ready")
    again = request_job(rclient, settings, BIZ, "CA1", media_url="http://h/x", recording_id=1)
    assert again.outcome == "ready"
    forced = request_job(rclient, settings, BIZ, "CA1", media_url="http://h/x", recording_id=1, mode="force")
    assert forced.outcome == "enqueued"


def test_a_failed_job_gets_a_new_attempt_on_fetch_but_not_on_stream(slots, rclient, settings):
    got, _ = take(slots, rclient, settings, "CA1")
    finish_job(rclient, settings, BIZ, "CA1", got.fence, "failed", error="provider answered 404")
    on_stream = request_job(rclient, settings, BIZ, "CA1", media_url="http://h/x", recording_id=1, mode="stream")
    assert on_stream.outcome == "failed"
    assert on_stream.error == "provider answered 404"
    on_fetch = request_job(rclient, settings, BIZ, "CA1", media_url="http://h/x", recording_id=1)
    assert on_fetch.outcome == "enqueued"
    assert get_job(rclient, BIZ, "CA1").attempts == 0


def test_a_raised_limit_hands_out_slots_to_parked_jobs_at_once(slots, rclient, settings):
    for i in range(7):
        take(slots, rclient, settings, f"CA{i}")
    assert slots.parked() == ["CA5", "CA6"]
    handed = slots.set_limit(7)
    assert [c for c, _ in handed] == ["CA5", "CA6"]
    assert slots.parked() == []
    assert slots.active() == 7
    assert slots.limit() == 7


def test_a_deleted_parked_job_is_skipped_by_the_hand_off(slots, rclient, settings):
    from tasks.slots.jobs import delete_job

    held = [take(slots, rclient, settings, f"CA{i}")[0] for i in range(5)]
    take(slots, rclient, settings, "CP0")
    take(slots, rclient, settings, "CP1")
    delete_job(rclient, BIZ, "CP0")
    assert finish_job(rclient, settings, BIZ, "CA0", held[0].fence, "ready") is True
    _, handed = slots.release("CA0", held[0].fence)
    assert [c for c, _ in handed] == ["CP1"]
