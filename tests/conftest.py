"""Shared fixtures: a private redis-server, the provider stand-in, real worker and beat subprocesses, the API.

The session starts its own ``redis-server`` on a free port (never the machine's shared one) and flushes only
that; every test gets an empty Redis (kombu's exchange bindings aside), a fresh data directory with its own
SQLite catalog and media store, and the provider stand-in with no behaviours. Locally, without redis-server,
the tests that need it are skipped; in CI (CI=true) a missing redis-server is an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.provider import Provider

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key-0123456789abcdef0123456789"

_state: dict[str, Any] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
             explain: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` (and what ``explain`` tells of the
    state at that moment) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: self._ping(client), 10, "redis-server to answer")

    @staticmethod
    def _ping(client: Any) -> bool:
        try:
            return bool(client.ping())
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart_empty(self) -> None:
        """Kill the server and start it again on the same port with nothing in it."""
        assert self.proc
        self.proc.kill()
        self.proc.wait(10)
        self.start()


def pytest_configure(config: pytest.Config) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="recplay-tests-"))
    _state["workdir"] = workdir
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            raise pytest.UsageError("redis-server is required in CI (install it, or let .ci/run do so)")
        _state["redis"] = None
    else:
        server = RedisServer(workdir)
        server.start()
        _state["redis"] = server
        os.environ["REDIS_URL"] = server.url
    provider = Provider().start()
    _state["provider"] = provider
    os.environ.update({
        "RECPLAY_SECRET_KEY": SECRET,
        "RECPLAY_MEDIA_HOSTS": provider.host,
        # The stand-in listens on loopback: it may (every other media host must resolve to public addresses).
        "RECPLAY_INTERNAL_MEDIA_HOSTS": provider.host,
        "RECPLAY_RETRY_BACKOFF_SECONDS": "0.2",
        "RECPLAY_RETRY_BACKOFF_MAX_SECONDS": "5",
        "RECPLAY_READ_TIMEOUT": "10",
        "RECPLAY_CONNECT_TIMEOUT": "5",
        "RECPLAY_SWEEP_SECONDS": "1",
        # Tests poll statuses fast; the request limits have their own tests (tests/test_rate_limit.py).
        "RECPLAY_RATE_LIMIT": "",
        "RECPLAY_STREAM_RATE_LIMIT": "",
    })
    for name in ("RECPLAY_DEV", "RECPLAY_ADMIN_TOKEN", "DATABASE_URL", "RECPLAY_MAX_CONCURRENT",
                 "RECPLAY_LEASE_SECONDS", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY",
                 "TWILIO_API_SECRET"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    provider = _state.get("provider")
    if provider:
        provider.stop()
    server = _state.get("redis")
    if server:
        server.stop()
    shutil.rmtree(_state.get("workdir", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    server = _state.get("redis")
    if server is None:
        pytest.skip("redis-server is not installed")
    return server  # type: ignore[no-any-return]


def _reset_domain() -> None:
    from tasks.catalog.queries import dispose_engines
    from tasks.settings import reset_settings
    from tasks.slots.client import reset_redis
    from tasks.slots.events import close_hubs

    close_hubs()
    reset_settings()
    reset_redis()
    dispose_engines()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> Iterator[Path]:
    """A fresh data directory and an empty Redis for this test; the environment points at both."""
    import redis

    data = tmp_path / "var"
    monkeypatch.setenv("RECPLAY_DATA_DIR", str(data))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    raw = redis.Redis.from_url(redis_server.url)
    # kombu keeps exchange bindings in Redis and declares them once per process: keep them across the flush.
    bindings = {k: raw.smembers(k) for k in raw.keys("_kombu.binding.*")}
    raw.flushdb()
    for key, members in bindings.items():
        if members:
            raw.sadd(key, *members)
    raw.close()
    _reset_domain()
    yield data
    _reset_domain()


@pytest.fixture
def provider(redis_server: RedisServer) -> Iterator[Provider]:
    found: Provider = _state["provider"]
    found.reset()
    yield found
    found.reset()


@pytest.fixture
def settings(data_dir: Path) -> Any:
    from tasks.settings import get_settings

    return get_settings()


@pytest.fixture
def rclient(data_dir: Path) -> Any:
    from tasks.slots.client import get_redis

    return get_redis()


@pytest.fixture
def app(data_dir: Path) -> Any:
    from api import create_app

    return create_app({"TESTING": True})


def token_for(business_id: str, ttl: int = 3600) -> str:
    from tasks.access import mint_token
    from tasks.settings import get_settings

    return mint_token(get_settings(), business_id, ttl)


class Api:
    """The test client, speaking for one business."""

    def __init__(self, client: Any, business_id: str) -> None:
        self.client = client
        self.business_id = business_id
        self.headers = {"Authorization": f"Bearer {token_for(business_id)}"}

    def register(self, call_sid: str, media_url: str, **extra: Any) -> Any:
        return self.client.put(f"/api/recordings/{call_sid}", json={"media_url": media_url, **extra},
                               headers=self.headers)

    def fetch(self, call_sid: str) -> Any:
        return self.client.post(f"/api/recordings/{call_sid}/fetch", headers=self.headers)

    def status(self, call_sid: str) -> Any:
        return self.client.get(f"/api/recordings/{call_sid}", headers=self.headers)

    def state(self, call_sid: str) -> str:
        return str(self.status(call_sid).get_json()["status"])

    def wait_status(self, call_sid: str, wanted: set[str], timeout: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            body = self.status(call_sid).get_json()
            return body if body["status"] in wanted else None

        return wait_for(check, timeout, f"{self.business_id}/{call_sid} to be one of {sorted(wanted)}")  # type: ignore[no-any-return]

    def stream(self, call_sid: str, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
        return self.client.open(f"/api/recordings/{call_sid}/stream", method=method,
                                headers={**self.headers, **(headers or {})})


@pytest.fixture
def api_for(app: Any) -> Callable[[str], Api]:
    client = app.test_client()
    return lambda business_id: Api(client, business_id)


class WorkerProcess:
    """A real ``celery -A tasks worker`` subprocess."""

    def __init__(self, name: str, concurrency: int, pool: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-l", "INFO", "-P", pool,
             "-c", str(concurrency), "-n", f"{name}@127.0.0.1", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
            return " ready." in self.log()

        wait_for(ready, timeout, f"worker {self.name} to be ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (main process and pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children left behind, if any
        self._log.close()


class Processes:
    """Starts workers and beat with the test's environment; stops them all at the end of the test."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Any] = []
        self.count = 0

    def env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra or {})
        return env

    def worker(self, concurrency: int = 4, pool: str = "threads", env: dict[str, str] | None = None,
               wait: bool = True) -> WorkerProcess:
        self.count += 1
        proc = WorkerProcess(f"w{self.count}", concurrency, pool, self.env(env), self.logdir)
        self.started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    def beat(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.logdir / "beat.log", "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO",
                 "-s", str(self.logdir / "beat-schedule")],
                cwd=ROOT, env=self.env(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def trail(self, business_id: str, call_sid: str) -> str:
        """Every log line of the workers and beat about one job, by process, for a failing assertion's message."""
        needle = f"business_id={business_id} call_sid={call_sid} "
        lines = []
        for path in sorted(self.logdir.glob("*.log")):
            lines += [f"{path.stem}: {line}" for line in path.read_text(errors="replace").splitlines()
                      if needle in line + " "]
        return "\n".join(lines)

    def tail(self, lines: int = 40) -> str:
        """The last lines of every worker's and beat's log."""
        return "\n".join(f"--- {path.stem}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                         for path in sorted(self.logdir.glob("*.log")))

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if isinstance(proc, WorkerProcess):
                proc.stop()
            elif proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def procs(data_dir: Path, tmp_path: Path) -> Iterator[Processes]:
    found = Processes(tmp_path)
    yield found
    found.stop_all()


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real ``recplay`` console script (or ``python -m tasks.cli``) in a subprocess."""
    exe = shutil.which("recplay", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "tasks.cli"]
    result = subprocess.run([*cmd, *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def status_json(business_id: str | None = None) -> dict[str, Any]:
    args = ["status", "--json"] + (["--business", business_id] if business_id else [])
    return json.loads(run_cli(*args).stdout)  # type: ignore[no-any-return]


def assert_quiescent(timeout: float = 20) -> dict[str, Any]:
    """Wait until ``recplay status --json`` shows every business at 0 active, 0 parked, and the queue empty."""

    def quiet() -> dict[str, Any] | None:
        data = status_json()
        if data["queue_length"] == 0 and all(b["active"] == 0 and b["parked"] == 0 for b in data["businesses"]):
            return data
        return None

    return wait_for(quiet, timeout, "0 active, 0 parked and an empty queue", interval=0.2)  # type: ignore[no-any-return]


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads released at once by a barrier; returns their results in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results
