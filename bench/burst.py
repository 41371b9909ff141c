"""Scenario 1, burst: every recording of several businesses requested several times at once.

Makespan is from the moment the load generator releases its requests to the last recording's ``done_at`` (Redis
``TIME``, written by the finish script). The ideal is what the per-business limit alone allows:
ceil(recordings / limit) rounds of the provider's latency.
"""

from __future__ import annotations

import math
import random

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_most, every_run, invariant, remove, spec_file
from tests.provider import make_wav


def handoff_gaps(provider: harness.TimedProvider, jobs: dict[str, list[str]], limit: int) -> list[float]:
    """Per business, each download after the first ``limit``: its arrival at the provider minus the end of the
    download whose slot it took (the k-th download takes the slot of the (k - limit)-th to finish)."""
    gaps = []
    for business_id, call_sids in jobs.items():
        paths = [f"/{business_id}/{c}.wav" for c in call_sids]
        starts = sorted(provider.arrived[p][0] for p in paths)
        ends = sorted(provider.finished[p][0] for p in paths)
        gaps += [starts[k] - ends[k - limit] for k in range(limit, len(starts))]
    return gaps


def run(smoke: bool) -> Values:
    businesses, recordings, repeats, limit, latency = (2, 3, 5, 1, 0.5) if smoke else (4, 15, 5, 5, 0.5)
    ideal = math.ceil(recordings / limit) * latency
    body = make_wav(0.5)
    with harness.stack("burst", RECPLAY_MAX_CONCURRENT=str(limit)) as st:
        st.worker(concurrency=businesses * limit + 4)
        # The API as it ships (deploy/gunicorn.conf.py: gevent), 2 workers.
        base = st.api(workers=2, worker_class="gevent")
        items, jobs = [], {}
        for b in range(businesses):
            business_id = f"burst{b}"
            jobs[business_id] = [f"CA{b}x{r}" for r in range(recordings)]
            for call_sid in jobs[business_id]:
                url = st.provider.add(f"/{business_id}/{call_sid}.wav", body=body, delay=latency)
                items.append((business_id, call_sid, url))
        harness.register_all(base, items)
        harness.warm_up(st, base)
        wanted = [[b, c] for b, c, _ in items for _ in range(repeats)]
        random.shuffle(wanted)
        spec = spec_file({"base": base, "requests": wanted,
                          "tokens": {b: harness.token_for(b) for b in jobs}})
        st.profile_start()
        api_cpu = st.cpu_seconds("api")
        try:
            client = st.client("burst", spec)
        finally:
            remove(spec)
        api_cpu = st.cpu_seconds("api") - api_cpu
        done = harness.wait_ready(jobs, timeout=120)
        st.profile_stop()
        started = client.output["started"]
        makespan = max(done.values()) - started
        created = [int(c or 0) / 1000 for b, calls in jobs.items()
                   for (c,) in harness.job_fields(b, calls, "created_at")]
        downloads = harness.downloads_of(st.provider, items)
        rss = st.peak_rss_mib()
        return {
            "ratio": makespan / ideal,
            "makespan": makespan,
            "ideal": ideal,
            "duplicates": downloads - len(items),
            "max_in_flight": max(st.provider.max_in_flight[b] for b in jobs),
            "limit": limit,
            "answered": client.output["last_answer"] - started,
            "enqueued": max(created) - started,
            "after_enqueued": makespan - (max(created) - started),
            "handoff": harness.percentile(handoff_gaps(st.provider, jobs, limit), 50),
            "api_cpu_ms": api_cpu / len(wanted) * 1000,
            "bad_answers": sum(n for s, n in client.output["statuses"].items() if s not in ("200", "202")),
            "loadgen_cpu": client.cpu_seconds,
            "rss_api": rss.get("api"),
            "rss_worker": rss.get("worker"),
        }


SCENARIO = Scenario(
    key="burst",
    title="1. Burst",
    setup="4 businesses x 15 recordings, each requested 5 times at once (300 POST /fetch released together "
          "through gunicorn with deploy/gunicorn.conf.py, 2 gevent workers), limit 5 per business, provider "
          "latency 0.5 s; one worker, threads pool, concurrency 24 (every slot plus 4). "
          "Ideal = ceil(15/5) x 0.5 s = 1.5 s.",
    smoke_setup="2 businesses x 3 recordings x 5 requests (30), limit 1 (still 3 rounds): ideal 1.5 s.",
    metrics=[
        Metric("ratio", "makespan / ideal", "x"),
        Metric("makespan", "makespan (burst released -> last ready)", "s"),
        Metric("ideal", "ideal", "s"),
        Metric("duplicates", "duplicate downloads", ""),
        Metric("max_in_flight", "most downloads in flight for one business", ""),
        Metric("limit", "limit per business", ""),
        Metric("answered", "API answered all requests after", "s"),
        Metric("enqueued", "last recording's job created after", "s"),
        Metric("after_enqueued", "makespan - last job created (compare with the ideal)", "s"),
        Metric("handoff", "hand-off: a download's end -> the next one's request at the provider (median)", "s"),
        Metric("api_cpu_ms", "API CPU per request", "ms"),
        Metric("bad_answers", "answers other than 200/202", ""),
        Metric("loadgen_cpu", "load generator CPU", "s"),
        Metric("rss_api", "peak RSS, API (gunicorn tree)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree)", "MiB", 1),
    ],
    goals=[
        Goal("makespan / ideal <= 1.3 (median)", at_most("ratio", 1.3)),
        invariant("no duplicate download (every run)", every_run("duplicates", 0)),
        invariant("never more than the limit in flight for a business (every run)",
             lambda med, runs: all((r["max_in_flight"] or 0) <= (r["limit"] or 0) for r in runs)),
    ],
    run=run,
)
