"""The API on a real server in its own process group, for tests of what only the shipped server shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, free_port, wait_for


class Gunicorn:
    """``gunicorn 'api:create_app()'`` with deploy/gunicorn.conf.py, as docker-compose.yml runs it."""

    def __init__(self, log: Path, workers: int = 2) -> None:
        self.port = free_port()
        env = {**os.environ, "GUNICORN_CMD_ARGS": "--config deploy/gunicorn.conf.py",
               "RECPLAY_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers),
               "PYTHONPATH": str(ROOT)}
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "api:create_app()"], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self._healthy, 60, "gunicorn to serve /healthz", interval=0.2)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Quick shutdown: a graceful one (TERM) waits up to graceful_timeout for the clients' idle keep-alive
            # connections, which tests have no reason to wait for.
            os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
