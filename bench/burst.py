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

#: The parts of a hand-off, in order; their medians are the metrics ``handoff_<part>``.
HANDOFF_PARTS = ("finish", "release", "pickup", "request")


def handoff_gaps(provider: harness.TimedProvider, jobs: dict[str, list[str]], limit: int,
                 done: dict[tuple[str, str], float], times: dict[tuple[str, str], tuple[float, float, float]],
                 ) -> tuple[list[float], dict[str, list[float]]]:
    """Per business, each download after the first ``limit``: its arrival at the provider minus the end of the download
    whose slot it took (the k-th download takes the slot of the (k - limit)-th to finish); and, for each of those
    that a release handed its slot (not one reserved when it was requested), that gap in four parts
    (:data:`HANDOFF_PARTS`) from its jobs' Redis times (``times``: each job's created_at, queued_at and started_at,
    in seconds; :func:`job_times`): the slot's holder from its last byte to its finish script's ``done_at`` (the
    body's end, the decode, the script); from there to the handed job's reservation, its ``queued_at`` (the file
    put in place, the catalog, the ready announcement, the release); to the handed job's ``started_at`` (its
    message, the worker taking it, the acquire script); to its request at the provider (the catalog read, the
    connection, the request)."""
    gaps: list[float] = []
    parts: dict[str, list[float]] = {part: [] for part in HANDOFF_PARTS}
    for business_id, call_sids in jobs.items():
        path = {c: f"/{business_id}/{c}.wav" for c in call_sids}
        starts = sorted(call_sids, key=lambda c: provider.arrived[path[c]][0])
        ends = sorted(call_sids, key=lambda c: provider.finished[path[c]][0])
        for k in range(limit, len(call_sids)):
            taker, holder = starts[k], ends[k - limit]
            arrived, ended = provider.arrived[path[taker]][0], provider.finished[path[holder]][0]
            gaps.append(arrived - ended)
            created, handed, started = times[(business_id, taker)]
            if handed == created:
                continue  # reserved when it was requested: no release handed it this slot
            finished = done[(business_id, holder)]
            for part, seconds in zip(HANDOFF_PARTS, (finished - ended, handed - finished, started - handed,
                                                     arrived - started), strict=True):
                parts[part].append(seconds)
    return gaps, parts


def job_times(jobs: dict[str, list[str]]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """Each job's created_at, queued_at (its last reservation) and started_at (its acquire), Redis ``TIME`` in
    seconds, one round trip per business."""
    return {(business_id, call_sid): (int(c or 0) / 1000, int(q or 0) / 1000, int(s or 0) / 1000)
            for business_id, call_sids in jobs.items()
            for call_sid, (c, q, s) in zip(call_sids, harness.job_fields(business_id, call_sids, "created_at",
                                                                         "queued_at", "started_at"), strict=True)}


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
        times = job_times(jobs)
        created = [c for c, _, _ in times.values()]
        downloads = harness.downloads_of(st.provider, items)
        gaps, parts = handoff_gaps(st.provider, jobs, limit, done, times)
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
            "handoff": harness.percentile(gaps, 50),
            **{f"handoff_{part}": harness.percentile(parts[part], 50) if parts[part] else None
               for part in HANDOFF_PARTS},
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
        Metric("handoff_finish", "  1. the slot's holder: its last byte -> its finish script (median)", "s"),
        Metric("handoff_release", "  2. -> the slot handed to the next job (store, catalog, release; median)", "s"),
        Metric("handoff_pickup", "  3. -> the next job's acquire (message, worker, script; median)", "s"),
        Metric("handoff_request", "  4. -> its request at the provider (median)", "s"),
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
