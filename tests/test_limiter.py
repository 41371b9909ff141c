"""The limiter's order, independence and cost guarantees, against the real scripts on a real redis-server:
jobs start in arrival order, a request with no free slot parks without a message, a freed slot goes to the
oldest parked job, a retry keeps its place, a sweep call is bounded, fences survive a restore from a snapshot,
and every key a script touches is in its business's cluster slot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import redis

from tasks.ops.sweeper import BATCH, sweep
from tasks.slots import events, keys
from tasks.slots.jobs import finish_job, get_job, request_job
from tasks.slots.scripts import LUA_DIR, script
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked, Stale
from tests.conftest import free_port, wait_for

BIZ = "biz1"


def request(rclient, settings, call_sid, business_id=BIZ):
    return request_job(rclient, settings, business_id, call_sid, media_url="http://h/x", recording_id=1)


def start(slots, rclient, settings, call_sid, worker="w1"):
    """Request a job; when a slot is reserved for it, run its task's acquire as the worker would."""
    result = request(rclient, settings, call_sid, slots.business_id)
    if result.outcome == "parked":
        return Parked()
    assert result.outcome == "enqueued"
    return slots.acquire(call_sid, result.task_id, worker)


def finish_and_release(slots, rclient, settings, call_sid, fence):
    assert finish_job(rclient, settings, slots.business_id, call_sid, fence, "ready") is True
    released, handed = slots.release(call_sid, fence)
    assert released is True
    return handed


@pytest.fixture
def slots(rclient, settings):
    return BusinessSlots(rclient, BIZ, settings)


def test_a_request_with_no_free_slot_parks_at_once_and_sends_nothing(slots, rclient, settings):
    held = [start(slots, rclient, settings, f"CA{i}") for i in range(settings.max_concurrent)]
    assert all(isinstance(h, Acquired) for h in held)
    result = request(rclient, settings, "CP0")
    assert (result.outcome, result.task_id, result.status) == ("parked", None, "queued")
    assert slots.parked() == ["CP0"]
    assert get_job(rclient, BIZ, "CP0").task_id == ""  # no message can claim anything for it
    assert rclient.llen("recplay") == 0 and rclient.llen("recplay-handoff") == 0


def test_freed_slots_go_to_the_parked_jobs_in_arrival_order(slots, rclient, settings):
    held = [start(slots, rclient, settings, f"CA{i}") for i in range(5)]
    parked = [f"CP{i:02d}" for i in range(12)]
    for call_sid in parked:
        assert isinstance(start(slots, rclient, settings, call_sid), Parked)
    assert slots.parked_count() == 12
    started = []
    running = {f"CA{i}": h.fence for i, h in enumerate(held)}
    while running:
        call_sid, fence = next(iter(running.items()))
        del running[call_sid]
        for handed_sid, task_id in finish_and_release(slots, rclient, settings, call_sid, fence):
            got = slots.acquire(handed_sid, task_id, "w2")
            assert isinstance(got, Acquired)
            started.append(handed_sid)
            running[handed_sid] = got.fence
    assert started == parked
    assert slots.active() == 0 and slots.parked_count() == 0


def test_taking_a_slot_announces_processing_with_the_message_publish_sends(slots, rclient, settings):
    """request.lua announces a new job `queued`, acquire.lua `processing`, each itself (no second round trip):
    the same messages, field for field, as tasks.slots.events.publish would send; a parked job is not
    processing."""
    pubsub = rclient.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.events(BIZ, "CA1"), keys.events(BIZ, "CA2"), keys.events(BIZ, "expected"))
    slots.set_limit(1)
    got = start(slots, rclient, settings, "CA1")
    assert isinstance(got, Acquired) and got.fence > 10 ** 12
    assert isinstance(start(slots, rclient, settings, "CA2"), Parked)
    events.publish(rclient, BIZ, "expected", "queued")
    events.publish(rclient, BIZ, "expected", "processing", got.attempts, "", got.fence)
    messages: list[dict] = []

    def all_five() -> bool:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            messages.append(message)
        return len(messages) >= 5

    wait_for(all_five, 5, "the five messages")
    got_messages = [(m["channel"].rsplit(":", 1)[-1], json.loads(m["data"])) for m in messages]
    queued = {"status": "queued", "attempts": 0, "error": "", "fence": 0}
    processing = {"status": "processing", "attempts": 1, "error": "", "fence": got.fence}
    assert [channel for channel, _ in got_messages] == ["CA1", "CA1", "CA2", "expected", "expected"], got_messages
    assert [data for _, data in got_messages] == [queued, processing, queued, queued, processing]
    pubsub.close()


