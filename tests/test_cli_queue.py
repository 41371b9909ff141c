"""`recplay purge-queue`, `set-limit` and `retry` against a real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tasks.slots import keys
from tests.conftest import ROOT, assert_quiescent, run_cli, status_json, wait_for
from tests.provider import Behaviour, make_wav


def cli_with_input(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """The real ``recplay`` with ``stdin`` as its input (run_cli gives it none)."""
    exe = shutil.which("recplay", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "tasks.cli"]
    return subprocess.run([*cmd, *args], cwd=ROOT, env=dict(os.environ), input=stdin, capture_output=True,
                          text=True, timeout=60)


def gated_jobs(provider: Any, api: Any, business_id: str, n: int, gate: threading.Event) -> None:
    audio = make_wav(0.3)
    for i in range(n):
        url = provider.add(f"/{business_id}/r{i}.wav", Behaviour(body=audio, gate=gate))
        assert api.register(f"r{i}", url).status_code == 201
        assert api.fetch(f"r{i}").status_code == 202


def test_purge_queue_returns_parked_jobs_to_new(api_for, provider, procs, rclient):
    # Given a business at its limit of 1: one download held at the provider, three jobs parked.
    biz = "purgeme"
    run_cli("set-limit", biz, "1")
    gate = threading.Event()
    procs.worker(concurrency=4)
    api = api_for(biz)
    gated_jobs(provider, api, biz, 4, gate)
    wait_for(lambda: provider.in_flight[biz] == 1 and rclient.zcard(keys.waiting(biz)) == 3, 30,
             "one download in flight and three jobs parked")

    # Declining the confirmation changes nothing (and fails: exit 1).
    declined = cli_with_input("purge-queue", "--business", biz, stdin="n\n")
    assert declined.returncode == 1
    assert "3 waiting jobs of purgeme: r1, r2, r3" in declined.stdout
    assert rclient.zcard(keys.waiting(biz)) == 3

    # When the operator confirms, the parked jobs are dropped and their recordings are `new` again.
    confirmed = cli_with_input("purge-queue", "--business", biz, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "Dropped 3 waiting jobs of purgeme; 3 recordings are new again." in confirmed.stdout
    assert [api.state(f"r{i}") for i in range(4)] == ["processing", "new", "new", "new"]
    assert status_json(biz)["businesses"][0]["parked"] == 0

    # Then the running download finishes alone, and nothing else is fetched.
    gate.set()
    assert api.wait_status("r0", {"ready", "failed"}, 30)["status"] == "ready"
    assert_quiescent()
    assert [api.state(f"r{i}") for i in range(4)] == ["ready", "new", "new", "new"]
    assert provider.total_downloads() == 1
    assert "Nothing to do" in run_cli("purge-queue", "--business", biz, "--yes").stdout

    # A dropped recording can be asked for again as any new one.
    assert api.fetch("r1").status_code == 202
    assert api.wait_status("r1", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.downloads[f"/{biz}/r1.wav"] == 1


def test_set_limit_raises_a_business_concurrency_while_it_runs(api_for, provider, procs, rclient):
    # Given a business limited to 1 download, with three more jobs parked behind it.
    biz = "growing"
    run_cli("set-limit", biz, "1")
    gate = threading.Event()
    procs.worker(concurrency=6)
    api = api_for(biz)
    gated_jobs(provider, api, biz, 4, gate)
    wait_for(lambda: provider.in_flight[biz] == 1 and rclient.zcard(keys.waiting(biz)) == 3, 30,
             "one download in flight and three jobs parked")
    assert provider.max_in_flight[biz] == 1

    # When the operator raises the limit to 3, two parked jobs get the new slots at once.
    out = run_cli("set-limit", biz, "3").stdout
    assert "growing: limit 3 (was 1); 2 parked jobs handed a slot." in out
    wait_for(lambda: provider.in_flight[biz] == 3, 30, "three downloads in flight")
    business = status_json(biz)["businesses"][0]
    assert (business["limit"], business["active"], business["parked"]) == (3, 3, 1)

    # Then everything completes, never more than 3 at once at the provider.
    gate.set()
    for i in range(4):
        assert api.wait_status(f"r{i}", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.max_in_flight[biz] == 3
    assert_quiescent()
    assert "Nothing to do: the limit of growing is already 3." in run_cli("set-limit", biz, "3").stdout


def test_retry_gives_a_failed_recording_a_new_attempt(api_for, provider, procs):
    # Given a recording whose provider answered 404 once: it failed at once (a permanent error).
    procs.worker(concurrency=2)
    url = provider.add("/again/r.wav", Behaviour(body=make_wav(0.3), fail_first=[404]))
    api = api_for("again")
    assert api.register("r", url).status_code == 201
    assert api.fetch("r").status_code == 202
    assert api.wait_status("r", {"ready", "failed"}, 30)["status"] == "failed"

    # When the operator retries it, a new attempt downloads it.
    out = run_cli("retry", "again", "r").stdout
    assert out == "again/r: new attempt enqueued (it had failed: provider answered 404).\n", out
    assert api.wait_status("r", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.requests["/again/r.wav"] == 2

    # Retrying a recording that is not failed does nothing; an unknown one is an error.
    assert "Nothing to do: again/r is ready, not failed." in run_cli("retry", "again", "r").stdout
    missing = run_cli("retry", "again", "nope", check=False)
    assert missing.returncode == 1
    assert "error: business again has no recording nope" in missing.stderr
    assert_quiescent()
