"""Shared process management for the benchmarks.

A :class:`Stack` is one run's world: a private ``redis-server`` on a free loopback port, a fresh data directory,
the provider stand-in (``tests.provider.Provider``, in this process), and whatever real processes the scenario
starts: ``celery -A tasks worker`` (threads pool), ``gunicorn 'api:create_app()'``, nginx with its own prefix and
configuration, and load generators (``python -m bench.client``, ``wrk``). Everything listens on 127.0.0.1 only.
Every process is started in its own session and its whole group is stopped when the stack closes.

While a stack is open, a sampler records the peak resident memory of each role's process tree (the API is the
gunicorn master and its workers; the worker is the celery main process and its pool).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.provider import Provider

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECRET = "bench-secret-key-0123456789abcdef0123456789"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def commit() -> str:
    """The commit measured, and "dirty" when the work tree has changes beside it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return f"{sha} (dirty)" if git("status", "--porcelain", "--untracked-files=no") else sha


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class TimedProvider(Provider):
    """The tests' provider, also noting when each request arrived and when its answer's last byte was written
    (wall clock, comparable with Redis TIME and the load generators)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, list[float]] = defaultdict(list)
        self.finished: dict[str, list[float]] = defaultdict(list)

    def _handler(self) -> Any:
        base = super()._handler()
        provider = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def setup(self) -> None:
                super().setup()
                self.wfile = _TimedWriter(self.wfile)  # type: ignore[has-type]

            def do_GET(self) -> None:
                with provider.lock:
                    provider.arrived[self.path.split("?")[0]].append(time.time())
                super().do_GET()
                with provider.lock:
                    provider.finished[self.path.split("?")[0]].append(self.wfile.last_write)

        return Handler


class _TimedWriter:
    """A socket writer that remembers when it last wrote (a trickled body sleeps after its last piece)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.last_write = 0.0

    def write(self, data: bytes) -> int:
        n = self.raw.write(data)
        self.last_write = time.time()
        return int(n or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def process_trees(pids: list[int]) -> list[psutil.Process]:
    """The live processes of the trees rooted at ``pids`` (roots and all their descendants)."""
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return procs


class RssSampler:
    """Samples the resident memory of process trees, one tree per role, and keeps each role's peak."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.roots: dict[str, list[int]] = defaultdict(list)
        self.peak: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def watch(self, role: str, pid: int) -> None:
        self.roots[role].append(pid)

    def sample(self) -> None:
        for role, pids in list(self.roots.items()):
            total = 0
            for proc in process_trees(pids):
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak[role] = max(self.peak[role], total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(5)
        return dict(self.peak)


@dataclass
class Service:
    """A started process (in its own session) and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 10) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@dataclass
