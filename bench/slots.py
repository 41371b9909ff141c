"""Scenario 4, slots: acquire + release cycles per second against raw EVALSHA round trips on the same Redis.

Clients are processes (forked, each with its own connection). Each first creates its own queued jobs with
``tasks.slots.jobs.request_job`` (each gets a reserved slot: the business's limit is set above the jobs while
they are created), then all start together: one cycle is what a download does with its slot,
``BusinessSlots.acquire`` (the reservation becomes a lease) + ``finish_job`` + ``BusinessSlots.release``, three
scripts, three round trips. The peer is the same clients calling EVALSHA of a script that does nothing
(``return 1``) with the same number of keys and arguments, three times per cycle: the floor is a third of the raw
rate, the cost of three round trips and nothing else.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from typing import Any

import psutil

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_least

LEVELS = (1, 8, 64)
#: The cycles and their raw peer alternate in this many blocks, so a change in the machine's load hits both alike.
BLOCKS = 4
NOOP = "return 1"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(index: int, business_id: str, cycles: int, barrier: Any, results: Any) -> None:
    from tasks.settings import get_settings, reset_settings
    from tasks.slots import keys
    from tasks.slots.client import get_redis, reset_redis
    from tasks.slots.jobs import finish_job, request_job
    from tasks.slots.semaphore import Acquired, BusinessSlots

    reset_settings()
    reset_redis()  # a forked child must not share the parent's sockets
    client, settings = get_redis(), get_settings()
    slots = BusinessSlots(client, business_id, settings)
    jobs = []
    for k in range(cycles):
        call_sid = f"c{index}x{k}"
        got = request_job(client, settings, business_id, call_sid, media_url="http://127.0.0.1/x.wav",
                          recording_id=k + 1)
        assert got.outcome == "enqueued", got
        assert got.task_id is not None
        jobs.append((call_sid, got.task_id))
    raw = client.register_script(NOOP)
    raw_keys = keys.business_keys(business_id)
    raw_args: list[str | int] = ["c", "t", "w", 120000, 5]
    raw(keys=raw_keys, args=raw_args)  # load it

    latencies = []
    slots_cpu = raw_cpu = 0.0
    per_block = -(-cycles // BLOCKS)
    for block in range(BLOCKS):
        barrier.wait()
        cpu = _cpu()
        for call_sid, task_id in jobs[block * per_block:(block + 1) * per_block]:
            started = time.perf_counter()
            slot = slots.acquire(call_sid, task_id, "bench")
            latencies.append(time.perf_counter() - started)
            assert isinstance(slot, Acquired), slot
            finish_job(client, settings, business_id, call_sid, slot.fence, "ready")
            slots.release(call_sid, slot.fence)
        slots_cpu += _cpu() - cpu
        barrier.wait()

        barrier.wait()
        cpu = _cpu()
        for _ in jobs[block * per_block:(block + 1) * per_block]:
            raw(keys=raw_keys, args=raw_args)
            raw(keys=raw_keys, args=raw_args)
            raw(keys=raw_keys, args=raw_args)
        raw_cpu += _cpu() - cpu
        barrier.wait()
    results.put((latencies, slots_cpu, raw_cpu))


def _level(clients: int, total_cycles: int, redis_pid: int) -> Values:
    from tasks.settings import get_settings
    from tasks.slots.client import get_redis
    from tasks.slots.semaphore import BusinessSlots

    business_id = f"slots{clients}"
    cycles = max(1, total_cycles // clients)
    BusinessSlots(get_redis(), business_id, get_settings()).set_limit(clients * cycles)
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(i, business_id, cycles, barrier, results), daemon=True)
             for i in range(clients)]
    for p in procs:
        p.start()
    redis_proc = psutil.Process(redis_pid)
    timings = [[0.0, 0.0], [0.0, 0.0]]  # (seconds, redis-server CPU seconds) of the slot cycles, of raw EVALSHA
    for _ in range(BLOCKS):
        for phase in timings:
            barrier.wait(timeout=300)
            cpu, started = sum(redis_proc.cpu_times()[:2]), time.perf_counter()
            barrier.wait(timeout=300)
            phase[0] += time.perf_counter() - started
            phase[1] += sum(redis_proc.cpu_times()[:2]) - cpu
    latencies: list[float] = []
    slots_cpu = raw_cpu = 0.0
    for _ in procs:
        lat, s_cpu, r_cpu = results.get(timeout=60)
        latencies += lat
        slots_cpu += s_cpu
        raw_cpu += r_cpu
    for p in procs:
        p.join(30)
    (slots_s, slots_redis), (raw_s, raw_redis) = timings
    done = cycles * clients
    rate, floor = done / slots_s, (3 * done / raw_s) / 3
    return {
        f"rate{clients}": rate,
        f"floor{clients}": floor,
        f"ratio{clients}": rate / floor,
        f"p99_{clients}": harness.percentile(latencies, 99) * 1000,
        f"p50_{clients}": harness.percentile(latencies, 50) * 1000,
        f"redis_us{clients}": slots_redis / done * 1e6,
        f"raw_redis_us{clients}": raw_redis / done * 1e6,
        f"client_us{clients}": slots_cpu / done * 1e6,
        f"raw_client_us{clients}": raw_cpu / done * 1e6,
    }


def _redis_cost(cycles: int) -> Values:
    """Median time inside Redis of each script (SLOWLOG with a threshold of 0), after the measured levels."""
    from tasks.settings import get_settings
    from tasks.slots import keys
    from tasks.slots.client import get_redis
    from tasks.slots.jobs import finish_job, request_job
    from tasks.slots.scripts import script
    from tasks.slots.semaphore import Acquired, BusinessSlots

    client, settings = get_redis(), get_settings()
    slots = BusinessSlots(client, "slotcost", settings)
    slots.set_limit(cycles)
    jobs = [(f"c{k}", request_job(client, settings, "slotcost", f"c{k}", media_url="http://127.0.0.1/x.wav",
                                  recording_id=k + 1).task_id or "") for k in range(cycles)]
    raw = client.register_script(NOOP)
    raw_keys = keys.business_keys("slotcost")
    raw_args: list[str | int] = ["c", "t", "w", 120000, 5]
    raw(keys=raw_keys, args=raw_args)
    names = {script(client, "acquire").sha: "acquire", script(client, "finish").sha: "finish",
             script(client, "release").sha: "release", raw.sha: "noop"}
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 4 * cycles + 100)
    client.slowlog_reset()
    for call_sid, task_id in jobs:
        got = slots.acquire(call_sid, task_id, "bench")
        assert isinstance(got, Acquired), got
        finish_job(client, settings, "slotcost", call_sid, got.fence, "ready")
        slots.release(call_sid, got.fence)
        raw(keys=raw_keys, args=raw_args)
    found: dict[str, list[float]] = {name: [] for name in names.values()}
    for entry in client.slowlog_get(4 * cycles + 100):
        words = (entry["command"].decode() if isinstance(entry["command"], bytes) else entry["command"]).split()
        if len(words) > 1 and words[0].upper() == "EVALSHA" and words[1] in names:
            found[names[words[1]]].append(float(entry["duration"]))
    client.config_set("slowlog-log-slower-than", 10000)
    return {f"redis_us_{name}": harness.percentile(v, 50) for name, v in found.items() if v}


def run(smoke: bool) -> Values:
    total = 800 if smoke else 8000
    with harness.stack("slots") as st:
        redis_pid = st.services[0].proc.pid
        values: Values = {}
        for clients in LEVELS:
            values |= _level(clients, total, redis_pid)
        return values | _redis_cost(200 if smoke else 2000)


def _metrics() -> list[Metric]:
    found = []
    for n in LEVELS:
        found += [
            Metric(f"ratio{n}", f"{n} clients: cycles/s / floor", "x"),
            Metric(f"rate{n}", f"{n} clients: acquire+finish+release cycles/s", "/s", 4),
            Metric(f"floor{n}", f"{n} clients: floor = raw EVALSHA/s / 3", "/s", 4),
            Metric(f"p50_{n}", f"{n} clients: acquire latency p50", "ms"),
            Metric(f"p99_{n}", f"{n} clients: acquire latency p99", "ms"),
            Metric(f"redis_us{n}", f"{n} clients: redis-server CPU per cycle", "us"),
            Metric(f"raw_redis_us{n}", f"{n} clients: redis-server CPU per 3 raw EVALSHA", "us"),
            Metric(f"client_us{n}", f"{n} clients: client CPU per cycle", "us"),
            Metric(f"raw_client_us{n}", f"{n} clients: client CPU per 3 raw EVALSHA", "us"),
        ]
    return found


SCENARIO = Scenario(
    key="slots",
    title="4. Slots",
    setup="8,000 acquire+finish+release cycles per level (a download's use of its slot), split over 1, 8 and 64 "
          "client processes on one business, then 3 x 8,000 EVALSHA of a do-nothing script with the same keys "
          "and arguments "
          "from the same processes on the same private redis-server, the two alternating in 4 blocks. Latency = one "
          "acquire, client side. Then the time inside Redis of each script, from SLOWLOG (2,000 single-client "
          "cycles, not part of the rates).",
    smoke_setup="800 cycles per level.",
    metrics=[*_metrics(),
             Metric("redis_us_acquire", "time inside Redis per acquire.lua (SLOWLOG, median)", "us"),
             Metric("redis_us_finish", "time inside Redis per finish.lua (SLOWLOG, median)", "us"),
             Metric("redis_us_release", "time inside Redis per release.lua (SLOWLOG, median)", "us"),
             Metric("redis_us_noop", "time inside Redis per do-nothing script (SLOWLOG, median)", "us")],
    goals=[Goal(f"{n} clients: cycles/s >= 0.8 x floor (median)", at_least(f"ratio{n}", 0.8)) for n in LEVELS],
    run=run,
)
