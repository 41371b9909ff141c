"""Scenario 2, fairness: one business's flood must not delay another business's jobs.

Business B asks for one recording every 2 s, first alone, then while business A floods the API with its backlog.
B's wait is from the moment its load generator sent POST /fetch to the job's ``done_at`` (Redis ``TIME``).
"""

from __future__ import annotations

import time

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_most, invariant, remove, spec_file
from tests.provider import make_wav

LATENCY = 0.2
INTERVAL = 2.0


def _paced_b(st: harness.Stack, base: str, call_sids: list[str], start_at: float) -> harness.ClientRun:
    spec = spec_file({"base": base, "token": harness.token_for("fairB"), "call_sids": call_sids,
                      "interval": INTERVAL, "start_at": start_at})
    try:
        return harness.finish_client(st.start_client("paced", spec))
    finally:
        remove(spec)


def _waits(sent: dict[str, float], done: dict[tuple[str, str], float]) -> list[float]:
    return [done[("fairB", c)] - t for c, t in sent.items()]


def _parts(run: harness.ClientRun, done: dict[tuple[str, str], float]) -> tuple[list[float], list[float]]:
    """B's wait in two parts: the API answering POST /fetch, then the answer -> the recording ready."""
    sent, answered = run.output["sent"], run.output["answered"]
    return ([answered[c] - sent[c] for c in sent], [done[("fairB", c)] - answered[c] for c in sent])


def run(smoke: bool) -> Values:
    flood_jobs, seconds = (100, 6) if smoke else (1000, 60)
    b_jobs = int(seconds / INTERVAL)
    body = make_wav(0.2)
    with harness.stack("fairness", RECPLAY_MAX_CONCURRENT="2") as st:
        st.worker(concurrency=16)
        # The API as it ships (deploy/gunicorn.conf.py: gevent), 2 workers.
        base = st.api(workers=2, worker_class="gevent")
        a_calls = [f"A{i}" for i in range(flood_jobs)]
        b_alone = [f"Balone{i}" for i in range(b_jobs)]
        b_flood = [f"Bflood{i}" for i in range(b_jobs)]
        items = [("fairA", c, st.provider.add(f"/fairA/{c}.wav", body=body, delay=LATENCY)) for c in a_calls]
        items += [("fairB", c, st.provider.add(f"/fairB/{c}.wav", body=body, delay=LATENCY))
                  for c in b_alone + b_flood]
        harness.register_all(base, items)
        harness.warm_up(st, base)

        # B alone.
        alone = _paced_b(st, base, b_alone, time.time() + 0.2)
        done = harness.wait_ready({"fairB": b_alone}, timeout=60)
        waits_alone = _waits(alone.output["sent"], done)

        # B while A floods: both start together.
        start_at = time.time() + 0.5
        spec = spec_file({"base": base, "tokens": {"fairA": harness.token_for("fairA")},
                          "requests": [["fairA", c] for c in a_calls], "threads": 8})
        try:
            flooder = st.start_client("flood", spec)
            under = _paced_b(st, base, b_flood, start_at)
            done = harness.wait_ready({"fairB": b_flood}, timeout=120)
            flood = harness.finish_client(flooder, timeout=300)
        finally:
            remove(spec)
        waits_flood = _waits(under.output["sent"], done)
        api_alone, pipe_alone = _parts(alone, harness.wait_ready({"fairB": b_alone}, timeout=1))
        api_flood, pipe_flood = _parts(under, done)
        flood_end = flood.output["ended"]
        during = [w for c, w in zip(under.output["sent"], waits_flood, strict=True)
                  if under.output["sent"][c] <= flood_end]
        after = [w for c, w in zip(under.output["sent"], waits_flood, strict=True)
                 if under.output["sent"][c] > flood_end]
        a_ready = sum(1 for (s,) in harness.job_fields("fairA", a_calls, "status") if s == "ready")
        a_elapsed = harness.redis_now() - flood.output["started"]
        rss = st.peak_rss_mib()
        p50_alone, p99_alone = harness.percentile(waits_alone, 50), harness.percentile(waits_alone, 99)
        p50_flood, p99_flood = harness.percentile(waits_flood, 50), harness.percentile(waits_flood, 99)
        return {
            "p50_ratio": p50_flood / p50_alone,
            "p99_ratio": p99_flood / p99_alone,
            "p50_alone": p50_alone,
            "p99_alone": p99_alone,
            "p50_flood": p50_flood,
            "p99_flood": p99_flood,
            "flood_sent": flood.output["ended"] - flood.output["started"],
            "max_during": max(during) if during else None,
            "max_after": max(after) if after else None,
            "api_p99_alone": harness.percentile(api_alone, 99),
            "api_p99_flood": harness.percentile(api_flood, 99),
            "pipe_p99_alone": harness.percentile(pipe_alone, 99),
            "pipe_p99_flood": harness.percentile(pipe_flood, 99),
            "a_rate": a_ready / a_elapsed,
            "a_ideal_rate": 2 / LATENCY,
            "a_max_in_flight": st.provider.max_in_flight.get("fairA", 0),
            "loadgen_cpu": flood.cpu_seconds + under.cpu_seconds + alone.cpu_seconds,
            "rss_api": rss.get("api"),
            "rss_worker": rss.get("worker"),
        }


