"""A business stuck at its limit by a SIGKILLed worker, and the one command that repairs it."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tasks.slots import keys
from tests.conftest import WorkerProcess, assert_quiescent, run_cli, status_json, wait_for
from tests.provider import Behaviour, make_wav

BIZ = "stuck"
JOBS = 5
LIMIT = 2


def redis_state(client: Any) -> dict[str, Any]:
    """Every recplay key (but the workers' heartbeats, which tick on their own) and the broker's lists."""
    state: dict[str, Any] = {}
    for key in sorted(client.scan_iter("recplay:*")):
        if key == keys.WORKERS:
            continue
        kind = client.type(key)
        value: Any = {
            "string": lambda k: client.get(k),
            "hash": lambda k: client.hgetall(k),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "list": lambda k: client.lrange(k, 0, -1),
            "set": lambda k: sorted(client.smembers(k)),
        }[kind](key)
        state[key] = (kind, value)
    state["broker queue"] = client.lrange("recplay", 0, -1)
    state["broker unacked"] = sorted(client.hkeys("unacked"))
    return state


def plan_items(plan: dict[str, Any]) -> list[tuple[str, ...]]:
    """A plan without its reasons (they quote heartbeat ages, which grow between two runs)."""
    return sorted(
        [("release", r["business_id"], r["call_sid"], r["task_id"], r["worker"]) for r in plan["release"]]
        + [(j["action"], j["business_id"], j["call_sid"]) for j in plan["jobs"]]
    )


def metric_samples(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_purge_stuck_frees_a_business_held_by_a_killed_worker(api_for, provider, procs, rclient, app, capsys):
    # Given a business at its limit of 2, both slots held with a 10-minute lease by a worker that is then
    # SIGKILLed, and 3 more jobs parked behind them.
    lease_env = {"RECPLAY_LEASE_SECONDS": "600"}
    run_cli("set-limit", BIZ, str(LIMIT))
    gate = threading.Event()
    audio = make_wav(0.5)
    urls = [provider.add(f"/{BIZ}/r{i}.wav", Behaviour(body=audio, gate=gate)) for i in range(JOBS)]
    doomed = procs.worker(concurrency=4, env=lease_env)
    api = api_for(BIZ)
    for i, url in enumerate(urls):
        assert api.register(f"r{i}", url).status_code == 201
        assert api.fetch(f"r{i}").status_code == 202

    def held_and_parked() -> bool:
        parked = rclient.zcard(keys.waiting(BIZ))
        return provider.in_flight[BIZ] == LIMIT and parked == JOBS - LIMIT

    wait_for(held_and_parked, 30, "2 downloads in flight and 3 jobs parked")
    doomed.kill(signal.SIGKILL)
    gate.set()  # the killed worker's requests end; nothing of theirs can be stored any more
    wait_for(lambda: provider.in_flight[BIZ] == 0, 15, "the killed worker's requests to end")
    procs.worker(concurrency=4, env=lease_env)

    # `recplay status` shows the dead holder: its worker does not answer, its lease has ~10 minutes left.
    shown = run_cli("status", "--ping-timeout", "1").stdout
    dead = f"worker {doomed.name}@127.0.0.1 (not answering a ping"
    assert sum(1 for line in shown.splitlines() if dead in line) == LIMIT, shown
    business = status_json(BIZ)["businesses"][0]
    assert (business["limit"], business["active"], business["parked"]) == (LIMIT, LIMIT, JOBS - LIMIT)
    assert {h["worker"] for h in business["holders"]} == {f"{doomed.name}@127.0.0.1"}
    assert all(h["lease_seconds_left"] > 500 for h in business["holders"]), business

    # A dry run prints the plan and changes nothing.
    before = redis_state(rclient)
    dry = json.loads(run_cli("purge-stuck", "--dry-run", "--json", "--ping-timeout", "1").stdout)
    readable = run_cli("purge-stuck", "--dry-run", "--ping-timeout", "1").stdout
    assert redis_state(rclient) == before
    assert dry["dry_run"] is True and dry["done"] is None
    released = sorted(r["call_sid"] for r in dry["plan"]["release"])
    assert len(released) == LIMIT
    assert all("not answering a ping" in r["reason"] for r in dry["plan"]["release"])
    actions = sorted((j["action"], j["call_sid"]) for j in dry["plan"]["jobs"])
    # The requeued jobs arrived before every parked one: the freed slots go back to them first.
    assert actions == sorted([("requeue", c) for c in released] + [("hand-off", c) for c in released])
    assert "Dry run: nothing changed." in readable
    assert sum(1 for line in readable.splitlines() if line.strip().startswith("release slot")) == LIMIT

    # When the operator runs one purge-stuck, the business runs again and every job completes.
    started = time.monotonic()
    done = json.loads(run_cli("purge-stuck", "--json", "--ping-timeout", "1").stdout)
    assert plan_items(done["plan"]) == plan_items(dry["plan"])
    assert sorted(e["call_sid"] for e in done["done"]["evicted"]) == released
    assert len(done["done"]["dispatched"]) == LIMIT  # the 2 requeued jobs, handed the freed slots
    for i in range(JOBS):
        assert api.wait_status(f"r{i}", {"ready", "failed"}, 30)["status"] == "ready"
    repaired_in = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[purge-stuck -> all {JOBS} jobs of the stuck business ready: {repaired_in:.2f}s]")
    assert repaired_in < 30

    # Then the limit held throughout, each killed download ran once more, and the system is quiet.
    assert provider.max_in_flight[BIZ] == LIMIT
    assert provider.total_downloads() == JOBS + LIMIT
    assert_quiescent()
    assert "Nothing to do" in run_cli("purge-stuck", "--ping-timeout", "1").stdout

    # /metrics counts what happened: two leases taken from a gone worker, five downloads ready.
    samples = metric_samples(app)
    assert samples[("recplay_reclaimed_leases_total", (("reason", "worker_gone"),))] == LIMIT
    assert samples[("recplay_downloads_total", (("outcome", "ready"),))] == JOBS
    assert samples[("recplay_slots_active", (("business_id", BIZ),))] == 0
    assert samples[("recplay_slots_limit", (("business_id", BIZ),))] == LIMIT


def test_purge_stuck_frees_slots_of_a_worker_restarted_under_the_same_name(api_for, provider, procs, rclient):
    # Given two downloads holding a business's slots on worker "w1", which is killed and started again under
    # the same name (a restarted container keeps its hostname): it answers pings and heartbeats, but no longer
    # runs the tasks that hold the slots.
    biz, lease_env = "reborn", {"RECPLAY_LEASE_SECONDS": "600"}
    run_cli("set-limit", biz, "2")
    gate = threading.Event()
    first = procs.worker(concurrency=2, env=lease_env)
    api = api_for(biz)
    for i in range(2):
        url = provider.add(f"/{biz}/r{i}.wav", Behaviour(body=make_wav(0.3), gate=gate))
        assert api.register(f"r{i}", url).status_code == 201
        assert api.fetch(f"r{i}").status_code == 202
    wait_for(lambda: provider.in_flight[biz] == 2, 30, "both downloads in flight")
    old_tasks = {h["task_id"] for h in status_json(biz)["businesses"][0]["holders"]}
    first.kill(signal.SIGKILL)
    (procs.logdir / "again").mkdir()
    again = WorkerProcess(first.name, 2, "threads", procs.env(lease_env), procs.logdir / "again")
    procs.started.append(again)
    again.wait_ready()

    # When the operator runs purge-stuck, both slots are released as orphaned and the jobs run again on it.
    done = json.loads(run_cli("purge-stuck", "--json", "--ping-timeout", "5").stdout)
    assert sorted(r["task_id"] for r in done["plan"]["release"]) == sorted(old_tasks)
    assert all("no longer runs this task" in r["reason"] for r in done["plan"]["release"])
    assert sorted(e["call_sid"] for e in done["done"]["evicted"]) == ["r0", "r1"]

    def rerun() -> bool:
        holders = status_json(biz)["businesses"][0]["holders"]
        return len(holders) == 2 and not {h["task_id"] for h in holders} & old_tasks

    wait_for(rerun, 30, "both jobs holding their slots again under new task ids")
    wait_for(lambda: provider.in_flight[biz] == 4, 30, "the new attempts at the provider (the old ones too)")

    # Then a second purge-stuck leaves the live worker's running downloads alone.
    again_plan = json.loads(run_cli("purge-stuck", "--json", "--ping-timeout", "5").stdout)
    assert again_plan["nothing_to_do"] is True, again_plan
    gate.set()
    for i in range(2):
        assert api.wait_status(f"r{i}", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.max_in_flight[biz] == 4  # the two killed requests stayed open at the gate
    assert provider.total_downloads() == 4
    assert_quiescent()


def test_purge_stuck_sends_again_a_job_whose_message_was_lost(api_for, provider, procs, rclient, monkeypatch):
    # Given a recording stuck `queued`: its job was created but its message never reached the broker.
    from tasks.catalog.queries import Catalog
    from tasks.settings import get_settings, reset_settings
    from tasks.slots.jobs import request_job

    monkeypatch.setenv("RECPLAY_RESERVATION_SECONDS", "1")
    reset_settings()
    settings = get_settings()
    procs.worker(concurrency=2)
    api = api_for("lost")
    assert api.register("CAlost", provider.add("/lost/CAlost.wav", body=make_wav(0.2))).status_code == 201
    rec = Catalog(settings).get("lost", "CAlost")
    assert rec is not None
    Catalog(settings).mark_wanted(rec.id)
    assert request_job(rclient, settings, "lost", "CAlost", media_url=rec.media_url, recording_id=rec.id
                       ).outcome == "enqueued"
    reserved_until = int(rclient.zscore(keys.holders("lost"), "CAlost"))
    wait_for(lambda: rclient.time()[0] * 1000 > reserved_until, 10, "the slot reserved for its message to run out")
    assert api.state("CAlost") == "queued"

    # When the operator runs purge-stuck, the plan names its reservation expired, puts it back in line and hands
    # it the slot again, with a new message.
    plan = json.loads(run_cli("purge-stuck", "--dry-run", "--json").stdout)["plan"]
    assert [(j["action"], j["call_sid"]) for j in plan["jobs"]] == [("repark", "CAlost"), ("hand-off", "CAlost")]
    assert [(r["call_sid"], r["worker"]) for r in plan["release"]] == [("CAlost", None)]
    done = json.loads(run_cli("purge-stuck", "--json").stdout)["done"]
    assert done["dispatched"] == [{"business_id": "lost", "call_sid": "CAlost"}]

    # Then it is downloaded, once.
    assert api.wait_status("CAlost", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.downloads["/lost/CAlost.wav"] == 1
    assert_quiescent()