class ClientRun:
    """What a load generator printed (JSON), and the CPU it used."""

    output: Any
    cpu_seconds: float
    wall_seconds: float

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy the whole time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Stack:
    """One run's processes and state; use as a context manager."""

    name: str
    extra_env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    services: list[Service] = field(default_factory=list, init=False)
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    provider: TimedProvider = field(init=False)
    rss: RssSampler = field(init=False)
    redis_port: int = field(init=False)

    def __enter__(self) -> Stack:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"recplay-bench-{self.name}-"))
        self.provider = TimedProvider()
        self.provider.start()
        self.rss = RssSampler()
        self.redis_port = self.redis_server("redis")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "RECPLAY_DATA_DIR": str(self.workdir / "var"),
            "RECPLAY_SECRET_KEY": SECRET,
            "RECPLAY_MEDIA_HOSTS": self.provider.host,
            "RECPLAY_INTERNAL_MEDIA_HOSTS": self.provider.host,
            "RECPLAY_SWEEP_SECONDS": "5",
            # The per-business abuse limits stay on (their cost per request is part of the API's), set far above
            # what a scenario sends so they never answer 429.
            "RECPLAY_RATE_LIMIT": "10000000/minute",
            "RECPLAY_STREAM_RATE_LIMIT": "10000000/minute",
            **self.extra_env,
        }
        for name in ("DATABASE_URL", "RECPLAY_DEV", "RECPLAY_ACCEL_REDIRECT"):
            if name not in self.extra_env:
                self.env.pop(name, None)
        # This process uses the domain too (tokens, job state, catalog): point it at the same world.
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("RECPLAY_", "REDIS_URL"))})
        for name in ("DATABASE_URL", "RECPLAY_ACCEL_REDIRECT"):
            if name not in self.env:
                os.environ.pop(name, None)
        reset_domain()
        # Create the catalog's schema before any process starts, so no scenario measures a migration.
        from tasks.catalog.queries import get_engine
        from tasks.settings import get_settings

        get_engine(get_settings())
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            for service in self.services:
                with contextlib.suppress(OSError):
                    errors = [line for line in service.log().splitlines() if "Error" in line or "Traceback" in line]
                    if errors:
                        print(f"--- {service.name} log: {errors[-5:]}", file=sys.stderr)
        self.close()

    def close(self) -> None:
        self.rss.stop()
        self.profile_stop()
        for service in reversed(self.services):
            service.stop()
        self.provider.stop()
        reset_domain()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- processes ------------------------------------------------------------------------------------------------

    def redis_server(self, name: str) -> int:
        """A private ``redis-server`` (no persistence) on a free loopback port; returns its port once it answers."""
        import redis

        port = free_port()
        self._start(name, [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", str(self.workdir)])
        probe = redis.Redis(port=port)
        wait_for(lambda: _ping(probe), 10, "redis-server to answer")
        probe.close()
        return port

    def _start(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> Service:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        service = Service(name, proc, log_path)
        self.services.append(service)
        return service

    def worker(self, concurrency: int = 16, app: str = "tasks", name: str = "w1", role: str = "worker") -> Service:
        """A real celery worker (threads pool) of ``app``; returns once it says it is ready."""
        service = self._start(
            f"worker-{name}",
            [PY, "-m", "celery", "-A", app, "worker", "-l", "WARNING", "-P", "threads", "-c", str(concurrency),
             "-n", f"{name}@127.0.0.1", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=self.env,
        )
        self.rss.watch(role, service.proc.pid)

        def ready() -> bool:
            if service.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{service.log()[-3000:]}")
            return _worker_ready(self.env["REDIS_URL"], f"{name}@127.0.0.1", service)

        wait_for(ready, 60, "the worker to be ready", interval=0.1)
        return service

    def api(self, workers: int = 2, threads: int = 8, extra_env: dict[str, str] | None = None,
            worker_class: str = "gthread", app: str = "api:create_app()", role: str = "api") -> str:
        """``gunicorn 'api:create_app()'`` (or another WSGI ``app``, watched as ``role``): gthread with ``threads``
        per worker, or gevent with deploy/gunicorn.conf.py itself (its access log, forwarded-address and keep-alive
        settings included, as production runs it); returns its base URL once /healthz answers."""
        port = free_port()
        env = {**self.env, **(extra_env or {})}
        if worker_class == "gevent":
            env.update({"GUNICORN_CMD_ARGS": f"--config {ROOT / 'deploy' / 'gunicorn.conf.py'}",
                        "RECPLAY_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)})
            cmd = [PY, "-m", "gunicorn", app, "--backlog", "2048", "--max-requests", "0"]
        else:
            cmd = [PY, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", worker_class,
                   "--threads", str(threads), "--log-level", "warning", "--keep-alive", "30", "--backlog", "2048"]
        service = self._start(role, cmd, env=env)
        self.rss.watch(role, service.proc.pid)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _http_ok(url + "/healthz", service), 60, "the API to answer", interval=0.1)
        return url

    def profile_start(self, label: str = "", roles: tuple[str, ...] = ("api", "worker")) -> None:
        """With BENCH_PROFILE=DIR, sample each role's process tree with py-spy into DIR/<stack>-<label><role>.txt
        (collapsed stacks) until :meth:`profile_stop`. Samples are of the thread holding the GIL (Python's CPU
        time), or of every thread, waiting ones included (wall time), with BENCH_PROFILE_MODE=wall."""
        out = os.environ.get("BENCH_PROFILE")
        if not out:
            return
        Path(out).mkdir(parents=True, exist_ok=True)
        exe = shutil.which("py-spy", path=str(Path(PY).parent)) or "py-spy"
        mode = ["--idle"] if os.environ.get("BENCH_PROFILE_MODE") == "wall" else ["--gil"]
        for role in roles:
            for i, pid in enumerate(self.rss.roots.get(role, [])):
                if psutil.pid_exists(pid):
                    path = Path(out) / f"{self.name}-{label}{role}{i or ''}.txt"
                    self.profilers.append(subprocess.Popen(
                        [exe, "record", "--subprocesses", "--nonblocking", "--format", "raw", "--rate", "250",
                         *mode, "-o", str(path), "-p", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                    ))
        time.sleep(0.5 if self.profilers else 0)  # let py-spy attach

    def profile_stop(self) -> None:
        for profiler in self.profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for profiler in self.profilers:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
        self.profilers.clear()

    def cpu_seconds(self, role: str) -> float:
        """CPU time (user + system) used so far by a role's trees: each live process's own, and that of its
        children that have exited and been waited for (a decoder retired, a gunicorn worker replaced), which no
        live process's own times include."""
        total = 0.0
        for proc in process_trees(self.rss.roots.get(role, [])):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def nginx(self, server_blocks: str) -> tuple[int, Service]:
        """Debian's nginx with its own prefix and configuration; ``server_blocks`` may use ``{port}``."""
        prefix = self.workdir / "nginx"
        for sub in ("logs", "tmp", "cache"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        # As root, nginx's workers would run as nobody, who cannot read this private directory.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_MAIN.format(user=user, prefix=prefix,
                                          servers=server_blocks.replace("{port}", str(port))))
        return port, self.nginx_with(conf, port, prefix)

    def shipped_nginx(self, api_port: int) -> tuple[int, Service]:
        """deploy/nginx.conf itself (one worker process, no access log), in front of the API on ``api_port``."""
        from tasks.settings import get_settings
        from tests.nginxconf import render_conf

        prefix = self.workdir / "nginx-shipped"
        prefix.mkdir(parents=True, exist_ok=True)
        port = free_port()
        settings = get_settings()
        conf = render_conf(prefix, api_port, port, settings.media_dir.absolute(),
                           settings.media_link_secret_value(), access_log=False)
        return port, self.nginx_with(conf, port, prefix, name="nginx-shipped")

    def nginx_with(self, conf: Path, port: int, prefix: Path, name: str = "nginx") -> Service:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        service = self._start(name, [exe, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], cwd=prefix)
        self.rss.watch("nginx", service.proc.pid)
        wait_for(lambda: _port_open(port, service), 20, "nginx to listen", interval=0.05)
        return service

    def client(self, *args: str, timeout: float = 600) -> ClientRun:
        """Run ``python -m bench.client ARGS`` to completion; returns its JSON output and CPU use."""
        return self.run_loadgen([PY, "-m", "bench.client", *args], timeout=timeout, parse=json.loads)

    def run_loadgen(self, cmd: list[str], timeout: float, parse: Callable[[str], Any]) -> ClientRun:
        before, started = _children_cpu(), time.monotonic()
        result = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        wall, cpu = time.monotonic() - started, _children_cpu() - before
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return ClientRun(parse(result.stdout), cpu, wall)

    def start_client(self, *args: str) -> subprocess.Popen[str]:
        """Start ``python -m bench.client ARGS`` in the background (finish it with :func:`finish_client`)."""
        proc = subprocess.Popen([PY, "-m", "bench.client", *args], cwd=ROOT, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        return proc

    def peak_rss_mib(self) -> dict[str, float]:
        self.rss.sample()
        return {role: round(peak / MIB, 1) for role, peak in self.rss.peak.items()}


def finish_client(proc: subprocess.Popen[str], timeout: float = 600) -> ClientRun:
    """Wait for a background load generator; it reports its own CPU time in its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{err[-3000:]}")
    data = json.loads(out)
    return ClientRun(data, float(data["cpu_seconds"]), float(data["wall_seconds"]))


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def _worker_ready(redis_url: str, hostname: str, service: Service) -> bool:
    # With -l WARNING the worker prints nothing when ready: ask it over the broker instead.
    from celery import Celery

    probe = Celery(broker=redis_url)
    try:
        replies = probe.control.ping(destination=[hostname], timeout=0.5)
    except Exception:
        return False
    finally:
        probe.close()
    return bool(replies)


def _http_ok(url: str, service: Service) -> bool:
    import urllib.request

    if service.proc.poll() is not None:
        raise RuntimeError(f"{service.name} exited:\n{service.log()[-3000:]}")
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_open(port: int, service: Service) -> bool:
    if service.proc.poll() is not None:
        raise RuntimeError(f"{service.name} exited:\n{service.log()[-3000:]}")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def reset_domain() -> None:
    from tasks.catalog.queries import dispose_engines
    from tasks.settings import reset_settings
    from tasks.slots.client import reset_redis

    reset_settings()
    reset_redis()
    dispose_engines()


def token_for(business_id: str) -> str:
    from tasks.access import mint_token
    from tasks.settings import get_settings

    return mint_token(get_settings(), business_id, 4 * 3600)


def redis_now() -> float:
    """Redis TIME as wall-clock seconds (job timestamps are Redis TIME in ms)."""
    from tasks.slots.client import get_redis

    seconds, micros = get_redis().time()
    return int(seconds) + int(micros) / 1e6


def job_fields(business_id: str, call_sids: list[str], *names: str) -> list[list[str | None]]:
    """Fields of many job hashes in one round trip."""
    from tasks.slots import keys
    from tasks.slots.client import get_redis

    pipe = get_redis().pipeline(transaction=False)
    for call_sid in call_sids:
        pipe.hmget(keys.job(business_id, call_sid), list(names))
    return list(pipe.execute())


def wait_ready(jobs: dict[str, list[str]], timeout: float) -> dict[tuple[str, str], float]:
    """Wait until every (business, call_sid) job is ready; returns each one's done_at (wall seconds)."""
    done: dict[tuple[str, str], float] = {}

    def all_ready() -> bool:
        for business_id, call_sids in jobs.items():
            pending = [c for c in call_sids if (business_id, c) not in done]
            if not pending:
                continue
            for call_sid, (status, done_at) in zip(pending, job_fields(business_id, pending, "status", "done_at"),
                                                   strict=True):
                if status == "failed":
                    raise RuntimeError(f"{business_id}/{call_sid} failed")
                if status == "ready" and done_at:
                    done[(business_id, call_sid)] = int(done_at) / 1000
        return sum(len(v) for v in jobs.values()) == len(done)

    wait_for(all_ready, timeout, "every recording to be ready", interval=0.05)
    return done


def register_all(base_url: str, items: list[tuple[str, str, str]], threads: int = 8) -> None:
    """PUT every (business_id, call_sid, media_url) through the API (setup, not measured)."""
    import requests

    tokens = {b: token_for(b) for b in {b for b, _, _ in items}}
    local = threading.local()
    errors: list[str] = []

    def put(item: tuple[str, str, str]) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        business_id, call_sid, url = item
        r = session.put(f"{base_url}/api/recordings/{call_sid}", json={"media_url": url},
                        headers={"Authorization": f"Bearer {tokens[business_id]}"}, timeout=60)
        if r.status_code not in (200, 201):
            errors.append(f"{call_sid}: {r.status_code} {r.text[:200]}")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, items))
    if errors:
        raise RuntimeError(f"registration failed: {errors[:3]}")


def warm_up(st: Stack, base: str) -> None:
    """One download through the API and the worker before a measured phase, so no scenario measures a process's
    first-use costs (imports done on first use, connection pools, the catalog's schema check)."""
    import urllib.request

    from tests.provider import make_wav

    url = st.provider.add("/warmup/CAwarm.wav", body=make_wav(0.05))
    register_all(base, [("warmup", "CAwarm", url)])
    request = urllib.request.Request(f"{base}/api/recordings/CAwarm/fetch", method="POST",
                                     headers={"Authorization": f"Bearer {token_for('warmup')}"})
    urllib.request.urlopen(request, timeout=60).close()
    wait_ready({"warmup": ["CAwarm"]}, timeout=60)


def downloads_of(provider: TimedProvider, items: list[tuple[str, str, str]]) -> int:
    """Provider downloads of these (business_id, call_sid, url) items, whose paths are /business/call_sid.wav."""
    return sum(provider.downloads[f"/{b}/{c}.wav"] for b, c, _ in items)


def noise_wav(size: int, rate: int = 8000) -> bytes:
    """A valid WAV (mono 16-bit PCM of random samples) of exactly ``size`` bytes: workers decode every download
    through, so a body that only starts like a WAV would be refused."""
    frames = (size - 44) // 2
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(os.urandom(frames * 2))
    data = buf.getvalue()
    assert len(data) == size - (size - 44) % 2, len(data)
    return data


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@contextlib.contextmanager
def stack(name: str, **env: str) -> Iterator[Stack]:
    with Stack(name, dict(env)) as found:
        yield found


NGINX_MAIN = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ audio/wav wav; audio/mpeg mp3; }}
    default_type application/octet-stream;
{servers}
}}
"""
