"""Download attempts driven in this process against real Redis, the real catalog and store and the provider
stand-in: the heartbeat, the fence, a result that cannot be stored, and giving up the slots a task left behind.

These pin down the exact moment a fault strikes (an attempt held at the provider while its lease is reclaimed
and another attempt finishes), which a killed process cannot do.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time

from tasks.catalog.queries import Catalog
from tasks.metrics import read_counters
from tasks.ops.sweeper import sweep
from tasks.recordings import Recordings
from tasks.slots import keys
from tasks.slots.jobs import get_job
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked
from tasks.worker import download, held
from tasks.worker.download import Attempt, Heartbeat
from tests.conftest import wait_for
from tests.crashkit import assert_stored_whole, holder_of, media_files, queued_task_ids, stored, wait_holder
from tests.provider import Behaviour, make_wav

BIZ = "biz1"
OLD, NEW = make_wav(1.0, freq=440.0), make_wav(1.0, freq=660.0)


def ask(rclient, settings, call_sid, url):
    """Register and fetch, as the API does; returns the job's task id."""
    rec, _ = Catalog(settings).register(BIZ, call_sid, url, None)
    Recordings(rclient, settings, BIZ).request(rec, "fetch")
    return get_job(rclient, BIZ, call_sid).task_id


def in_thread(attempt):
    """Run ``attempt`` in a thread, as a worker thread would; returns (thread, result holder)."""
    result: dict[str, str] = {}

    def target() -> None:
        try:
            result["outcome"] = attempt.run()
        finally:
            # A worker thread keeps its provider session for its whole life; this one ends here.
            fetcher = getattr(download._local, "fetcher", None)
            if fetcher is not None:
                fetcher.session.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def run(attempt):
    """Run ``attempt`` to its end, in a thread of its own as a worker would: what it binds to its logging
    context stays there."""
    thread, result = in_thread(attempt)
    thread.join(60)
    return result["outcome"]


def reclaim(rclient, settings, call_sid):
    """The holder's lease runs out and a sweep requeues its job; returns the job's new task id."""
    rclient.zadd(keys.holders(BIZ), {call_sid: 1})
    report = sweep(rclient, settings)
    assert (BIZ, call_sid) in report.dispatched
    return get_job(rclient, BIZ, call_sid).task_id


def test_an_attempt_whose_lease_is_reclaimed_stops_mid_download_and_discards_it(rclient, settings, provider):
    # Given an attempt with a 3 s lease downloading a body the provider trickles over 8 s
    url = provider.add("/biz1/a.wav", body=OLD, trickle_seconds=8.0)
    task_id = ask(rclient, settings, "CA1", url)
    attempt = Attempt(BIZ, "CA1", task_id, "w1", dataclasses.replace(settings, lease_seconds=3))
    started = time.monotonic()
    thread, result = in_thread(attempt)
    wait_holder(rclient, BIZ, "CA1")
    wait_for(lambda: provider.requests["/biz1/a.wav"] == 1, 10, "the download to start")

    # When its lease is reclaimed and the job requeued
    new_task = reclaim(rclient, settings, "CA1")

    # Then its heartbeat finds the lease gone, the download stops long before the body ends, nothing is kept
    thread.join(20)
    assert result["outcome"] == "lease_lost"
    assert time.monotonic() - started < 8.0
    assert media_files(settings, BIZ) == []
    job = get_job(rclient, BIZ, "CA1")
    assert (job.status, job.task_id) == ("queued", new_task)
    assert Catalog(settings).get(BIZ, "CA1").state == "wanted"
    assert read_counters(rclient)["downloads:lease_lost"] == 1


def test_an_attempt_finishing_after_it_was_superseded_cannot_overwrite_the_newer_result(rclient, settings,
                                                                                       provider):
    # Given attempt A held at the provider, with a lease so long its heartbeat will not notice anything
    gate = threading.Event()
    url = provider.add("/biz1/a.wav", body=OLD, gate=gate)
    task_a = ask(rclient, settings, "CA1", url)
    a = Attempt(BIZ, "CA1", task_a, "wA", dataclasses.replace(settings, lease_seconds=600))
    thread, result = in_thread(a)
    wait_holder(rclient, BIZ, "CA1")
    wait_for(lambda: provider.requests["/biz1/a.wav"] == 1, 10, "A's download to start")

    # When A's lease is reclaimed, and attempt B runs and stores the provider's new media
    task_b = reclaim(rclient, settings, "CA1")
    provider.add("/biz1/a.wav", Behaviour(body=NEW))
    assert run(Attempt(BIZ, "CA1", task_b, "wB", settings)) == "ready"
    assert_stored_whole(settings, BIZ, "CA1", NEW)

    # And then A gets its whole (old) body
    gate.set()
    thread.join(20)

    # Then A's compare-and-set on its fence fails: B's result stays, whole, and A's file is gone
    assert result["outcome"] == "lease_lost"
    assert_stored_whole(settings, BIZ, "CA1", NEW)
    assert media_files(settings, BIZ) == ["CA1-1.wav", "CA1-1.wav.peaks"]
    assert get_job(rclient, BIZ, "CA1").status == "ready"
    assert BusinessSlots(rclient, BIZ, settings).active() == 0


