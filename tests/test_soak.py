"""The soak test: 500 jobs across 10 businesses, random provider faults, and two worker nodes SIGKILLed mid-run.

At the end every recording is ready (or failed, for those the provider does not have), each ready one was
downloaded successfully exactly once and stored whole, every slot is back and the queue is empty.

A killed node's requests stay open at the provider after it dies. To count successful downloads exactly, each
kill happens while the provider holds every answer (so no attempt is between its answer and storing it), and the
requests on the dead node's sockets are then closed unanswered instead of being counted as downloads.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tasks.catalog.models import Recording
from tasks.catalog.queries import get_engine
from tasks.metrics import read_counters
from tasks.slots import keys
from tests.conftest import assert_quiescent, wait_for
from tests.crashkit import assert_stored_whole
from tests.provider import Behaviour, make_wav

BUSINESSES = [f"soak{i}" for i in range(10)]
PER_BUSINESS = 50
LIMIT = 3
ENV = {
    "RECPLAY_LEASE_SECONDS": "4",
    "RECPLAY_MAX_CONCURRENT": str(LIMIT),
    "RECPLAY_QUEUED_DEADLINE_SECONDS": "10",
    "RECPLAY_RESERVATION_SECONDS": "5",
    # The default 5 attempts: two faults and two kills can cost a job four; the fifth must succeed.
    "RECPLAY_MAX_ATTEMPTS": "5",
}
#: Every answer takes this long, so that downloads overlap and the kills find work in flight.
PROVIDER_SECONDS = 1.0


def faults(rng: random.Random) -> dict[str, object]:
    roll = rng.random()
    if roll < 0.10:
        return {"fail_first": [500]}
    if roll < 0.18:
        return {"fail_first": [503, 500]}
    if roll < 0.24:
        return {"fail_first": [429], "retry_after": "1"}
    if roll < 0.28:
        return {"fail_first": [404] * 10}  # the provider never has it (whichever request asks)
    return {}


def states(settings) -> Counter:
    with Session(get_engine(settings)) as s:
        return Counter(dict(s.execute(select(Recording.state, func.count()).group_by(Recording.state)).all()))


def live_worker_holders(rclient) -> list[tuple[str, str, str]]:
    """(business_id, call_sid, worker) of every slot a worker holds right now (reservations left out)."""
    seconds, micros = rclient.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    found = []
    for biz in BUSINESSES:
        live = set(rclient.zrangebyscore(keys.holders(biz), f"({now}", "+inf"))
        for call_sid, info in rclient.hgetall(keys.holder_info(biz)).items():
            worker = info.split("|", 2)[2]
            if call_sid in live and worker:
                found.append((biz, call_sid, worker))
    return found


class Soak:
    def __init__(self, provider, procs, rclient) -> None:
        self.provider, self.procs, self.rclient = provider, procs, rclient
        self.nodes = [procs.worker(concurrency=12, env=ENV, wait=False) for _ in range(3)]
        for node in self.nodes:
            node.wait_ready()
        self.kills: list[dict[str, float]] = []

    def kill_one_node(self) -> None:
        """Hold every answer, wait until each held slot's request (and no other) waits at the provider, SIGKILL
        the node holding the most slots, drop the requests on its sockets unanswered, start a new node, let the
        answers go."""
        provider = self.provider
        pause = threading.Event()
        for behaviour in list(provider.behaviours.values()):
            behaviour.gate = pause

        def settled() -> list[tuple[str, str, str]] | None:
            held = live_worker_holders(self.rclient)
            with provider.lock:
                in_flight = sum(provider.in_flight.values())
                waiting = sorted(provider.at_gate.values())
            paths = sorted(f"/{biz}/{call_sid}.wav" for biz, call_sid, _ in held)
            return held if held and in_flight == len(waiting) and waiting == paths else None

        held = wait_for(settled, 60, "every held slot's request, and no other, to wait at the provider",
                        interval=0.1)
        by_node = Counter(worker for _, _, worker in held)
        victim_name = by_node.most_common(1)[0][0]
        victim = next(n for n in self.nodes if f"{n.name}@127.0.0.1" == victim_name)
        # Its requests are the ones on its sockets: stop it, read them, kill it (the kill closes them).
        victim.kill(signal.SIGSTOP)
        tree = [psutil.Process(victim.pid), *psutil.Process(victim.pid).children(recursive=True)]
        ports = {conn.laddr.port for proc in tree for conn in proc.net_connections("tcp")
                 if conn.raddr and conn.raddr.port == provider.port}
        killed_at = time.monotonic()
        victim.kill(signal.SIGKILL)
        self.nodes.remove(victim)
        with provider.lock:
            provider.dropped.update(ports)
            cut = [path for port, path in provider.at_gate.items() if port in ports]
        for behaviour in list(provider.behaviours.values()):
            behaviour.gate = None
        pause.set()
        self.nodes.append(self.procs.worker(concurrency=12, env=ENV, wait=False))
        self.kills.append({"slots_cut": len(cut), "at": killed_at})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_500_jobs_with_provider_faults_and_two_node_kills_all_end_ready_or_failed(api_for, provider, procs,
                                                                                 rclient, settings, capsys):
    # Given 10 businesses with 50 recordings each, a provider with random faults, three nodes and beat
    rng = random.Random(20240611)
    expected: dict[tuple[str, str], tuple[bytes, bool]] = {}
    apis = {biz: api_for(biz) for biz in BUSINESSES}
    for b, biz in enumerate(BUSINESSES):
        for i in range(PER_BUSINESS):
            call_sid = f"C{i:03d}"
            body = make_wav(0.05, freq=200.0 + 10 * i + b)
            fault = faults(rng)
            url = provider.add(f"/{biz}/{call_sid}.wav", Behaviour(body=body, delay=PROVIDER_SECONDS, **fault))
            assert apis[biz].register(call_sid, url).status_code == 201
            expected[(biz, call_sid)] = (body, 404 not in fault.get("fail_first", []))
    soak = Soak(provider, procs, rclient)
    procs.beat(ENV)

    # When all 500 are fetched at once, and two nodes are SIGKILLed along the way
    started = time.monotonic()
    for biz, call_sid in expected:
        assert apis[biz].fetch(call_sid).status_code == 202
    for share in (0.25, 0.6):
        wait_for(lambda share=share: states(settings)["ready"] >= share * len(expected), 120,
                 f"{share:.0%} of the jobs to be ready")
        soak.kill_one_node()

    # Then every recording ends ready, or failed when the provider does not have it
    wait_for(lambda: states(settings)["wanted"] == 0, 150, "every recording to end ready or failed")
    elapsed = time.monotonic() - started
    final = states(settings)
    assert final == Counter({"ready": sum(ok for _, ok in expected.values()),
                             "failed": sum(not ok for _, ok in expected.values())})

    # And each ready recording was downloaded successfully exactly once, and stored whole
    for (biz, call_sid), (body, ok) in expected.items():
        path = f"/{biz}/{call_sid}.wav"
        if ok:
            assert provider.downloads[path] == 1, (
                f"{path} downloaded {provider.downloads[path]} times (requests at "
                f"{[round(t - started, 2) for t in provider.request_times[path]]} s); kills at "
                f"{[round(k['at'] - started, 2) for k in soak.kills]} s\n{procs.trail(biz, call_sid)}")
            assert_stored_whole(settings, biz, call_sid, body)
        else:
            assert provider.downloads[path] == 0
            assert apis[biz].state(call_sid) == "failed"
    assert {biz: provider.max_in_flight[biz] for biz in BUSINESSES} == dict.fromkeys(BUSINESSES, LIMIT)

    # And every slot is back, nothing is parked, the queue is empty
    assert_quiescent(60)
    counters = read_counters(rclient)
    with capsys.disabled():
        print(f"\nsoak: {len(expected)} jobs, {final['ready']} ready, {final['failed']} failed, in {elapsed:.1f}s "
              f"({len(expected) / elapsed:.1f} jobs/s); {sum(provider.requests.values())} provider requests, "
              f"{sum(provider.downloads.values())} successful downloads; kills cut "
              f"{[k['slots_cut'] for k in soak.kills]} downloads; jobs taken back from dead workers "
              f"{int(counters.get('requeued_jobs', 0))}, "
              f"retried attempts {int(counters.get('downloads:retried', 0))}, "
              f"results discarded after a lost lease {int(counters.get('downloads:lease_lost', 0))}, "
              f"lost hand-offs {int(counters.get('lost_handoffs', 0))}; max in flight per business "
              f"{max(provider.max_in_flight[b] for b in BUSINESSES)} (limit {LIMIT})")
