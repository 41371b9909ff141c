"""Crashes with real processes: SIGKILL of a node or of a pool child, SIGSTOP, warm and cold shutdown.

Every test runs real ``celery -A tasks worker`` nodes and ``celery -A tasks beat`` against the provider stand-in,
hits them for real, and checks what a user would: the recording ends ready with its whole file, every slot comes
back, the queue is empty.
"""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from tasks.ops.sweeper import sweep
from tasks.slots import keys
from tasks.slots.jobs import get_job
from tasks.slots.semaphore import BusinessSlots
from tests.conftest import assert_quiescent, wait_for
from tests.crashkit import (
    assert_stored_whole,
    child_talking_to,
    cont,
    node_of,
    queued_task_ids,
    stop,
    wait_holder,
    whole_files,
)
from tests.provider import Behaviour, make_wav

AUDIO = make_wav(1.0)
LEASE_6S = {"RECPLAY_LEASE_SECONDS": "6"}

pytestmark = pytest.mark.slow


def start_workers(procs, n, concurrency=2, pool="threads", env=None):
    """Start ``n`` nodes at once and wait for all of them."""
    workers = [procs.worker(concurrency=concurrency, pool=pool, env=env, wait=False) for _ in range(n)]
    for w in workers:
        w.wait_ready()
    return workers


def held_download(api_for, provider, rclient):
    """biz1/CA1 fetched, its slot taken and its request held at the provider: (api, gate, holder)."""
    gate = threading.Event()
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, gate=gate))
    api.fetch("CA1")
    holder = wait_holder(rclient, "biz1", "CA1")
    wait_for(lambda: provider.requests["/biz1/a.wav"] == 1, 20, "the download to reach the provider")
    return api, gate, holder


def test_a_node_killed_mid_download_is_rerun_by_another_node_and_ready_within_30s(
        api_for, provider, procs, rclient, settings, capsys):
    # Given two nodes and beat with a 6 s lease, and a provider that holds the response
    workers = start_workers(procs, 2, env=LEASE_6S)
    procs.beat(LEASE_6S)
    api, gate, holder = held_download(api_for, provider, rclient)

    # When the node downloading it is SIGKILLed (every process of it), mid-download
    victim = node_of(holder, *workers)
    killed = time.monotonic()
    victim.kill(signal.SIGKILL)
    gate.set()

    # Then the other node runs it again and it is ready within 30 s, its file whole
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    recovery = time.monotonic() - killed
    assert body["status"] == "ready", body
    assert body["attempts"] == 2
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert api.client.get(body["stream_url"]).data == AUDIO
    assert provider.requests["/biz1/a.wav"] == 2
    assert whole_files(settings, "biz1") == ["CA1-1.wav", "CA1-1.wav.peaks"]
    assert_quiescent()
    with capsys.disabled():
        print(f"\nnode SIGKILL with a 6 s lease: ready again {recovery:.2f}s after the kill")


def test_a_killed_prefork_pool_child_is_replaced_and_its_job_runs_again(api_for, provider, procs, rclient,
                                                                          settings):
    # Given a prefork node with two children, and a provider that holds the response
    # (Celery takes "-P prefork" for its default and lets the configured pool win: say it in the environment.)
    worker = procs.worker(concurrency=2, pool="prefork", env={**LEASE_6S, "RECPLAY_WORKER_POOL": "prefork"})
    procs.beat(LEASE_6S)
    api, gate, first = held_download(api_for, provider, rclient)

    # When only the pool child running the download is SIGKILLed
    child = child_talking_to(worker, provider.port)
    child.kill()
    gate.set()

    # Then the node lives on, the job runs again on a new child, and the redelivered message of the dead
    # child (task_reject_on_worker_lost) was dropped as stale instead of running twice
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready", body
    assert worker.proc.poll() is None
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert provider.requests["/biz1/a.wav"] == 2
    wait_for(lambda: f"dropped stale message business_id=biz1 call_sid=CA1 task_id={first.task_id}"
             in worker.log(), 10, "the redelivered message to be dropped")
    assert_quiescent()