def test_a_result_that_cannot_be_stored_becomes_a_retry_and_the_retry_stores_it(rclient, settings, provider):
    # Given a store that cannot take the file (a directory sits where the file goes)
    url = provider.add("/biz1/a.wav", body=OLD)
    task_id = ask(rclient, settings, "CA1", url)
    blocker = settings.media_dir / BIZ / "CA1-1.wav"
    blocker.mkdir(parents=True)

    # When an attempt downloads the media and claims the result
    assert run(Attempt(BIZ, "CA1", task_id, "w1", settings)) == "retry"

    # Then the claim is reopened into a retry: the job is queued again with its attempt counted
    job = get_job(rclient, BIZ, "CA1")
    assert (job.status, job.attempts) == ("queued", 1)
    assert "IsADirectoryError" in job.error
    assert queued_task_ids(rclient, "CA1")[-1] == job.task_id
    assert Catalog(settings).get(BIZ, "CA1").state == "wanted"
    assert BusinessSlots(rclient, BIZ, settings).active() == 0

    # And once the store can take it, the retry stores it whole
    blocker.rmdir()
    assert run(Attempt(BIZ, "CA1", job.task_id, "w1", settings)) == "ready"
    assert_stored_whole(settings, BIZ, "CA1", OLD)
    assert get_job(rclient, BIZ, "CA1").attempts == 2
    assert provider.downloads["/biz1/a.wav"] == 2


def test_the_heartbeat_keeps_a_one_second_lease_for_four_seconds_and_notices_when_it_is_taken(rclient, settings):
    short = dataclasses.replace(settings, lease_seconds=1)
    slots = BusinessSlots(rclient, BIZ, short)
    task_id = ask(rclient, settings, "CA1", "http://127.0.0.1:9/biz1/a.wav")
    got = slots.acquire("CA1", task_id, "w1")
    assert isinstance(got, Acquired)
    with Heartbeat(slots, "CA1", got.fence) as beat:
        assert not beat.lost.wait(4.0)  # four lease periods
        assert slots.active() == 1
        rclient.zadd(keys.holders(BIZ), {"CA1": 1})
        wait_for(beat.lost.is_set, 5, "the heartbeat to find the lease gone")
    assert slots.active() == 0


def test_a_slot_a_task_left_behind_is_given_up_its_job_requeued_and_the_slot_passed_on(rclient, settings):
    slots = BusinessSlots(rclient, BIZ, settings)
    slots.set_limit(1)
    task_a = ask(rclient, settings, "CA0", "http://127.0.0.1:9/biz1/0.wav")
    got = slots.acquire("CA0", task_a, "w1")
    assert isinstance(got, Acquired)
    assert isinstance(slots.acquire("CP0", ask(rclient, settings, "CP0", "http://127.0.0.1:9/biz1/p.wav"), "w1"),
                      Parked)
    held.hold(task_a, BIZ, "CA0", got.fence)

    assert held.give_up(task_a, "test") is True

    # The job goes back in line at its arrival place, ahead of CP0, which arrived after it: the slot given up
    # is handed straight back to it, with a new message; CP0 keeps waiting.
    job = get_job(rclient, BIZ, "CA0")
    assert (job.status, job.attempts) == ("queued", 1)
    handed = holder_of(rclient, BIZ, "CA0")
    assert handed.worker == "" and handed.task_id == job.task_id != task_a
    assert job.task_id in queued_task_ids(rclient, "CA0")
    assert slots.parked() == ["CP0"] and queued_task_ids(rclient, "CP0") == []
    assert held.held() == {}
    assert held.give_up(task_a, "again") is False


