"""`make run`'s launcher starts the whole system with demo data, prints the player URL, and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, free_port, wait_for


def test_the_launcher_serves_the_demo_business_and_stops_everything_on_ctrl_c(tmp_path, redis_server):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RECPLAY_SECRET_KEY",
                                                            "RECPLAY_MEDIA_HOSTS",
                                                            "RECPLAY_INTERNAL_MEDIA_HOSTS")}
    env.update(PORT=str(port), RECPLAY_DATA_DIR=str(tmp_path / "var"), PATH=f"{ROOT}/.venv/bin:{env['PATH']}")
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = wait_for(lambda: re.search(rf"http://127\.0\.0\.1:{port}/#token=(\S+)", log_path.read_text()),
                       60, "the player URL")
        token = url.group(1)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/recordings",
                                     headers={"Authorization": f"Bearer {token}"})
        items = json.load(urllib.request.urlopen(req, timeout=10))["items"]
        assert [i["call_sid"] for i in items] == [f"CAdemo000{n}" for n in (5, 4, 3, 2, 1)]

        fetch = urllib.request.Request(f"http://127.0.0.1:{port}/api/recordings/CAdemo0003/fetch", method="POST",
                                       headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(fetch, timeout=10)

        def ready() -> dict | None:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/recordings/CAdemo0003",
                                         headers={"Authorization": f"Bearer {token}"})
            body = json.load(urllib.request.urlopen(req, timeout=10))
            return body if body["status"] == "ready" else None

        body = wait_for(ready, 60, "a demo recording to be ready", interval=0.2)
        audio = urllib.request.urlopen(f"http://127.0.0.1:{port}{body['stream_url']}", timeout=10).read()
        assert audio[:4] == b"RIFF"
        assert len(audio) == body["size_bytes"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        assert b"recplay" in page
        # The printed token is a player's: it plays, and cannot register or delete.
        for method, path in (("PUT", "CAdemo0009"), ("DELETE", "CAdemo0003")):
            refused = urllib.request.Request(f"http://127.0.0.1:{port}/api/recordings/{path}", method=method,
                                             data=b'{"media_url": "https://api.twilio.com/x.mp3"}',
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(refused, timeout=10)
            assert answer.value.code == 403, method
            assert json.load(answer.value)["error"]["code"] == "forbidden"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", log_path.read_text())]
    assert len(pids) == 4  # redis, api, worker, beat
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid)]
    assert alive == [], f"processes left running: {alive}"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return f.read().lower()
    except FileNotFoundError:
        return "zombie"
