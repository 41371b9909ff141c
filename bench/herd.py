"""Scenario 3, thundering herd: many clients at once on one recording that is not stored yet.

recplay: every client does what the player does: POST .../fetch, wait on the events stream for ``ready``, then
GET the ``stream_url`` it got (with ``Range: bytes=0-65535``, as a player's first request), and notes when its
first media byte arrives. The peer is
nginx with ``proxy_cache_lock`` in front of the same provider, asked the same way. For both, a waiter's extra
delay is its first byte's arrival minus the moment the provider finished sending the one download (the earliest
any copy could be whole); clients whose first byte came before that (nginx's leader, streamed through) are not
waiters.
"""

from __future__ import annotations

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_most, every_run, invariant, remove, spec_file

RATE = 5 * harness.MIB  # provider bytes per second
RANGE = {"Range": "bytes=0-65535"}

NGINX_CACHE = """\
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=media:10m max_size=1g inactive=10m use_temp_path=off;
    server {{
        listen 127.0.0.1:{{port}};
        location / {{
            proxy_pass http://{provider};
            proxy_http_version 1.1;
            proxy_cache media;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 120s;
            proxy_cache_lock_age 120s;
            proxy_force_ranges on;
            proxy_ignore_client_abort on;
        }}
    }}
"""


def _herd(st: harness.Stack, url: str, headers: dict[str, str], clients: int) -> harness.ClientRun:
    spec = spec_file({"url": url, "headers": headers, "clients": clients, "timeout": 120})
    try:
        return st.client("herd", spec)
    finally:
        remove(spec)


def _herd_events(st: harness.Stack, base: str, call_sid: str, token: str, clients: int) -> harness.ClientRun:
    spec = spec_file({"base": base, "call_sid": call_sid, "token": token, "headers": RANGE, "clients": clients,
                      "timeout": 120})
    try:
        return st.client("herd_events", spec)
    finally:
        remove(spec)


def _extra(run: harness.ClientRun, ready_at: float) -> tuple[list[float], int]:
    """Waiters' delays after ``ready_at``, and how many clients were served before it (streamed through)."""
    firsts = [t for t in run.output["first_byte"] if t]
    return [t - ready_at for t in firsts if t >= ready_at], sum(1 for t in firsts if t < ready_at)


def run(smoke: bool) -> Values:
    clients, size = (20, 1 * harness.MIB) if smoke else (200, 10 * harness.MIB)
    body = harness.noise_wav(size)
    with harness.stack("herd") as st:
        st.worker(concurrency=16)
        # As deployed: the shipped worker class (deploy/gunicorn.conf.py: every waiting client holds an events
        # stream) behind the shipped nginx (deploy/nginx.conf: it sends the media links' bytes).
        api = st.api(workers=2, worker_class="gevent")
        nginx_port, _ = st.shipped_nginx(int(api.rsplit(":", 1)[1]))
        base = f"http://127.0.0.1:{nginx_port}"
        trickle = size / RATE
        url = st.provider.add("/herd/CAherd.wav", body=body, trickle_seconds=trickle)
        harness.register_all(api, [("herd", "CAherd", url)])
        harness.warm_up(st, api)
        ours = _herd_events(st, base, "CAherd", harness.token_for("herd"), clients)
        provider_done = st.provider.finished["/herd/CAherd.wav"][0]
        (done_at,) = harness.job_fields("herd", ["CAherd"], "done_at")[0]
        our_delays, our_early = _extra(ours, provider_done)

        st.provider.add("/herdn/CAherd.wav", body=body, trickle_seconds=trickle)
        port, _ = st.nginx(NGINX_CACHE.format(prefix=st.workdir / "nginx", provider=st.provider.host))
        peer = _herd(st, f"http://127.0.0.1:{port}/herdn/CAherd.wav", RANGE, clients)
        peer_done = st.provider.finished["/herdn/CAherd.wav"][0]
        peer_delays, peer_early = _extra(peer, peer_done)
        rss = st.peak_rss_mib()
        ours_p50, peer_p50 = harness.percentile(our_delays, 50), harness.percentile(peer_delays, 50)
        ours_p99, peer_p99 = harness.percentile(our_delays, 99), harness.percentile(peer_delays, 99)
        return {
            "downloads": st.provider.downloads["/herd/CAherd.wav"],
            "peer_downloads": st.provider.downloads["/herdn/CAherd.wav"],
            "served": sum(1 for s in ours.output["sizes"] if s == 65536),
            "clients": clients,
            "peer_served": sum(1 for s in peer.output["sizes"] if s == 65536),
            "p50": ours_p50,
            "p99": ours_p99,
            "max": max(our_delays),
            "peer_p50": peer_p50,
            "peer_p99": peer_p99,
            "peer_max": max(peer_delays),
            "p50_vs_peer": ours_p50 - peer_p50,
            "p99_vs_peer": ours_p99 - peer_p99,
            "server_ready": int(done_at or 0) / 1000 - provider_done,
            "polls": sum(ours.output["polls"]) / clients,
            "waiters": len(our_delays),
            "peer_waiters": len(peer_delays),
            "peer_early": peer_early,
            "loadgen_cpu": ours.cpu_seconds,
            "peer_loadgen_cpu": peer.cpu_seconds,
            "rss_api": rss.get("api"),
            "rss_worker": rss.get("worker"),
            "rss_nginx": rss.get("nginx"),
        } | ({"early": our_early} if our_early else {})


