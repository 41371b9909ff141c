"""Scenario 6, overhead: what recplay costs per recording over bare Celery, and over the naive design it replaced.

recplay: from the first POST /fetch to the last recording's ``done_at``, for tiny recordings (a 0.05 s WAV) that
a zero-latency provider answers at once: HTTP, the job script, the broker, the slot scripts, the download, the
store's fsyncs and the catalog. The first peer: the same number of bare no-op Celery tasks (``bench.noop_app``,
which only RPUSHes its finish time) sent by the same load generator, on a worker with the same settings (threads
pool, concurrency 16, acks late, prefetch 1), from the first send to the last task's end. The second, fairer peer:
the same requests, from the same load generator, to a seed-shaped Flask + Celery app (``bench.seed_app``: one
Redis read and one task per POST, the task downloads the same bodies from the same provider and writes them to
disk) under the same gunicorn and worker settings, from the first request to the last task's end.
"""

from __future__ import annotations

from bench import harness, seed_app
from bench.noop_app import DONE_KEY
from bench.scenario import Goal, Metric, Scenario, Values, at_most, remove, spec_file
from tests.provider import make_wav

BUSINESSES = 10
CONCURRENCY = 16
CLIENT_THREADS = 8
API_WORKERS, API_THREADS = 2, 8