def test_a_revoked_and_terminated_download_gives_its_slot_up_and_its_job_runs_again(api_for, provider, procs,
                                                                                     rclient, settings):
    # Given a prefork node downloading with a 60 s lease, the provider holding the response
    from tasks import app

    env = {"RECPLAY_LEASE_SECONDS": "60", "RECPLAY_WORKER_POOL": "prefork"}
    worker = procs.worker(concurrency=2, pool="prefork", env=env)
    api, gate, first = held_download(api_for, provider, rclient)

    # When an operator revokes the task and terminates it
    app.control.revoke(first.task_id, terminate=True)

    # Then its slot is given up and the job requeued at once, not a lease later (by the interrupted attempt on
    # its way out, or by the task_revoked handler when the child dies outright)
    wait_for(lambda: provider.requests["/biz1/a.wav"] == 2, 20, "the job to run again")
    gate.set()
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready", body
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert (f"gave up a slot business_id=biz1 call_sid=CA1 task_id={first.task_id}" in worker.log())
    assert_quiescent()


def test_a_node_killed_while_holding_the_only_slot_lets_every_parked_job_complete(
        api_for, provider, procs, rclient, settings):
    # Given business biz1 at limit 1, its slot held by a download the provider holds, four jobs parked behind it
    BusinessSlots(rclient, "biz1", settings).set_limit(1)
    workers = start_workers(procs, 2, concurrency=3, env=LEASE_6S)
    procs.beat(LEASE_6S)
    gate = threading.Event()
    api = api_for("biz1")
    api.register("CA0", provider.add("/biz1/0.wav", body=AUDIO, gate=gate))
    for i in range(1, 5):
        api.register(f"CA{i}", provider.add(f"/biz1/{i}.wav", body=AUDIO))
    api.fetch("CA0")
    holder = wait_holder(rclient, "biz1", "CA0")
    wait_for(lambda: provider.requests["/biz1/0.wav"] == 1, 20, "the download to reach the provider")
    for i in range(1, 5):
        api.fetch(f"CA{i}")
    slots = BusinessSlots(rclient, "biz1", settings)
    wait_for(lambda: len(slots.parked()) == 4, 20, "four jobs parked behind the slot")

    # When the node holding the slot is SIGKILLed
    node_of(holder, *workers).kill(signal.SIGKILL)
    gate.set()
    wait_for(lambda: provider.in_flight["biz1"] == 0, 10, "the dead connection to end at the provider")

    # Then the slot comes back and all five jobs complete, one at a time
    for i in range(5):
        body = api.wait_status(f"CA{i}", {"ready", "failed"}, 60)
        assert body["status"] == "ready", body
        assert_stored_whole(settings, "biz1", f"CA{i}", AUDIO)
    assert [provider.requests[f"/biz1/{i}.wav"] for i in range(5)] == [2, 1, 1, 1, 1]
    assert provider.max_in_flight["biz1"] == 1
    assert_quiescent()


def test_a_download_lasting_more_than_three_leases_completes_with_one_provider_download(
        api_for, provider, procs, rclient, settings):
    # Given a 2 s lease and a provider that trickles the body over 7.5 s (almost four leases), with beat sweeping
    env = {"RECPLAY_LEASE_SECONDS": "2"}
    procs.worker(concurrency=2, env=env)
    procs.beat(env)
    url = provider.add("/biz1/slow.wav", body=AUDIO, trickle_seconds=7.5)
    api = api_for("biz1")
    api.register("CA1", url)
    started = time.monotonic()
    api.fetch("CA1")

    # Then the heartbeat keeps the lease, nobody reclaims it, and the one download completes
    body = api.wait_status("CA1", {"ready", "failed"}, 40)
    assert body["status"] == "ready", body
    assert time.monotonic() - started > 3 * 2
    assert body["attempts"] == 1
    assert provider.requests["/biz1/slow.wav"] == 1
    assert provider.downloads["/biz1/slow.wav"] == 1
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert_quiescent()