SCENARIO = Scenario(
    key="herd",
    title="3. Thundering herd",
    setup="200 clients at once want one 10 MiB recording that is not stored yet; the provider sends it at 5 MiB/s "
          "(2 s). Each client does what the player does: POST /fetch, wait on the events stream for `ready`, then "
          "GET its `stream_url` with `Range: bytes=0-65535`, through deploy/nginx.conf in front of gunicorn "
          "(deploy/gunicorn.conf.py itself, 2 gevent workers): nginx passes the events through and sends the bytes. "
          "Peer: Debian's nginx, `proxy_cache_lock on` (lock timeout 120 s, "
          "`proxy_force_ranges on`), in front of the same provider, the same 200 clients. "
          "Extra delay = a waiter's first byte - the provider's last byte of the one download.",
    smoke_setup="20 clients, a 1 MiB recording at 5 MiB/s.",
    metrics=[
        Metric("downloads", "provider downloads, recplay", ""),
        Metric("peer_downloads", "provider downloads, nginx", ""),
        Metric("served", "clients served their 64 KiB, recplay", ""),
        Metric("peer_served", "clients served their 64 KiB, nginx", ""),
        Metric("p50", "waiters' extra delay p50, recplay", "s"),
        Metric("p99", "waiters' extra delay p99, recplay", "s"),
        Metric("max", "waiters' extra delay max, recplay", "s"),
        Metric("peer_p50", "waiters' extra delay p50, nginx", "s"),
        Metric("peer_p99", "waiters' extra delay p99, nginx", "s"),
        Metric("peer_max", "waiters' extra delay max, nginx", "s"),
        Metric("p50_vs_peer", "p50 extra delay, recplay - nginx", "s"),
        Metric("p99_vs_peer", "p99 extra delay, recplay - nginx", "s"),
        Metric("server_ready", "recplay: provider's last byte -> recording ready (store, catalog, job)", "s"),
        Metric("polls", "recplay: requests per client (fetch, events, media)", ""),
        Metric("waiters", "waiters, recplay", ""),
        Metric("peer_waiters", "waiters, nginx", ""),
        Metric("peer_early", "nginx clients streamed through before the end (leaders)", ""),
        Metric("loadgen_cpu", "load generator CPU, recplay run", "s"),
        Metric("peer_loadgen_cpu", "load generator CPU, nginx run", "s"),
        Metric("rss_api", "peak RSS, API (gunicorn tree)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree)", "MiB", 1),
        Metric("rss_nginx", "peak RSS, nginx", "MiB", 1),
    ],
    goals=[
        invariant("provider downloads, recplay == 1 (every run)", every_run("downloads", 1)),
        invariant("every recplay client served its 64 KiB (every run)",
                  lambda med, runs: all(r.get("served") == r.get("clients") for r in runs) if runs else None),
        Goal("provider downloads, nginx proxy_cache_lock == 1 (every run)", every_run("peer_downloads", 1)),
        Goal("waiters' extra delay p50, recplay - nginx <= 0 (median)", at_most("p50_vs_peer", 0.0)),
        Goal("waiters' extra delay p99, recplay - nginx <= 0 (median)", at_most("p99_vs_peer", 0.0)),
    ],
    run=run,
)