def run(smoke: bool) -> Values:
    count = 100 if smoke else 1000
    body = make_wav(0.05)
    with harness.stack("overhead") as st:
        worker = st.worker(concurrency=CONCURRENCY)
        base = st.api(workers=API_WORKERS, threads=API_THREADS)
        jobs: dict[str, list[str]] = {f"over{b}": [] for b in range(BUSINESSES)}
        items = []
        for i in range(count):
            business_id = f"over{i % BUSINESSES}"
            call_sid = f"CA{i}"
            jobs[business_id].append(call_sid)
            items.append((business_id, call_sid, st.provider.add(f"/{business_id}/{call_sid}.wav", body=body)))
        harness.register_all(base, items)
        harness.warm_up(st, base)
        spec = spec_file({"base": base, "tokens": {b: harness.token_for(b) for b in jobs},
                          "requests": [[b, c] for b, c, _ in items], "threads": CLIENT_THREADS})
        st.profile_start()
        api_cpu, worker_cpu = st.cpu_seconds("api"), st.cpu_seconds("worker")
        try:
            ours = st.client("flood", spec)
        finally:
            remove(spec)
        done = harness.wait_ready(jobs, timeout=300)
        api_cpu, worker_cpu = st.cpu_seconds("api") - api_cpu, st.cpu_seconds("worker") - worker_cpu
        st.profile_stop()
        elapsed = max(done.values()) - ours.output["started"]
        downloads = harness.downloads_of(st.provider, items)
        rss = st.peak_rss_mib()
        worker.stop()

        peer_worker = st.worker(concurrency=CONCURRENCY, app="bench.noop_app", name="noop", role="peer_worker")
        from tasks.slots.client import get_redis

        redis = get_redis()
        spec = spec_file({"count": 1, "threads": 1})  # warm up the no-op worker too
        try:
            st.client("noop", spec)
        finally:
            remove(spec)
        harness.wait_for(lambda: redis.llen(DONE_KEY) >= 1, 60, "the warm-up no-op task to run")
        redis.delete(DONE_KEY)
        st.profile_start("peer-", roles=("peer_worker",))
        peer_cpu = st.cpu_seconds("peer_worker")
        spec = spec_file({"count": count, "threads": CLIENT_THREADS})
        try:
            peer = st.client("noop", spec)
        finally:
            remove(spec)
        harness.wait_for(lambda: redis.llen(DONE_KEY) >= count, 300, "every no-op task to run", interval=0.05)
        peer_elapsed = max(float(x.split()[1]) for x in redis.lrange(DONE_KEY, 0, -1)) - peer.output["started"]
        peer_cpu = st.cpu_seconds("peer_worker") - peer_cpu
        st.profile_stop()
        peer_rss = st.peak_rss_mib()
        peer_worker.stop()  # it reads the same queues, and knows no seed task

        # The seed-shaped app: registration is a Redis hash of media URLs, filled here (not measured).
        warm = ("warmup", "CAseed", st.provider.add("/warmup/CAseed.wav", body=body))
        redis.hset(seed_app.MEDIA_KEY, mapping={f"{b}/{c}": url for b, c, url in [*items, warm]})
        st.worker(concurrency=CONCURRENCY, app="bench.seed_app:celery", name="seed", role="seed_worker")
        seed_base = st.api(workers=API_WORKERS, threads=API_THREADS, app="bench.seed_app:app", role="seed_api")
        spec = spec_file({"base": seed_base, "tokens": {"warmup": harness.token_for("warmup")},
                          "requests": [["warmup", "CAseed"]], "threads": 1})
        try:
            st.client("flood", spec)
        finally:
            remove(spec)
        harness.wait_for(lambda: redis.llen(seed_app.DONE_KEY) >= 1, 60, "the warm-up seed download to finish")
        redis.delete(seed_app.DONE_KEY)
        downloads_before = harness.downloads_of(st.provider, items)
        st.profile_start("seed-", roles=("seed_api", "seed_worker"))
        seed_api_cpu, seed_worker_cpu = st.cpu_seconds("seed_api"), st.cpu_seconds("seed_worker")
        spec = spec_file({"base": seed_base, "tokens": {b: harness.token_for(b) for b in jobs},
                          "requests": [[b, c] for b, c, _ in items], "threads": CLIENT_THREADS})
        try:
            seed = st.client("flood", spec)
        finally:
            remove(spec)
        if seed.output["statuses"] != {"202": count}:
            raise RuntimeError(f"the seed-shaped app answered {seed.output['statuses']}")
        harness.wait_for(lambda: redis.llen(seed_app.DONE_KEY) >= count, 300, "every seed download to finish",
                         interval=0.05)
        seed_elapsed = (max(float(x.split()[1]) for x in redis.lrange(seed_app.DONE_KEY, 0, -1))
                        - seed.output["started"])
        seed_api_cpu = st.cpu_seconds("seed_api") - seed_api_cpu
        seed_worker_cpu = st.cpu_seconds("seed_worker") - seed_worker_cpu
        st.profile_stop()
        seed_downloads = harness.downloads_of(st.provider, items) - downloads_before
        seed_rss = st.peak_rss_mib()
        return {
            "ratio": elapsed / peer_elapsed,
            "elapsed": elapsed,
            "peer_elapsed": peer_elapsed,
            "per_recording_ms": elapsed / count * 1000,
            "peer_per_task_ms": peer_elapsed / count * 1000,
            "api_accepted": ours.output["ended"] - ours.output["started"],
            "peer_sent": peer.output["ended"] - peer.output["started"],
            "api_cpu_ms": api_cpu / count * 1000,
            "worker_cpu_ms": worker_cpu / count * 1000,
            "loadgen_cpu_ms": ours.cpu_seconds / count * 1000,
            "peer_worker_cpu_ms": peer_cpu / count * 1000,
            "peer_loadgen_cpu_ms": peer.cpu_seconds / count * 1000,
            "duplicates": downloads - count,
            "loadgen_cpu": ours.cpu_seconds,
            "peer_loadgen_cpu": peer.cpu_seconds,
            "rss_api": rss.get("api"),
            "rss_worker": rss.get("worker"),
            "rss_peer_worker": peer_rss.get("peer_worker"),
            "seed_ratio": elapsed / seed_elapsed,
            "seed_elapsed": seed_elapsed,
            "seed_per_recording_ms": seed_elapsed / count * 1000,
            "seed_api_accepted": seed.output["ended"] - seed.output["started"],
            "seed_api_cpu_ms": seed_api_cpu / count * 1000,
            "seed_worker_cpu_ms": seed_worker_cpu / count * 1000,
            "seed_loadgen_cpu_ms": seed.cpu_seconds / count * 1000,
            "seed_duplicates": seed_downloads - count,
            "rss_seed_api": seed_rss.get("seed_api"),
            "rss_seed_worker": seed_rss.get("seed_worker"),
        }


