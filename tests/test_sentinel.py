"""Redis high availability: REDIS_URL names Redis Sentinel (kombu's ``sentinel://`` form) for the broker and the
semaphore alike. One master, one replica and three sentinels on loopback (``redis-server --sentinel``); the
master is killed during a burst of downloads. Every recording must end ready or failed, none stored twice, no
slot left held and the queue empty: the clients find the promoted replica by themselves, fences from the clock
keep an attempt from before the failover from touching a newer one, and the sweep brings back whatever the
replica had not received (it sees another server's run id)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tasks.settings import reset_settings
from tasks.slots.client import reset_redis
from tests.conftest import ROOT, assert_quiescent, free_port, token_for, wait_for
from tests.crashkit import media_files, stored
from tests.provider import make_wav

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MASTER = "recmaster"
RECORDINGS = 24
LIMIT = 3
AUDIO = make_wav(0.5)


class Node:
    def __init__(self, args: list[str], workdir: Path, name: str) -> None:
        exe = shutil.which("redis-server")
        assert exe
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen([exe, *args, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(workdir), "--logfile", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=2)
        wait_for(lambda: _answers(client), 10, f"{name} to answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def sentinel_cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    nodes: list[Node] = []
    try:
        master = Node(["--save", "", "--appendonly", "no"], tmp_path, "master")
        nodes.append(master)
        replica = Node(["--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", str(master.port)],
                       tmp_path, "replica")
        nodes.append(replica)
        wait_for(lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up",
                 20, "the replica to sync")
        sentinels = []
        for i in range(3):
            conf = tmp_path / f"sentinel{i}.conf"
            conf.write_text(
                f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            node = Node([str(conf), "--sentinel"], tmp_path, f"sentinel{i}")
            nodes.append(node)
            sentinels.append(node)
        url = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in sentinels) + "/0"
        yield {"master": master, "replica": replica, "sentinels": sentinels, "url": url}
    finally:
        for node in reversed(nodes):
            node.stop()


def _master_port(sentinel_port: int) -> int:
    reply = redis.Redis(port=sentinel_port, decode_responses=True).sentinel_get_master_addr_by_name(MASTER)
    return int(reply[1])


def test_the_master_killed_during_a_burst_every_recording_ends_and_none_is_stored_twice(
        sentinel_cluster, provider, procs, data_dir, tmp_path, monkeypatch, capsys):
    # Given recplay on Redis Sentinel: two workers, beat and the API, all through the sentinels
    env = {"REDIS_URL": sentinel_cluster["url"], "RECPLAY_SENTINEL_MASTER": MASTER,
           "RECPLAY_MAX_CONCURRENT": str(LIMIT), "RECPLAY_LEASE_SECONDS": "6", "RECPLAY_RESERVATION_SECONDS": "5"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    reset_redis()
    for _ in range(2):
        procs.worker(concurrency=4)
    procs.beat()
    port = free_port()
    with open(tmp_path / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1",
                                "--threads", "8", "api:create_app()"], cwd=ROOT, env={**os.environ},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(base), 30, "the API to answer")
        headers = {"Authorization": f"Bearer {token_for('ha')}"}
        for i in range(RECORDINGS):
            url = provider.add(f"/ha/{i}.wav", body=AUDIO, delay=0.3)
            assert requests.put(f"{base}/api/recordings/CA{i}", json={"media_url": url}, headers=headers,
                                timeout=10).status_code == 201
        for i in range(RECORDINGS):
            assert requests.post(f"{base}/api/recordings/CA{i}/fetch", headers=headers, timeout=10).status_code \
                in (200, 202)

        # When the master dies while downloads run (a few done, most still waiting)
        wait_for(lambda: provider.total_downloads() >= LIMIT, 30, "the first downloads")
        old_master = sentinel_cluster["master"].port
        done_before = provider.total_downloads()
        killed = time.monotonic()
        sentinel_cluster["master"].stop()
        first_sentinel = sentinel_cluster["sentinels"][0].port
        wait_for(lambda: _master_port(first_sentinel) != old_master, 60, "the sentinels to promote the replica")
        promoted = time.monotonic() - killed

        # Then every recording ends ready or failed, each stored at most once, whole
        def status(i: int) -> str:
            try:
                answer = requests.get(f"{base}/api/recordings/CA{i}", headers=headers, timeout=10)
            except requests.RequestException:
                return ""
            return str(answer.json()["status"]) if answer.status_code == 200 else ""

        wait_for(lambda: all(status(i) in ("ready", "failed") for i in range(RECORDINGS)), 120,
                 "every recording to end", interval=0.5)
        ended = time.monotonic() - killed
        finals = [status(i) for i in range(RECORDINGS)]
        assert finals.count("ready") == RECORDINGS, finals
        files = [f for f in media_files(data_dir_settings(), "ha") if not f.startswith(".")]
        assert sorted(files) == sorted([f"CA{i}-{i + 1}.wav" for i in range(RECORDINGS)]
                                       + [f"CA{i}-{i + 1}.wav.peaks" for i in range(RECORDINGS)])
        for i in range(RECORDINGS):
            rec, data = stored(data_dir_settings(), "ha", f"CA{i}")
            assert rec is not None and data == AUDIO
        assert provider.max_in_flight["ha"] <= 2 * LIMIT  # the old master's slots are forgotten with it, once
        assert_quiescent(60)
        with capsys.disabled():
            print(f"\n[failover: {done_before} of {RECORDINGS} downloads done at the kill; replica promoted "
                  f"{promoted:.1f}s after it, every recording ready {ended:.1f}s after it; "
                  f"{provider.total_downloads()} provider downloads]")
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(20)


def data_dir_settings() -> Any:
    from tasks.settings import get_settings

    return get_settings()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