SCENARIO = Scenario(
    key="fairness",
    title="2. Fairness",
    setup="Business A floods 1,000 POST /fetch (8 client threads, as fast as the API answers) at limit 2, "
          "provider latency 0.2 s; business B sends one POST /fetch every 2 s for 60 s (30 jobs, same latency), "
          "first alone, then under A's flood. One worker, threads pool, concurrency 16; gunicorn with "
          "deploy/gunicorn.conf.py, 2 gevent workers. Wait = B's request sent -> B's recording ready.",
    smoke_setup="A floods 100 jobs; B sends one job every 2 s for 6 s (3 jobs), alone and under the flood.",
    metrics=[
        Metric("p50_ratio", "B p50 wait, flood / alone", "x"),
        Metric("p99_ratio", "B p99 wait, flood / alone", "x"),
        Metric("p50_alone", "B p50 wait alone", "s"),
        Metric("p99_alone", "B p99 wait alone", "s"),
        Metric("p50_flood", "B p50 wait under the flood", "s"),
        Metric("p99_flood", "B p99 wait under the flood", "s"),
        Metric("flood_sent", "API took to accept A's flood", "s"),
        Metric("max_during", "B's longest wait for a job sent while the API was accepting the flood", "s"),
        Metric("max_after", "B's longest wait for a job sent after that", "s"),
        Metric("api_p99_alone", "B p99, POST /fetch answered, alone", "s"),
        Metric("api_p99_flood", "B p99, POST /fetch answered, under the flood", "s"),
        Metric("pipe_p99_alone", "B p99, answer -> ready, alone", "s"),
        Metric("pipe_p99_flood", "B p99, answer -> ready, under the flood", "s"),
        Metric("a_rate", "A's downloads per second while B ran", "/s"),
        Metric("a_ideal_rate", "A's ideal rate (limit / latency)", "/s"),
        Metric("a_max_in_flight", "A's most downloads in flight", ""),
        Metric("loadgen_cpu", "load generators' CPU (A + B)", "s"),
        Metric("rss_api", "peak RSS, API (gunicorn tree)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree)", "MiB", 1),
    ],
    goals=[
        Goal("B's p50 wait under the flood / alone <= 1.5 (median)", at_most("p50_ratio", 1.5)),
        Goal("B's p99 wait under the flood / alone <= 1.5 (median)", at_most("p99_ratio", 1.5)),
        invariant("A never over its limit of 2 (every run)",
             lambda med, runs: all((r["a_max_in_flight"] or 0) <= 2 for r in runs)),
    ],
    run=run,
)