def test_a_new_job_never_takes_a_free_slot_while_an_older_one_waits(slots, rclient, settings):
    held = [start(slots, rclient, settings, f"CA{i}") for i in range(5)]
    assert isinstance(start(slots, rclient, settings, "CP0"), Parked)
    # A slot frees without a release (its lease ran out): a new request must not jump the line.
    rclient.zadd(keys.holders(BIZ), {"CA0": 1})
    assert slots.active() == 4
    assert request(rclient, settings, "CN0").outcome == "parked"
    assert slots.parked() == ["CP0", "CN0"]
    # The sweep gives the free slot to the oldest waiting job.
    report = sweep(rclient, settings, BIZ)
    assert report.reclaimed == 1 and report.requeued == 1
    # The requeued job (arrived first of all) goes first; CP0 is next in line.
    assert [c for _, c in report.dispatched] == ["CA0"]
    assert slots.parked() == ["CP0", "CN0"]
    assert held[0].fence < int(next(h.fence for h in slots.holders() if h.call_sid == "CA0"))


def test_a_retry_keeps_its_place_in_line(slots, rclient, settings):
    first = start(slots, rclient, settings, "CA0")
    for i in range(1, 5):
        start(slots, rclient, settings, f"CA{i}")
    for i in range(3):
        assert isinstance(start(slots, rclient, settings, f"CP{i}"), Parked)
    # CA0's attempt fails; it retries after a backoff, its message waiting in the broker without a slot.
    assert finish_job(rclient, settings, BIZ, "CA0", first.fence, "retry", error="503", retry_task_id="t-retry",
                      retry_in_seconds=5) is True
    released, handed = slots.release("CA0", first.fence)
    assert released and [c for c, _ in handed] == ["CP0"]
    slots.acquire("CP0", handed[0][1], "w1")
    # Its message runs while the business is full: it parks ahead of every job that arrived after it.
    assert isinstance(slots.acquire("CA0", "t-retry", "w1"), Parked)
    assert slots.parked() == ["CA0", "CP1", "CP2"]


def test_a_release_without_an_outcome_puts_the_job_back_in_line(slots, rclient, settings):
    got = start(slots, rclient, settings, "CA0")
    released, handed = slots.release("CA0", got.fence)
    assert released is True
    job = get_job(rclient, BIZ, "CA0")
    assert job.status == "queued" and job.error == "the attempt ended without an outcome; requeued"
    assert [c for c, _ in handed] == ["CA0"]  # the slot came straight back to it
    again = slots.acquire("CA0", handed[0][1], "w1")
    assert isinstance(again, Acquired) and again.attempts == 2 and again.fence > got.fence


def test_a_reservation_made_under_a_higher_limit_never_takes_a_business_over_its_workers_limit(rclient, settings):
    """A process that reserves with another default limit than the workers' (a configuration drift) cannot push
    a business over the limit the acquiring worker knows: the extra reservations park."""
    import dataclasses

    api_side = dataclasses.replace(settings, max_concurrent=5)
    worker_side = BusinessSlots(rclient, BIZ, dataclasses.replace(settings, max_concurrent=2))
    reserved = [request_job(rclient, api_side, BIZ, f"CA{i}", media_url="http://h/x", recording_id=1)
                for i in range(5)]
    assert [r.outcome for r in reserved] == ["enqueued"] * 5
    got = [worker_side.acquire(f"CA{i}", r.task_id, "w1") for i, r in enumerate(reserved)]
    assert [type(g) for g in got] == [Acquired, Acquired, Parked, Parked, Parked]
    assert worker_side.active() == 2 and worker_side.parked() == ["CA2", "CA3", "CA4"]


def test_leases_that_ran_out_stop_counting_before_the_sweep_removes_them(slots, rclient, settings):
    """The holders set keeps a lease that ran out until the sweep takes it away; the scripts' count of the slots
    held must not count it: new jobs of a business whose every lease ran out get slots at once, up to its limit,
    and their reservations turn into leases."""
    limit = settings.max_concurrent
    held = [start(slots, rclient, settings, f"CA{i}") for i in range(limit)]
    assert all(isinstance(h, Acquired) for h in held)
    rclient.zadd(keys.holders(BIZ), {f"CA{i}": 1 for i in range(limit)})  # every worker died with its slot
    assert slots.active() == 0 and rclient.zcard(keys.holders(BIZ)) == limit
    fresh = [request(rclient, settings, f"CN{i}") for i in range(limit + 1)]
    assert [r.outcome for r in fresh] == ["enqueued"] * limit + ["parked"]
    got = [slots.acquire(f"CN{i}", r.task_id, "w2") for i, r in enumerate(fresh[:limit])]
    assert [type(g) for g in got] == [Acquired] * limit
    assert slots.active() == limit and rclient.zcard(keys.holders(BIZ)) == 2 * limit
    assert slots.parked() == [f"CN{limit}"]


