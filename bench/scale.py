"""Scenario 7, scale: the limiter's cost with a large backlog, inside Redis.

A business with 100,000 parked jobs (limit 5, five running), against one with 10 parked, the two taking turns
in blocks of calls: the time inside Redis (SLOWLOG, threshold 0) of each slot operation a download makes (renew,
finish, release with its hand-off, the acquire that turns the hand-off's reservation into a lease), of parking a
new request, and of one sweep call (nothing due, and one expired lease to requeue), as ratios of the large backlog
to the small. Then 10,000 businesses with 10 parked each: the redis-server CPU time of one full sweep pass
(``sweep()``, as beat runs it every ``RECPLAY_SWEEP_SECONDS``), as a share of one core at the default period.
During every sweep a second connection PINGs Redis back to back: the worst round trip is what any other client
could wait. The largest single script call is the longest SLOWLOG entry of the whole run, filling included. The
pinger is a process of its own, so what it measures is Redis (and the machine), not this process's GIL.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from typing import Any

import psutil
import redis

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_most

RUNNING = 5
SMALL = 10
CYCLES = 200
REQUEUES = CYCLES // 4
#: The two backlogs take turns in this many blocks of calls each.
BLOCKS = 10
#: The scripts a download cycle calls once each (with its parking request and its idle sweep call).
CYCLE_SCRIPTS = ("request", "acquire", "release", "renew", "finish", "sweep")
FILL_BATCH = 1000


class Pinger:
    """PINGs Redis back to back from a process of its own (not slowed by this one's GIL); keeps the worst round
    trip."""

    def __init__(self, port: int) -> None:
        ctx = mp.get_context("fork")
        self._stop, self._result = ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_ping_loop, args=(port, self._stop, self._result), daemon=True)
        self.worst = 0.0

    def __enter__(self) -> Pinger:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.worst = float(self._result.get(timeout=30))
        self._proc.join(10)


def _ping_loop(port: int, stop: Any, result: Any) -> None:
    import redis

    client = redis.Redis(port=port)
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        client.ping()
        worst = max(worst, time.perf_counter() - started)
    result.put(worst)


def _fill(client: Any, settings: Any, business_id: str, first: int, count: int) -> None:
    """Request ``count`` jobs of ``business_id`` (call sids from ``first``), pipelined in batches."""
    from tasks.slots.jobs import _job_keys
    from tasks.slots.scripts import script

    request = script(client, "request")
    for start in range(first, first + count, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(first + count, start + FILL_BATCH)):
            call_sid = f"c{n}"
            request(keys=_job_keys(business_id, call_sid),
                    args=[call_sid, f"t{n}", "http://127.0.0.1/x.wav", n + 1, 1800000, "fetch",
                          settings.max_concurrent, settings.reservation_seconds * 1000], client=pipe)
        pipe.execute()
    client.sadd("recplay:businesses", business_id)


def _start_running(client: Any, settings: Any, business_id: str) -> list[tuple[str, int]]:
    """The business's first jobs got reserved slots when requested: their tasks start (leases)."""
    from tasks.slots import keys
    from tasks.slots.semaphore import Acquired, BusinessSlots

    slots = BusinessSlots(client, business_id, settings)
    running = []
    for n in range(RUNNING):
        call_sid = f"c{n}"
        task_id = client.hget(keys.job(business_id, call_sid), "task_id")
        got = slots.acquire(call_sid, task_id, "bench")
        assert isinstance(got, Acquired), got
        running.append((call_sid, got.fence))
    return running


def _slowlog(client: Any, names: dict[str, str]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for entry in client.slowlog_get(100000):
        command = entry["command"]
        words = (command.decode() if isinstance(command, bytes) else command).split()
        if len(words) > 1 and words[0].upper() == "EVALSHA" and words[1] in names:
            found.setdefault(names[words[1]], []).append(float(entry["duration"]))
    client.slowlog_reset()
    return found


class Backlog:
    """One business with ``parked`` jobs waiting behind its five running ones, and what a measurement does to it."""

    def __init__(self, client: Any, settings: Any, parked: int, tag: str) -> None:
        from tasks.ops.sweeper import BATCH
        from tasks.slots.jobs import finished_ttl_ms
        from tasks.slots.scripts import script
        from tasks.slots.semaphore import BusinessSlots

        self.client, self.settings, self.tag = client, settings, tag
        self.business_id = f"scale{tag}"
        _fill(client, settings, self.business_id, 0, RUNNING + parked)
        self.running = _start_running(client, settings, self.business_id)
        self.slots = BusinessSlots(client, self.business_id, settings)
        assert self.slots.parked_count() == parked
        self.sweep = script(client, "sweep")
        self.sweep_args = [settings.max_concurrent, settings.reservation_seconds * 1000, settings.max_attempts, "t",
                           finished_ttl_ms(settings), BATCH, settings.lease_seconds * 1000]
        self.requests = 0

    def cycles(self, count: int) -> None:
        """``count`` download cycles (renew, finish, release with hand-off, acquire of the reservation), each with a
        request that parks and an idle sweep call."""
        from tasks.slots import keys
        from tasks.slots.jobs import finish_job, request_job
        from tasks.slots.semaphore import Acquired

        for _ in range(count):
            call_sid, fence = self.running.pop(0)
            assert self.slots.renew(call_sid, fence)
            assert finish_job(self.client, self.settings, self.business_id, call_sid, fence, "ready")
            released, handed = self.slots.release(call_sid, fence)
            assert released and len(handed) == 1, handed
            got = self.slots.acquire(handed[0][0], handed[0][1], "bench")
            assert isinstance(got, Acquired), got
            self.running.append((handed[0][0], got.fence))
            self.requests += 1
            result = request_job(self.client, self.settings, self.business_id, f"n{self.requests}",
                                 media_url="http://127.0.0.1/x.wav", recording_id=10**7 + self.requests)
            assert result.outcome == "parked", result
            self.sweep(keys=keys.business_keys(self.business_id), args=self.sweep_args)

    def requeues(self, count: int) -> None:
        """``count`` sweep calls, each finding one expired lease: its job is requeued and its slot handed on."""
        from tasks.slots import keys
        from tasks.slots.semaphore import Acquired

        client, business_id = self.client, self.business_id
        for _ in range(count):
            call_sid, _fence = self.running.pop(0)
            client.zadd(keys.holders(business_id), {call_sid: 1})
            self.sweep(keys=keys.business_keys(business_id), args=self.sweep_args)
            holders = dict(client.zrange(keys.holders(business_id), 0, -1, withscores=True))
            for c, task in [(c, client.hget(keys.job(business_id, c), "task_id")) for c in holders]:
                if client.hget(keys.holder_info(business_id), c).endswith("|"):
                    got = self.slots.acquire(c, task, "bench")
                    assert isinstance(got, Acquired), got
                    self.running.append((c, got.fence))


def _two_backlogs(clients: list[Any], settings: Any, big: int) -> tuple[Values, float]:
    """Per-operation time inside Redis with 10 and with ``big`` jobs waiting, each backlog in a redis-server of its
    own (so what grows with everything a server holds shows as well); returns (values, largest call in us).

    Both are filled first; then they take turns, a block of calls each, so that a change in the machine's speed
    during the run (a shared machine's cores drift within a minute) meets both backlogs alike and stays out of the
    ratios."""
    from tasks.slots.scripts import script

    names = {script(clients[0], n).sha: n for n in CYCLE_SCRIPTS}
    for client in clients:
        for name in names.values():  # loaded first: a script's first EVALSHA would fail (NOSCRIPT), logged too
            client.script_load(script(client, name).script)
        client.slowlog_reset()
    backlogs = [Backlog(clients[0], settings, SMALL, "small"), Backlog(clients[1], settings, big, "large")]
    largest = max((max(v) for b in backlogs for v in _slowlog(b.client, names).values()), default=0.0)
    times: dict[str, dict[str, list[float]]] = {b.tag: {} for b in backlogs}
    swept: dict[str, list[float]] = {b.tag: [] for b in backlogs}
    for _ in range(BLOCKS):
        for backlog in backlogs:
            backlog.cycles(CYCLES // BLOCKS)
            for op, found in _slowlog(backlog.client, names).items():
                times[backlog.tag].setdefault(op, []).extend(found)
    # The pinger asks the large backlog's server.
    with Pinger(int(clients[1].connection_pool.connection_kwargs["port"])) as pinger:
        for _ in range(BLOCKS):
            for backlog in backlogs:
                backlog.requeues(REQUEUES // BLOCKS)
                found = _slowlog(backlog.client, names)
                swept[backlog.tag] += found.get("sweep", [])
                largest = max([largest, *(d for v in found.values() for d in v)])
    values: Values = {}
    for backlog in backlogs:
        tag, measured = backlog.tag, times[backlog.tag]
        counts = {op: len(found) for op, found in measured.items()}
        assert counts == dict.fromkeys(CYCLE_SCRIPTS, CYCLES), counts
        values |= {f"{op}_{tag}": statistics.median(measured[op]) for op in
                   ("renew", "finish", "release", "acquire", "request")}
        values[f"sweep_idle_{tag}"] = statistics.median(measured["sweep"])
        values[f"sweep_due_{tag}"] = statistics.median(swept[tag])
        largest = max([largest, *(d for v in measured.values() for d in v)])
    values["ping_one"] = pinger.worst * 1000
    return values, largest


def _many_businesses(client: Any, settings: Any, businesses: int, redis_pid: int) -> tuple[Values, float]:
    """A full sweep pass over ``businesses`` businesses of 10 parked jobs each, nothing due."""
    from tasks.ops.sweeper import sweep
    from tasks.slots.scripts import script

    names = {script(client, n).sha: n for n in ("request", "acquire", "sweep")}
    for b in range(businesses):
        _fill(client, settings, f"m{b}", 0, RUNNING + SMALL)
    pipe_names = [f"m{b}" for b in range(businesses)]
    for business_id in pipe_names:
        _start_running(client, settings, business_id)
    largest = max((max(v) for v in _slowlog(client, names).values()), default=0.0)
    sweep(client, settings)  # the first pass syncs with the catalog once; later passes cost only the probe
    redis_proc = psutil.Process(redis_pid)
    passes, cpu, wall = 3, 0.0, 0.0
    with Pinger(int(client.connection_pool.connection_kwargs["port"])) as pinger:
        for _ in range(passes):
            before, started = sum(redis_proc.cpu_times()[:2]), time.perf_counter()
            report = sweep(client, settings)
            wall += time.perf_counter() - started
            cpu += sum(redis_proc.cpu_times()[:2]) - before
            assert not report.did_anything, report
    found = _slowlog(client, names)
    everything = [d for v in found.values() for d in v]
    return {
        "pass_cpu_ms": cpu / passes * 1000,
        "pass_wall_ms": wall / passes * 1000,
        "core_share": cpu / passes / settings.sweep_seconds,
        "ping_many": pinger.worst * 1000,
    }, max([largest, *everything])


def run(smoke: bool) -> Values:
    big = 10_000 if smoke else 100_000
    businesses = 1_000 if smoke else 10_000
    with harness.stack("scale", RECPLAY_MAX_CONCURRENT=str(RUNNING)) as st:
        from tasks.settings import get_settings
        from tasks.slots.client import get_redis

        client, settings = get_redis(), get_settings()
        small = redis.Redis(port=st.redis_server("redis-small"), decode_responses=True)
        for each in (client, small):
            each.config_set("slowlog-log-slower-than", 0)
            each.config_set("slowlog-max-len", 100000)
        one, largest_one = _two_backlogs([small, client], settings, big)
        small.close()
        many, largest_many = _many_businesses(client, settings, businesses, st.services[0].proc.pid)
        client.config_set("slowlog-log-slower-than", 10000)
    values: Values = {**one, **many}
    for op in ("renew", "finish", "release", "acquire", "request", "sweep_idle", "sweep_due"):
        values[f"ratio_{op}"] = float(one[f"{op}_large"] or 0) / max(float(one[f"{op}_small"] or 0), 1.0)
    values["worst_ratio"] = max(float(values[f"ratio_{op}"] or 0) for op in
                                ("renew", "finish", "release", "acquire", "request", "sweep_idle", "sweep_due"))
    values["largest_call_ms"] = max(largest_one, largest_many) / 1000
    values["worst_ping_ms"] = max(float(one["ping_one"] or 0), float(many["ping_many"] or 0))
    values["parked"] = big
    values["businesses"] = businesses
    return values


def _metrics() -> list[Metric]:
    found = [Metric("worst_ratio", "worst per-operation ratio, large backlog / 10 parked", "x"),
             Metric("largest_call_ms", "largest single script call (whole run)", "ms"),
             Metric("worst_ping_ms", "worst PING round trip during sweeps", "ms"),
             Metric("core_share", "one sweep pass over the businesses / sweep period (share of a core)", ""),
             Metric("pass_cpu_ms", "redis-server CPU per sweep pass over the businesses", "ms"),
             Metric("pass_wall_ms", "wall time of a sweep pass over the businesses", "ms"),
             Metric("parked", "parked jobs in the large backlog", ""),
             Metric("businesses", "businesses in the sweep pass", "")]
    for op in ("renew", "finish", "release", "acquire", "request", "sweep_idle", "sweep_due"):
        found += [Metric(f"ratio_{op}", f"{op}: large / small", "x"),
                  Metric(f"{op}_small", f"{op}: time inside Redis, 10 parked", "us"),
                  Metric(f"{op}_large", f"{op}: time inside Redis, large backlog", "us")]
    return found


SCENARIO = Scenario(
    key="scale",
    title="7. Scale",
    setup="Two businesses, limit 5, five running each: one with 10 parked, one with 100,000 parked, both filled "
          "first. Per backlog, 200 download cycles (renew, finish, release with hand-off, acquire of the "
          "reservation), 200 requests that park, 200 idle sweep calls, 50 sweep calls each requeuing one expired "
          f"lease; the two backlogs take turns in {BLOCKS} blocks of each (so the machine's drift meets both alike); "
          "time inside Redis from SLOWLOG, median. "
          "Then 10,000 businesses with 10 parked each: three full sweep passes, redis-server CPU per pass.",
    smoke_setup="10,000 parked; 1,000 businesses.",
    metrics=_metrics(),
    goals=[
        Goal("every operation at the large backlog <= 1.5 x its time at 10 parked", at_most("worst_ratio", 1.5)),
        Goal("no single script call over 10 ms", at_most("largest_call_ms", 10.0)),
        Goal("worst PING round trip during sweeps <= 20 ms", at_most("worst_ping_ms", 20.0)),
        Goal("a sweep pass over the businesses < 0.1 of a core at the default period", at_most("core_share", 0.1)),
    ],
    run=run,
)
