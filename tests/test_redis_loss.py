"""Redis loss: the server restarted empty (or flushed) under a running system.

Ready recordings stay ready from the catalog; jobs that were queued, parked or running come back through the
sweeper (the catalog's ``wanted`` rows) or the next request, and never stay stuck; the broker's queue is gone
too, and workers and beat reconnect on their own. An attempt from before the loss can never pass for one after
it: fences keep growing across the loss.
"""

from __future__ import annotations

import threading

import pytest
import redis

from tasks.slots.jobs import finish_job, get_job, request_job
from tasks.slots.semaphore import Acquired, BusinessSlots
from tests.conftest import assert_quiescent, wait_for
from tests.crashkit import assert_stored_whole, queued_task_ids
from tests.media import make_ready
from tests.provider import make_wav

AUDIO = make_wav(0.5)


def reachable(client) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def restart_empty(redis_server, rclient) -> None:
    # Workers and beat reconnect within milliseconds and write again (heartbeats, bindings, re-requested jobs), so
    # "empty" is proved by a marker written just before the restart being gone after it.
    rclient.set("test:restart-marker", "1")
    redis_server.restart_empty()
    wait_for(lambda: reachable(rclient), 10, "Redis to answer again")
    assert rclient.get("test:restart-marker") is None


def test_ready_recordings_stay_ready_and_are_served_after_redis_restarts_empty(api_for, provider, redis_server,
                                                                              rclient):
    make_ready("biz1", "CA1", AUDIO, content_type="audio/wav")
    api = api_for("biz1")
    assert api.state("CA1") == "ready"

    restart_empty(redis_server, rclient)

    body = api.status("CA1").get_json()
    assert body["status"] == "ready"
    assert api.client.get(body["stream_url"]).data == AUDIO
    assert api.fetch("CA1").status_code == 200
    assert get_job(rclient, "biz1", "CA1") is None  # nothing was enqueued for it
    assert sum(provider.requests.values()) == 0


def test_a_wanted_recording_whose_job_was_flushed_is_enqueued_again_by_the_next_request(api_for, provider,
                                                                                       rclient):
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO))
    assert api.fetch("CA1").status_code == 202
    rclient.flushdb()
    assert api.state("CA1") == "queued"  # the catalog still says someone wants it

    assert api.fetch("CA1").status_code == 202

    job = get_job(rclient, "biz1", "CA1")
    assert job.status == "queued"
    assert queued_task_ids(rclient, "CA1") == [job.task_id]


def test_fences_keep_growing_across_a_redis_loss_so_an_old_attempt_cannot_pass_for_a_new_one(redis_server, rclient,
                                                                                              settings):
    slots = BusinessSlots(rclient, "biz1", settings)

    def take() -> Acquired:
        result = request_job(rclient, settings, "biz1", "CA1", media_url="http://h/a.wav", recording_id=1)
        got = slots.acquire("CA1", result.task_id, "w1")
        assert isinstance(got, Acquired)
        return got

    before = take()
    restart_empty(redis_server, rclient)
    after = take()

    assert after.fence > before.fence
    assert slots.renew("CA1", before.fence) is False
    assert slots.release("CA1", before.fence)[0] is False
    assert finish_job(rclient, settings, "biz1", "CA1", before.fence, "ready") is False
    assert get_job(rclient, "biz1", "CA1").status == "processing"
    assert slots.renew("CA1", after.fence) is True


@pytest.mark.slow
def test_jobs_queued_parked_and_running_when_redis_restarts_empty_all_end_ready(api_for, provider, procs,
                                                                               redis_server, rclient, settings):
    # Given two nodes and beat; biz1 at limit 2 with two downloads held at the provider and four jobs parked;
    # biz2 with one ready recording
    env = {"RECPLAY_LEASE_SECONDS": "6", "RECPLAY_MAX_CONCURRENT": "2"}
    workers = [procs.worker(concurrency=4, env=env, wait=False) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    procs.beat(env)
    make_ready("biz2", "READY", AUDIO, content_type="audio/wav")
    gate = threading.Event()
    api = api_for("biz1")
    paths = {f"CA{i}": f"/biz1/{i}.wav" for i in range(6)}
    for call_sid, path in paths.items():
        api.register(call_sid, provider.add(path, body=AUDIO, gate=gate if call_sid in ("CA0", "CA1") else None))
    api.fetch("CA0")
    api.fetch("CA1")
    wait_for(lambda: provider.requests["/biz1/0.wav"] == 1 and provider.requests["/biz1/1.wav"] == 1, 20,
             "both downloads to be held at the provider")
    for i in range(2, 6):
        api.fetch(f"CA{i}")
    wait_for(lambda: len(BusinessSlots(rclient, "biz1", settings).parked()) == 4, 20, "four parked jobs")

    # When Redis restarts empty: job state, slots, parked lists and the broker's queue are all gone
    restart_empty(redis_server, rclient)
    # (the held downloads get their answer once both attempts of each, before and after the loss, asked)
    wait_for(lambda: provider.requests["/biz1/0.wav"] == 2 and provider.requests["/biz1/1.wav"] == 2, 60,
             "the running jobs to run again after the loss",
             explain=lambda: f"provider requests {dict(provider.requests)}\n" + "\n".join(
                 procs.trail("biz1", call_sid) for call_sid in paths) + "\n" + procs.tail())
    gate.set()

    # Then every job ends ready, with its file whole, and nothing is left queued, parked or held
    for call_sid in paths:
        body = api.wait_status(call_sid, {"ready", "failed"}, 60)
        assert body["status"] == "ready", (call_sid, body)
        assert_stored_whole(settings, "biz1", call_sid, AUDIO)
    assert [provider.requests[p] for p in paths.values()] == [2, 2, 1, 1, 1, 1]
    assert api_for("biz2").state("READY") == "ready"
    # The two attempts cut off by the loss were held at the provider before their answer came; after the loss
    # the slots counted two more, and never more
    assert provider.max_in_flight["biz1"] == 4
    assert_quiescent(30)