def test_businesses_stay_independent(rclient, settings):
    full = BusinessSlots(rclient, "busy", settings)
    for i in range(5):
        start(full, rclient, settings, f"CA{i}")
    for i in range(50):
        assert isinstance(start(full, rclient, settings, f"CP{i}"), Parked)
    other = BusinessSlots(rclient, "quiet", settings)
    assert isinstance(start(other, rclient, settings, "CQ0"), Acquired)


def test_an_expired_reservation_goes_back_in_line_and_its_late_message_is_stale(slots, rclient, settings):
    held = [start(slots, rclient, settings, f"CA{i}") for i in range(5)]
    start(slots, rclient, settings, "CP0")
    start(slots, rclient, settings, "CP1")
    handed = finish_and_release(slots, rclient, settings, "CA0", held[0].fence)
    assert [c for c, _ in handed] == ["CP0"]
    rclient.zadd(keys.holders(BIZ), {"CP0": 1})  # the hand-off message was lost: the reservation runs out
    report = sweep(rclient, settings, BIZ)
    assert report.reparked == 1
    assert [c for _, c in report.dispatched] == ["CP0"]  # handed again (it is still the oldest), new task id
    assert isinstance(slots.acquire("CP0", handed[0][1], "w1"), Stale)


def test_one_sweep_call_handles_at_most_a_batch_whatever_is_due(slots, rclient, settings):
    limit = BATCH * 2 + 10
    slots.set_limit(limit)
    for i in range(limit):
        assert isinstance(start(slots, rclient, settings, f"CA{i}"), Acquired)
    rclient.zadd(keys.holders(BIZ), {f"CA{i}": 1 for i in range(limit)})  # every lease ran out
    args = [settings.max_concurrent, 30000, settings.max_attempts, "t", 1000, BATCH, 120000]
    first = json.loads(script(rclient, "sweep")(keys=keys.business_keys(BIZ), args=args))
    assert (first["reclaimed"], first["more"]) == (BATCH, True)
    report = sweep(rclient, settings, BIZ)
    assert report.reclaimed == limit - BATCH
    assert slots.active() == limit  # every requeued job was handed a slot again


def test_evicting_a_gone_workers_slot_lets_the_sweep_requeue_its_job(slots, rclient, settings):
    got = start(slots, rclient, settings, "CA0")
    evicted = script(rclient, "evict")(keys=keys.business_keys(BIZ), args=["CA0", got.fence])
    assert evicted == ["CA0"] and slots.active() == 0
    assert slots.renew("CA0", got.fence) is False
    report = sweep(rclient, settings, BIZ)
    assert report.requeued == 1 and [c for _, c in report.dispatched] == ["CA0"]


# ---- fences after a restore ----------------------------------------------------------------------------

@pytest.fixture
def snapshot_redis(tmp_path):
    """A redis-server of the test's own, which saves a snapshot on demand and restarts from it."""
    exe = shutil.which("redis-server")
    assert exe
    port = free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path), "--dbfilename", "dump.rdb"]
    procs = []

    def run() -> redis.Redis:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = redis.Redis(port=port, decode_responses=True)
        wait_for(lambda: _answers(client), 10, "redis-server to answer")
        return client

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_fences_stay_above_every_earlier_one_after_a_restore_from_an_older_snapshot(snapshot_redis, settings):
    client = snapshot_redis()
    slots = BusinessSlots(client, BIZ, settings)
    before = start(slots, client, settings, "CA0")
    client.save()  # the snapshot knows CA0's attempt only
    later = start(slots, client, settings, "CA1")
    assert isinstance(before, Acquired) and isinstance(later, Acquired) and later.fence > before.fence
    client.shutdown(nosave=True)  # the server goes; it comes back from the older snapshot
    client = snapshot_redis()
    slots = BusinessSlots(client, BIZ, settings)
    assert client.hget(keys.job(BIZ, "CA1"), "status") is None  # the restore forgot CA1
    again = start(slots, client, settings, "CA1")
    assert isinstance(again, Acquired) and again.fence > later.fence
    # The attempt from before the restore can neither renew, finish nor release the new attempt's slot.
    assert slots.renew("CA1", later.fence) is False
    assert finish_job(client, settings, BIZ, "CA1", later.fence, "ready") is False
    assert slots.release("CA1", later.fence)[0] is False
    assert client.hget(keys.job(BIZ, "CA1"), "status") == "processing"


# ---- Redis Cluster -------------------------------------------------------------------------------------