def test_a_slot_held_by_a_pool_child_is_found_by_its_task_id_and_given_up(rclient, settings):
    slots = BusinessSlots(rclient, BIZ, settings)
    task_id = ask(rclient, settings, "CA0", "http://127.0.0.1:9/biz1/0.wav")
    assert isinstance(slots.acquire("CA0", task_id, "w1@host"), Acquired)

    assert held.give_up_task("some-other-task", BIZ, "CA0", "test") is False
    assert held.give_up_task(task_id, BIZ, "CA0", "test") is True

    job = get_job(rclient, BIZ, "CA0")
    assert job.status == "queued" and job.task_id != task_id
    assert [(h.call_sid, h.reserved, h.task_id) for h in slots.holders()] == [("CA0", True, job.task_id)]


def test_a_late_give_up_never_touches_a_job_that_moved_on(rclient, settings):
    slots = BusinessSlots(rclient, BIZ, settings)
    old = slots.acquire("CA0", ask(rclient, settings, "CA0", "http://127.0.0.1:9/biz1/0.wav"), "w1")
    assert isinstance(old, Acquired)
    new = slots.acquire("CA0", reclaim(rclient, settings, "CA0"), "w2")
    assert isinstance(new, Acquired)
    held.hold("old-task", BIZ, "CA0", old.fence)

    held.give_up("old-task", "a late signal")

    job = get_job(rclient, BIZ, "CA0")
    assert (job.status, job.fence) == ("processing", str(new.fence))
    assert holder_of(rclient, BIZ, "CA0").fence == new.fence
    rec, data = stored(settings, BIZ, "CA0")
    assert rec.state == "wanted" and data is None


def test_one_thread_renews_the_leases_of_every_running_download_and_none_after_its_block(rclient, settings):
    short = dataclasses.replace(settings, lease_seconds=1)
    slots = BusinessSlots(rclient, BIZ, short)
    slots.set_limit(12)
    fences = {}
    for n in range(12):
        call_sid = f"CA{n}"
        got = slots.acquire(call_sid, ask(rclient, settings, call_sid, f"http://127.0.0.1:9/biz1/{n}.wav"), "w1")
        assert isinstance(got, Acquired)
        fences[call_sid] = got.fence
    threads_before = {t.name for t in threading.enumerate()}
    beats = [Heartbeat(slots, call_sid, fence) for call_sid, fence in fences.items()]
    for beat in beats:
        beat.__enter__()
    try:
        assert [t.name for t in threading.enumerate() if t.name not in threads_before] in ([], ["lease-renewer"])
        assert sum(t.name == "lease-renewer" for t in threading.enumerate()) == 1
        # Three lease periods: every lease is still held, and no beat thinks its lease was lost.
        assert not any(beat.lost.wait(0) for beat in beats)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            assert slots.active() == 12
        assert not any(beat.lost.is_set() for beat in beats)
    finally:
        for beat in beats[6:]:
            beat.__exit__()
    # The six that ended are renewed no more: their leases run out; the other six are still held.
    wait_for(lambda: slots.active() == 6, 5, "the ended beats' leases to run out")
    deadline = time.monotonic() + 1.5  # over a lease period more: the six still running keep theirs
    while time.monotonic() < deadline:
        time.sleep(0.1)
        assert slots.active() == 6
    assert not any(beat.lost.is_set() for beat in beats)
    for beat in beats[:6]:
        beat.__exit__()


def test_a_shorter_lease_begun_while_the_renewer_waits_for_a_longer_one_is_still_renewed(rclient, settings):
    long_slots = BusinessSlots(rclient, BIZ, settings)  # lease_seconds of the test settings: renewals far apart
    short_slots = BusinessSlots(rclient, BIZ, dataclasses.replace(settings, lease_seconds=1))
    long_slots.set_limit(2)
    got_long = long_slots.acquire("CA0", ask(rclient, settings, "CA0", "http://127.0.0.1:9/biz1/0.wav"), "w1")
    got_short = short_slots.acquire("CA1", ask(rclient, settings, "CA1", "http://127.0.0.1:9/biz1/1.wav"), "w1")
    assert isinstance(got_long, Acquired) and isinstance(got_short, Acquired)
    with Heartbeat(long_slots, "CA0", got_long.fence):
        wait_for(lambda: time.monotonic() + 5 < download._renewer._wakes_at < math.inf, 5,
                 "the renewer to sleep until the long lease's renewal")
        with Heartbeat(short_slots, "CA1", got_short.fence) as beat:
            deadline = time.monotonic() + 3.0  # three lease periods of the short one
            while time.monotonic() < deadline:
                time.sleep(0.1)
                assert short_slots.active() == 2
            assert not beat.lost.is_set()
