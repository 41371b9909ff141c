"""Scenario 5, streaming a stored recording: 64 KiB range requests through gunicorn, through nginx with
X-Accel-Redirect (the API checks access, nginx sends the bytes), and nginx serving the file directly (the limit).

The load generator is Debian's ``wrk`` (its own process, one thread) with a Lua script that asks for a random
64 KiB-aligned range of the file on every request; its CPU use is in the table. X-Accel is measured when the API
answers ``RECPLAY_ACCEL_REDIRECT``; otherwise the run says it was not measured, and why.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from bench import harness
from bench.scenario import Goal, Metric, Scenario, Values, at_least

CHUNK = 64 * 1024
ACCEL_PREFIX = "/protected-media/"
CONNECTIONS = 16
NOT_MEASURED = ("X-Accel-Redirect was not measured: the API on this commit does not answer the stream endpoint "
                "with X-Accel-Redirect when RECPLAY_ACCEL_REDIRECT is set.")

WRK_SCRIPT = Path(__file__).with_name("range.lua")

NGINX_SERVERS = """\
    upstream recplay_api {{
        server 127.0.0.1:{api_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{{port}};
        location /api/ {{
            proxy_pass http://recplay_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
        location {accel} {{
            # As deploy/nginx.conf: the API's validators, Range and If-Range applied by nginx.
            internal;
            alias {media}/;
            etag off;
            add_header ETag $upstream_http_etag;
            add_header Last-Modified $upstream_http_last_modified;
            if_modified_since off;
            max_ranges 1;
        }}
        location /media/ {{
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


def _answers_accel(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Range": "bytes=0-1"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return bool(response.headers.get("X-Accel-Redirect"))


def run(smoke: bool) -> Values:
    size, seconds = (5 if smoke else 50) * harness.MIB, (2 if smoke else 10)
    with harness.stack("streaming") as st:
        worker = st.worker(concurrency=4)
        base = st.api(workers=2, threads=4)
        url = st.provider.add("/stream/CAbig.wav", body=b"RIFF" + bytes(size - 4))
        harness.register_all(base, [("stream", "CAbig", url)])
        token = harness.token_for("stream")
        request = urllib.request.Request(f"{base}/api/recordings/CAbig/fetch", method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(request, timeout=30).close()
        harness.wait_ready({"stream": ["CAbig"]}, timeout=120)
        worker.stop()  # the worker has nothing more to do: keep it off the measured cores

        from tasks.catalog.queries import Catalog
        from tasks.settings import get_settings

        rec = Catalog(get_settings()).get("stream", "CAbig")
        assert rec is not None and rec.file_path
        media = Path(get_settings().media_dir).absolute()
        accel_base = st.api(workers=2, threads=4, extra_env={"RECPLAY_ACCEL_REDIRECT": ACCEL_PREFIX})
        accel = _answers_accel(f"{accel_base}/api/recordings/CAbig/stream", token)
        port, _ = st.nginx(NGINX_SERVERS.format(api_port=accel_base.rsplit(":", 1)[1], accel=ACCEL_PREFIX,
                                                media=media))
        nginx = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        targets = {
            "direct": (f"{nginx}/media/{rec.file_path}", {}),
            "xaccel": (f"{nginx}/api/recordings/CAbig/stream", auth) if accel else None,
            "gunicorn": (f"{base}/api/recordings/CAbig/stream", auth),
        }
        values: Values = {}
        for name, target in targets.items():
            if target is None:
                SCENARIO.notes.append(NOT_MEASURED)
                values |= {f"{name}_{m}": None for m in ("rps", "mbs", "p99", "wrk_cpu", "api_cpu", "nginx_cpu")}
                continue
            _wrk(st, target[0], target[1], 1, size)  # warm up: connections, page cache
            st.profile_start(f"{name}-", roles=("api",))
            api_cpu, nginx_cpu = st.cpu_seconds("api"), st.cpu_seconds("nginx")
            out, wrk_cpu = _wrk(st, target[0], target[1], seconds, size)
            elapsed = out["duration_us"] / 1e6
            api_cpu, nginx_cpu = st.cpu_seconds("api") - api_cpu, st.cpu_seconds("nginx") - nginx_cpu
            st.profile_stop()
            values |= {
                f"{name}_rps": out["requests"] / elapsed,
                f"{name}_mbs": out["requests"] * CHUNK / elapsed / 1e6,
                f"{name}_p99": out["p99_us"] / 1000,
                f"{name}_wrk_cpu": wrk_cpu,
                f"{name}_api_cpu": api_cpu / elapsed,
                f"{name}_nginx_cpu": nginx_cpu / elapsed,
            }
        direct = values["direct_rps"] or 0.0
        values["xaccel_ratio"] = values["xaccel_rps"] / direct if values["xaccel_rps"] is not None else None
        values["gunicorn_ratio"] = (values["gunicorn_rps"] or 0.0) / direct
        rss = st.peak_rss_mib()
        values |= {"rss_api": rss.get("api"), "rss_worker": rss.get("worker"), "rss_nginx": rss.get("nginx")}
        return values


SCENARIO = Scenario(
    key="streaming",
    title="5. Streaming",
    setup="A stored 50 MiB recording (downloaded through the pipeline, then the worker is stopped). wrk, one "
          f"thread, {CONNECTIONS} keep-alive connections, 10 s per target after 1 s of warm-up, each request a "
          "random 64 KiB-aligned `Range` of the file: nginx serving the file directly (the limit); nginx in "
          "front of the API with X-Accel-Redirect (`RECPLAY_ACCEL_REDIRECT`, an internal location); gunicorn "
          "alone (`gunicorn 'api:create_app()'`, 2 workers x 4 threads). One nginx worker process.",
    smoke_setup="A 5 MiB recording, 2 s per target.",
    metrics=[
        Metric("xaccel_ratio", "X-Accel / direct nginx (requests/s)", "x"),
        Metric("gunicorn_ratio", "gunicorn alone / direct nginx (requests/s)", "x"),
        Metric("direct_rps", "direct nginx: requests/s", "/s", 4),
        Metric("direct_mbs", "direct nginx: body MB/s", "MB/s", 4),
        Metric("direct_p99", "direct nginx: latency p99", "ms"),
        Metric("direct_wrk_cpu", "direct nginx: wrk CPU (cores)", ""),
        Metric("direct_api_cpu", "direct nginx: API CPU (cores)", ""),
        Metric("direct_nginx_cpu", "direct nginx: nginx CPU (cores)", ""),
        Metric("xaccel_rps", "X-Accel: requests/s", "/s", 4),
        Metric("xaccel_mbs", "X-Accel: body MB/s", "MB/s", 4),
        Metric("xaccel_p99", "X-Accel: latency p99", "ms"),
        Metric("xaccel_wrk_cpu", "X-Accel: wrk CPU (cores)", ""),
        Metric("xaccel_api_cpu", "X-Accel: API CPU (cores)", ""),
        Metric("xaccel_nginx_cpu", "X-Accel: nginx CPU (cores)", ""),
        Metric("gunicorn_rps", "gunicorn: requests/s", "/s", 4),
        Metric("gunicorn_mbs", "gunicorn: body MB/s", "MB/s", 4),
        Metric("gunicorn_p99", "gunicorn: latency p99", "ms"),
        Metric("gunicorn_wrk_cpu", "gunicorn: wrk CPU (cores)", ""),
        Metric("gunicorn_api_cpu", "gunicorn: API CPU (cores)", ""),
        Metric("gunicorn_nginx_cpu", "gunicorn: nginx CPU (cores)", ""),
        Metric("rss_api", "peak RSS, API (both gunicorn trees)", "MiB", 1),
        Metric("rss_worker", "peak RSS, worker (celery tree, setup only)", "MiB", 1),
        Metric("rss_nginx", "peak RSS, nginx", "MiB", 1),
    ],
    goals=[
        Goal("X-Accel >= 0.9 x direct nginx (median)", at_least("xaccel_ratio", 0.9)),
        Goal("gunicorn alone >= 0.3 x direct nginx (median)", at_least("gunicorn_ratio", 0.3)),
    ],
    run=run,
)
