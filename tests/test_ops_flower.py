"""A live Flower (``celery -A tasks flower``) shows every download by business_id and call_sid."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, free_port, wait_for
from tests.provider import make_wav

AUTH = "ops:flower-test-password"


class Flower:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, auth: str | None = AUTH) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)


@pytest.fixture
def flower(data_dir, tmp_path) -> Iterator[Flower]:
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "FLOWER_BASIC_AUTH": AUTH},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    found = Flower(port)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "flower.log").read_text()[-3000:])
            return found.get("/healthcheck", auth=None) == (200, "OK")

        wait_for(up, 30, "Flower to answer", interval=0.2)
        yield found
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_flower_lists_downloads_by_call_sid_and_counts_the_queue(flower, api_for, provider, procs):
    # Basic auth from FLOWER_BASIC_AUTH guards the API.
    assert flower.get("/api/queues/length", auth=None)[0] == 401
    assert flower.get("/api/queues/length", auth="ops:wrong")[0] == 401

    # Given two downloads asked for while no worker runs: Flower counts them in the broker's queue.
    api = api_for("flowerbiz")
    for call_sid in ("CAflower1", "CAflower2"):
        url = provider.add(f"/flowerbiz/{call_sid}.wav", body=make_wav(0.2))
        assert api.register(call_sid, url).status_code == 201
        assert api.fetch(call_sid).status_code == 202
    assert flower.json("/api/queues/length") == {"active_queues": [{"name": "recplay", "messages": 2},
                                                                   {"name": "recplay-handoff", "messages": 0},
                                                                   {"name": "recplay-sweep", "messages": 0}]}

    # When a worker runs them, Flower's task list shows each download with [business_id, call_sid].
    worker = procs.worker(concurrency=2)
    for call_sid in ("CAflower1", "CAflower2"):
        assert api.wait_status(call_sid, {"ready", "failed"}, 30)["status"] == "ready"

    def listed() -> dict[str, Any] | None:
        tasks = flower.json("/api/tasks?taskname=tasks.download&state=SUCCESS")
        by_args = {t["args"]: t for t in tasks.values()}
        return by_args if len(by_args) == 2 else None

    by_args = wait_for(listed, 30, "Flower to list both downloads as succeeded", interval=0.3)
    assert set(by_args) == {"['flowerbiz', 'CAflower1']", "['flowerbiz', 'CAflower2']"}
    assert {t["worker"] for t in by_args.values()} == {f"{worker.name}@127.0.0.1"}
    assert {t["name"] for t in by_args.values()} == {"tasks.download"}
    found = flower.json("/api/tasks?search=CAflower2")
    assert [t["args"] for t in found.values()] == ["['flowerbiz', 'CAflower2']"]
    assert flower.json("/api/queues/length") == {"active_queues": [{"name": "recplay", "messages": 0},
                                                                   {"name": "recplay-handoff", "messages": 0},
                                                                   {"name": "recplay-sweep", "messages": 0}]}

    # The task list page shows the args column (flowerconfig.py).
    status, page = flower.get("/tasks")
    assert status == 200
    assert 'data-column="args"' in page