def test_every_key_a_script_touches_is_in_its_business_hash_slot():
    """Scripts name keys only through KEYS[n] or job_key_of (which derives from KEYS[1] and its hash tag), and
    every key the key module builds for a business carries the business's tag."""
    calls = re.compile(r"redis\.call\('([A-Z]+)',\s*(job_key_of\([a-z_\[\]0-9]+\)|[^,)]+)")
    keyless = {"TIME", "PUBLISH"}  # a pub/sub channel is no key
    offenders = []
    for path in sorted(LUA_DIR.glob("*.lua")):
        for command, first in calls.findall(path.read_text()):
            first = first.strip()
            if command in keyless:
                continue
            if not (re.fullmatch(r"KEYS\[\d+\]", first) or first == "job_key" or first.startswith("job_key_of(")):
                offenders.append(f"{path.name}: {command} {first}")
    assert offenders == []
    # ...and a variable named job_key only ever holds KEYS[9] or job_key_of(...).
    for path in sorted(LUA_DIR.glob("*.lua")):
        for value in re.findall(r"local job_key = ([^\n]+)", path.read_text()):
            assert value.strip() == "KEYS[9]" or value.startswith("job_key_of("), (path.name, value)
    assert "string.sub(KEYS[1], 1, -8) .. 'job:'" in (LUA_DIR / "lib.lua").read_text()
    business = "bizTag"
    tagged = [keys.job(business, "CA1"), keys.job_prefix(business), *keys.business_keys(business),
              keys.legacy_parked(business), keys.legacy_active(business)]
    assert all(f"{{{business}}}" in k for k in tagged)
    # job_key_of's derivation from the holders key gives exactly the job key the Python side uses.
    assert keys.holders(business)[:-7] + "job:CA1" == keys.job(business, "CA1")


def test_job_key_arguments_are_the_jobs_own_hash(slots, rclient, settings):
    """Where a script takes its job hash as KEYS[9], the callers pass the business's job key (same slot)."""
    from tasks.slots import jobs

    assert jobs._job_keys(BIZ, "CA1")[8] == keys.job(BIZ, "CA1")
    assert len(keys.business_keys(BIZ)) == 8


def test_every_script_opens_with_a_comment_naming_its_keys_and_arguments():
    for path in sorted(LUA_DIR.glob("*.lua")):
        head = "\n".join(path.read_text().splitlines()[:16])
        assert head.startswith(f"-- {path.name}:"), path.name
        assert "KEYS" in head, path.name
        if path.name != "lib.lua":
            assert "ARGV" in head or "Returns" in head, path.name


def test_a_request_lost_to_a_restore_from_an_older_snapshot_is_requested_again(snapshot_redis, settings):
    from tasks.catalog.queries import Catalog
    from tasks.recordings import Recordings

    client = snapshot_redis()
    assert not sweep(client, settings).did_anything  # in step with the catalog, on this server
    client.save()
    rec, _ = Catalog(settings).register(BIZ, "CA1", "http://127.0.0.1:9/biz1/CA1.wav", None)
    assert Recordings(client, settings, BIZ).request(rec, "fetch").status == "queued"
    client.shutdown(nosave=True)
    client = snapshot_redis()  # the restore forgot the job; the catalog still wants the recording
    assert client.exists(keys.job(BIZ, "CA1")) == 0

    report = sweep(client, settings)

    assert report.rerequested == [(BIZ, "CA1")]
    assert get_job(client, BIZ, "CA1").status == "queued"
    assert not sweep(client, settings).did_anything  # and only once


def test_purge_queue_drops_a_large_backlog_in_batches_reserved_slots_included(rclient, settings, monkeypatch):
    from tasks.catalog.models import NEW
    from tasks.catalog.queries import Catalog
    from tasks.ops import repair

    monkeypatch.setattr(repair, "PURGE_BATCH", 100)
    catalog = Catalog(settings)
    total = 5 + 350  # five get reserved slots, the rest park
    rows = [catalog.register(BIZ, f"CA{i}", f"http://h/{i}.wav", None)[0] for i in range(total)]
    for row in rows:
        catalog.mark_wanted(row.id)
        request_job(rclient, settings, BIZ, row.call_sid, media_url="http://h/x", recording_id=row.id)
    slots = BusinessSlots(rclient, BIZ, settings)
    assert (slots.active(), slots.parked_count()) == (5, total - 5)
    calls: list[int] = []
    purge = script(rclient, "purge")

    def counting(client, name):
        if name != "purge":
            return script(client, name)
        return lambda **kw: calls.append(len(kw["args"])) or purge(**kw)

    monkeypatch.setattr(repair, "script", counting)

    done = repair.purge_queue(rclient, settings, BIZ)

    assert sorted(done.dropped) == sorted(r.call_sid for r in rows)
    assert max(calls) == 100 and sum(calls) == total  # never one huge script call
    assert (slots.active(), slots.parked_count()) == (0, 0)
    assert {catalog.get(BIZ, r.call_sid).state for r in rows} == {NEW}