def test_a_result_whose_catalog_write_waits_longer_than_three_leases_is_not_fetched_again(
        api_for, provider, procs, rclient, settings):
    # Given a 2 s lease, a download held at the provider, and the catalog locked for writing by someone else
    env = {"RECPLAY_LEASE_SECONDS": "2"}
    procs.worker(concurrency=2, env=env)
    api, gate, _ = held_download(api_for, provider, rclient)
    lock = sqlite3.connect(make_url(settings.database_url).database, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        # When the download ends and the worker claims the result, then waits more than three leases to store it
        gate.set()
        wait_for(lambda: get_job(rclient, "biz1", "CA1").status == "ready", 20, "the worker to claim the result")
        claimed_at = int(rclient.hget(keys.job("biz1", "CA1"), "done_at"))
        wait_for(lambda: redis_ms(rclient) - claimed_at > 3 * 2000, 20, "three leases to pass")

        # Then a sweep leaves the job to its worker, which still renews its lease
        # (a sweep as beat's would run it, with the workers' lease)
        report = sweep(rclient, dataclasses.replace(settings, lease_seconds=2))
        assert report.rerequested == []
        assert queued_task_ids(rclient, "CA1") == []
    finally:
        lock.rollback()
        lock.close()

    # And the worker stores it once the catalog is free: one download, ready, whole
    body = api.wait_status("CA1", {"ready", "failed"}, 40)
    assert body["status"] == "ready", body
    assert body["attempts"] == 1
    assert provider.downloads["/biz1/a.wav"] == 1
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert_quiescent()


def redis_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_paused_node_that_wakes_after_its_lease_was_reclaimed_cannot_overwrite_the_newer_result(
        api_for, provider, procs, rclient, settings):
    # Given a node alone with one thread, downloading a body the provider trickles over 4 s, with a 3 s lease
    env = {"RECPLAY_LEASE_SECONDS": "3"}
    old_body, new_body = make_wav(1.0, freq=440.0), make_wav(1.0, freq=660.0)
    paused = procs.worker(concurrency=1, env=env)
    url = provider.add("/biz1/a.wav", body=old_body, trickle_seconds=4.0)
    api = api_for("biz1")
    api.register("CA1", url)
    api.fetch("CA1")
    wait_holder(rclient, "biz1", "CA1")
    wait_for(lambda: provider.requests["/biz1/a.wav"] == 1, 20, "the download to start")

    # When the node is paused (SIGSTOP) mid-download, and meanwhile the provider's media changes
    stop(paused)
    try:
        provider.add("/biz1/a.wav", Behaviour(body=new_body))
        procs.worker(concurrency=2, env=env)
        procs.beat(env)
        # Then its lease runs out, the sweeper requeues the job, and another node stores the new media
        body = api.wait_status("CA1", {"ready", "failed"}, 30)
        assert body["status"] == "ready", body
        assert_stored_whole(settings, "biz1", "CA1", new_body)
    finally:
        cont(paused)

    # And when the paused node wakes, it finds its lease gone and discards what it downloaded
    wait_for(lambda: "result discarded" in paused.log(), 20, "the woken attempt to discard its result")
    assert_stored_whole(settings, "biz1", "CA1", new_body)
    assert api.stream("CA1").data == new_body
    assert provider.requests["/biz1/a.wav"] == 2
    assert whole_files(settings, "biz1") == ["CA1-1.wav", "CA1-1.wav.peaks"]
    assert_quiescent()


def test_a_cold_shutdown_gives_the_slot_up_at_once_and_another_node_finishes_the_job(
        api_for, provider, procs, rclient, settings):
    # Given a 60 s lease (waiting for it would take a minute) and a provider that holds the response
    env = {"RECPLAY_LEASE_SECONDS": "60"}
    workers = start_workers(procs, 2, env=env)
    api, gate, holder = held_download(api_for, provider, rclient)

    # When the node downloading it gets a cold shutdown (SIGQUIT)
    victim = node_of(holder, *workers)
    victim.proc.send_signal(signal.SIGQUIT)
    shut = time.monotonic()

    # Then its slot is given up and the job requeued at once: another node runs it, long before the lease ends
    second = wait_for(lambda: provider.requests["/biz1/a.wav"] == 2, 20, "another node to run the job")
    assert second
    assert time.monotonic() - shut < 20
    gate.set()
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready", body
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert "gave up a slot business_id=biz1 call_sid=CA1" in victim.log()
    victim.proc.wait(30)
    assert_quiescent()


def test_a_warm_shutdown_lets_the_running_download_finish(api_for, provider, procs, rclient, settings):
    # Given a node downloading a recording the provider holds
    worker = procs.worker(concurrency=2)
    api, gate, _ = held_download(api_for, provider, rclient)

    # When it gets a warm shutdown (SIGTERM) and then the provider answers
    worker.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "Warm shutdown" in worker.log() or "warm shutdown" in worker.log(), 10,
             "the warm shutdown to begin")
    gate.set()

    # Then the download finishes before the node exits, once, and releases its slot
    assert worker.proc.wait(30) == 0
    body = api.wait_status("CA1", {"ready", "failed"}, 5)
    assert body["status"] == "ready", body
    assert body["attempts"] == 1
    assert provider.downloads["/biz1/a.wav"] == 1
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert "gave up a slot" not in worker.log()
    assert_quiescent()