SCENARIO = Scenario(
    key="overhead",
    title="6. Overhead",
    setup=f"1,000 tiny recordings over {BUSINESSES} businesses (limit 5 each, so the limit is not what is "
          f"measured), registered first; then {CLIENT_THREADS} client threads POST /fetch for all of them "
          f"through gunicorn ({API_WORKERS} x {API_THREADS} threads); one worker, threads pool, concurrency "
          f"{CONCURRENCY}; the provider answers at once. Peer: 1,000 bare no-op Celery tasks sent with "
          f"`send_task` from {CLIENT_THREADS} threads of the same load generator, on "
          "`celery -A bench.noop_app worker` with the same settings. Seed-shaped peer: the same 1,000 POST /fetch "
          "from the same load generator to `bench.seed_app`, the naive design recplay replaced, under the same "
          "gunicorn and worker settings: the API reads the business from the token unverified, the media URL "
          "from one Redis hash (filled first) and enqueues one task; the task downloads the same body from the "
          "same provider with `requests`, writes it to disk and RPUSHes its finish time (no leases, no dedup, no "
          "catalog, no fsync).",
    smoke_setup="100 recordings, 100 no-op tasks, 100 requests to the seed-shaped app.",
    metrics=[
        Metric("ratio", "recplay / bare Celery (request -> done)", "x"),
        Metric("elapsed", "recplay: first request -> last ready", "s"),
        Metric("peer_elapsed", "bare Celery: first send -> last task done", "s"),
        Metric("per_recording_ms", "recplay per recording", "ms"),
        Metric("peer_per_task_ms", "bare Celery per task", "ms"),
        Metric("api_accepted", "recplay: API answered every request after", "s"),
        Metric("peer_sent", "bare Celery: every task sent after", "s"),
        Metric("api_cpu_ms", "recplay: API CPU per recording", "ms"),
        Metric("worker_cpu_ms", "recplay: worker CPU per recording", "ms"),
        Metric("loadgen_cpu_ms", "recplay: load generator CPU per recording", "ms"),
        Metric("peer_worker_cpu_ms", "bare Celery: worker CPU per task", "ms"),
        Metric("peer_loadgen_cpu_ms", "bare Celery: load generator (sender) CPU per task", "ms"),
        Metric("duplicates", "duplicate downloads", ""),
        Metric("loadgen_cpu", "load generator CPU, recplay", "s"),
        Metric("peer_loadgen_cpu", "load generator CPU, bare Celery", "s"),
        Metric("rss_api", "peak RSS, API (gunicorn tree)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree)", "MiB", 1),
        Metric("rss_peer_worker", "peak RSS, the no-op worker (celery tree)", "MiB", 1),
        Metric("seed_ratio", "recplay / seed-shaped app (request -> done)", "x"),
        Metric("seed_elapsed", "seed-shaped app: first request -> last download done", "s"),
        Metric("seed_per_recording_ms", "seed-shaped app per recording", "ms"),
        Metric("seed_api_accepted", "seed-shaped app: API answered every request after", "s"),
        Metric("seed_api_cpu_ms", "seed-shaped app: API CPU per recording", "ms"),
        Metric("seed_worker_cpu_ms", "seed-shaped app: worker CPU per recording", "ms"),
        Metric("seed_loadgen_cpu_ms", "seed-shaped app: load generator CPU per recording", "ms"),
        Metric("seed_duplicates", "seed-shaped app: duplicate downloads", ""),
        Metric("rss_seed_api", "peak RSS, the seed-shaped API (gunicorn tree)", "MiB", 1),
        Metric("rss_seed_worker", "peak RSS, the seed-shaped worker (celery tree)", "MiB", 1),
    ],
    goals=[
        Goal("recplay / bare Celery <= 2 (median)", at_most("ratio", 2.0)),
        Goal("recplay / seed-shaped app <= 1.2 (median)", at_most("seed_ratio", 1.2)),
    ],
    run=run,
)
