"""Scenario 5, streaming a stored recording: 64 KiB range requests of its signed media link (the ``stream_url``
a player gets) through nginx with deploy/nginx.conf (nginx checks the link and sends the bytes), the same link
answered by gunicorn alone, and nginx serving the file directly (the limit). For comparison, the stream endpoint
with a bearer token through gunicorn (what every range request cost before media links).

The load generator is Debian's ``wrk`` (its own process, one thread) with a Lua script that asks for a random
64 KiB-aligned range of the file on every request; its CPU use is in the table.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_least

CHUNK = 64 * 1024
CONNECTIONS = 16
#: Each target's measured seconds are split into this many blocks, the targets taking turns. On a shared machine
#: the cores' speed drifts within a minute, and one 10 s run per target put that drift between a target and its
#: baseline: three such pairs of the same two nginx servers gave 1.02, 0.75 and 0.82 one morning.
BLOCKS = 10
NOT_MEASURED = "The media link was not measured: the API on this commit hands out no media links."

WRK_SCRIPT = Path(__file__).with_name("range.lua")

NGINX_DIRECT = """\
    server {{
        listen 127.0.0.1:{{port}};
        location /direct/ {{
            alias {media}/;
        }}
    }}
"""


def _wrk(st: harness.Stack, url: str, headers: dict[str, str], seconds: int, size: int) -> tuple[dict, float]:
    cmd = [shutil.which("wrk") or "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(WRK_SCRIPT)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    st.env |= {"BENCH_FILE_SIZE": str(size), "BENCH_CHUNK": str(CHUNK)}
    run = st.run_loadgen([*cmd, url], timeout=seconds + 60, parse=_parse_wrk)
    out = run.output
    if out["non2xx"] or out["socket_errors"] or not out["requests"]:
        raise RuntimeError(f"wrk against {url} saw errors: {out}")
    if not CHUNK < out["bytes"] / out["requests"] < CHUNK + 2048:  # a 64 KiB body and its headers
        raise RuntimeError(f"wrk against {url} did not get 64 KiB answers: {out}")
    return out, run.cpu_seconds / (out["duration_us"] / 1e6)


def _parse_wrk(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            found: dict = json.loads(line[len("BENCH "):])
            return found
    raise RuntimeError(f"no summary from wrk:\n{stdout[-2000:]}")


def run(smoke: bool) -> Values:
    size, seconds = (5 if smoke else 50) * harness.MIB, (2 if smoke else 10)
    with harness.stack("streaming") as st:
        worker = st.worker(concurrency=4)
        # The shipped worker class (deploy/gunicorn.conf.py): gevent.
        base = st.api(workers=2, worker_class="gevent")
        url = st.provider.add("/stream/CAbig.wav", body=harness.noise_wav(size))
        harness.register_all(base, [("stream", "CAbig", url)])
        token = harness.token_for("stream")
        auth = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(f"{base}/api/recordings/CAbig/fetch", method="POST", headers=auth)
        urllib.request.urlopen(request, timeout=30).close()
        harness.wait_ready({"stream": ["CAbig"]}, timeout=120)
        worker.stop()  # the worker has nothing more to do: keep it off the measured cores

        from tasks.catalog.queries import Catalog
        from tasks.settings import get_settings

        rec = Catalog(get_settings()).get("stream", "CAbig")
        assert rec is not None and rec.file_path
        media = Path(get_settings().media_dir).absolute()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/recordings/CAbig", headers=auth),
                                    timeout=30) as answer:
            link = json.loads(answer.read())["stream_url"]
        has_link = link.startswith("/media/")
        direct_port, _ = st.nginx(NGINX_DIRECT.format(media=media))
        shipped_port, _ = st.shipped_nginx(int(base.rsplit(":", 1)[1]))
        targets = {
            "direct": (f"http://127.0.0.1:{direct_port}/direct/{rec.file_path}", {}),
            "nginx": (f"http://127.0.0.1:{shipped_port}{link}", {}) if has_link else None,
            "gunicorn": (f"{base}{link}", {}) if has_link else None,
            "endpoint": (f"{base}/api/recordings/CAbig/stream", auth),
        }
        measured = {name: target for name, target in targets.items() if target is not None}
        if len(measured) < len(targets):
            SCENARIO.notes.append(NOT_MEASURED)
        for target in measured.values():
            _wrk(st, target[0], target[1], 1, size)  # warm up: connections, page cache
        # The targets take turns, a block each, so a change in the machine's speed during the run meets them alike
        # (a profile is of one block each).
        blocks = 1 if os.environ.get("BENCH_PROFILE") else 2 if smoke else BLOCKS
        totals = {name: dict.fromkeys(("requests", "seconds", "wrk_cpu", "api_cpu", "nginx_cpu"), 0.0)
                  for name in measured}
        p99s: dict[str, list[float]] = {name: [] for name in measured}
        for _ in range(blocks):
            for name, (url, headers) in measured.items():
                st.profile_start(f"{name}-", roles=("api",))
                api_cpu, nginx_cpu = st.cpu_seconds("api"), st.cpu_seconds("nginx")
                out, wrk_cpu = _wrk(st, url, headers, max(1, seconds // blocks), size)
                elapsed = out["duration_us"] / 1e6
                total = totals[name]
                total["requests"] += out["requests"]
                total["seconds"] += elapsed
                total["wrk_cpu"] += wrk_cpu * elapsed
                total["api_cpu"] += st.cpu_seconds("api") - api_cpu
                total["nginx_cpu"] += st.cpu_seconds("nginx") - nginx_cpu
                st.profile_stop()
                p99s[name].append(out["p99_us"] / 1000)
        values: Values = {}
        for name in targets:
            if name not in measured:
                values |= {f"{name}_{m}": None for m in ("rps", "mbs", "p99", "wrk_cpu", "api_cpu", "nginx_cpu")}
                continue
            total = totals[name]
            values |= {
                f"{name}_rps": total["requests"] / total["seconds"],
                f"{name}_mbs": total["requests"] * CHUNK / total["seconds"] / 1e6,
                f"{name}_p99": max(p99s[name]),
                f"{name}_wrk_cpu": total["wrk_cpu"] / total["seconds"],
                f"{name}_api_cpu": total["api_cpu"] / total["seconds"],
                f"{name}_nginx_cpu": total["nginx_cpu"] / total["seconds"],
            }
        direct = values["direct_rps"] or 0.0
        for name in ("nginx", "gunicorn", "endpoint"):
            rps = values[f"{name}_rps"]
            values[f"{name}_ratio"] = rps / direct if rps is not None else None
        rss = st.peak_rss_mib()
        values |= {"rss_api": rss.get("api"), "rss_worker": rss.get("worker"), "rss_nginx": rss.get("nginx")}
        return values


def _metrics(name: str, label: str) -> list[Metric]:
    return [
        Metric(f"{name}_rps", f"{label}: requests/s", "/s", 4),
        Metric(f"{name}_mbs", f"{label}: body MB/s", "MB/s", 4),
        Metric(f"{name}_p99", f"{label}: latency p99", "ms"),
        Metric(f"{name}_wrk_cpu", f"{label}: wrk CPU (cores)", ""),
        Metric(f"{name}_api_cpu", f"{label}: API CPU (cores)", ""),
        Metric(f"{name}_nginx_cpu", f"{label}: nginx CPU (cores)", ""),
    ]


SCENARIO = Scenario(
    key="streaming",
    title="5. Streaming",
    setup="A stored 50 MiB recording (downloaded through the pipeline, then the worker is stopped). wrk, one "
          f"thread, {CONNECTIONS} keep-alive connections, each request a random 64 KiB-aligned `Range` of the file. "
          f"Each target gets 1 s of warm-up, then 10 s in {BLOCKS} blocks of 1 s, the targets taking turns block by "
          "block (so the machine's drift meets them alike); its p99 is the highest of its blocks'. The targets: "
          "nginx serving the file directly (the limit); the recording's signed media link (its `stream_url`) "
          "through nginx with deploy/nginx.conf (nginx checks the link and sends the file); the same link "
          "answered by gunicorn alone (`gunicorn 'api:create_app()'`, "
          "deploy/gunicorn.conf.py itself with 2 gevent workers, its access log included; only `max_requests` is "
          "off, so no worker restarts during a measurement); and, for comparison, the stream endpoint with a bearer "
          "token through the same gunicorn. One nginx worker process.",
    smoke_setup="A 5 MiB recording, 2 s per target in 2 blocks.",
    metrics=[
        Metric("nginx_ratio", "media link through nginx / direct nginx (requests/s)", "x"),
        Metric("gunicorn_ratio", "media link, gunicorn alone / direct nginx (requests/s)", "x"),
        Metric("endpoint_ratio", "stream endpoint (bearer), gunicorn / direct nginx (requests/s)", "x"),
        *_metrics("direct", "direct nginx"),
        *_metrics("nginx", "link through nginx"),
        *_metrics("gunicorn", "link, gunicorn alone"),
        *_metrics("endpoint", "stream endpoint, gunicorn"),
        Metric("rss_api", "peak RSS, API (gunicorn tree)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree, setup only)", "MiB", 1),
        Metric("rss_nginx", "peak RSS, nginx (both)", "MiB", 1),
    ],
    goals=[
        Goal("media link through nginx >= 0.9 x direct nginx (median)", at_least("nginx_ratio", 0.9)),
        Goal("media link, gunicorn alone >= 0.3 x direct nginx (median)", at_least("gunicorn_ratio", 0.3)),
    ],
    run=run,
)
