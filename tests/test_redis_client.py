"""The process's Redis clients (tasks/slots/client.py, api/limits.py): what a new connection tells the server
(CLIENT SETINFO, Redis 7.2 and later), and that it does not read the package's metadata to say it; under gevent's
patching (the API's gunicorn workers), the pool's check of a connection it hands out still finds a closed one,
with the system's poll, and it keeps a bounded pool of connections that its greenlets take turns on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
import redis.driver_info
import redis.utils

from api.limits import storage_client
from tasks.slots.client import get_redis, readiness_checks_use_os_poll, reset_redis
from tests.conftest import ROOT


def _no_metadata_reads() -> str:
    raise AssertionError("a new connection read redis-py's version from the package metadata")


@pytest.mark.parametrize("which", ["job state", "request limits"])
def test_a_new_connection_names_redis_py_and_its_version_without_reading_metadata(
        which: str, data_dir: Path, redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis.utils, "get_lib_version", _no_metadata_reads)
    reset_redis()
    client = get_redis() if which == "job state" else storage_client(redis_server.url)
    try:
        client.connection_pool.disconnect()
        connection = client.connection_pool.get_connection()  # a new one, connected
        try:
            assert connection.driver_info is not None
            assert (connection.driver_info.formatted_name, connection.driver_info.lib_version) == (
                "redis-py", redis.__version__)
            connection.send_command("PING")
            assert connection.read_response() in ("PONG", b"PONG")
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()
        reset_redis()


#: Run under gevent's patching, as gunicorn's gevent worker runs the API: a pooled connection the server closed
#: must be found when the pool hands it out again, else the next command fails on the dead socket (redis-py 8
#: acts on the check's finding of a closed connection; of unread data it does not, with its maintenance
#: notifications on "auto"); and a check that waits must not hold up the process's other greenlets.
GEVENT_CHECK = """
import os, select
from gevent import monkey
monkey.patch_all()
import redis
from redis._parsers import hiredis as hiredis_parser
from redis.backoff import NoBackoff
from redis.retry import Retry
from api import create_app

import gevent

assert hiredis_parser.select.poll is select.poll, "not patched by gevent to begin with"
create_app()
poller = hiredis_parser.select.poll()
assert (poller.system, poller.cooperative) == (monkey.get_original("select", "poll"), select.poll)
assert hiredis_parser.select.POLLIN == select.POLLIN
wait_readable = monkey.get_original("select", "select")
# No retries: a command on a connection the check let through would fail, not be sent again on a new one.
client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, retry=Retry(NoBackoff(), 0))
pool = client.connection_pool

connection = pool.get_connection()
connection.send_command("CLIENT", "ID")
victim = connection.read_response()
pool.release(connection)
redis.Redis.from_url(os.environ["REDIS_URL"]).client_kill_filter(_id=victim)
assert wait_readable([connection._sock.fileno()], [], [], 5)[0]  # the server closed it
assert client.echo("after the kill") == "after the kill"
assert client.client_id() != victim

# A check that waits (a listener's get_message) lets the other greenlets run: here, the one that publishes.
pubsub = client.pubsub()
pubsub.subscribe("recplay-test")
assert pubsub.get_message(timeout=10)["type"] == "subscribe"
publisher = gevent.spawn_later(0.2, client.publish, "recplay-test", "hello")
message = pubsub.get_message(timeout=30)
assert message is not None and message["data"] == "hello", message
assert publisher.get() == 1
print("checked")
"""


def _under_gevent(script: str, data_dir: Path, redis_url: str) -> str:
    """What ``script`` printed, run in an interpreter of its own (gevent's patching stays there)."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "RECPLAY_DATA_DIR": str(data_dir),
           "RECPLAY_DEV": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip()


def test_under_gevent_the_pool_check_finds_closed_connections_with_the_system_poll(
        data_dir: Path, redis_server) -> None:
    assert _under_gevent(GEVENT_CHECK, data_dir, redis_server.url).endswith("checked")


def test_without_gevent_the_readiness_check_is_left_alone() -> None:
    from redis._parsers import hiredis as hiredis_parser

    assert readiness_checks_use_os_poll() is False
    assert hiredis_parser.select is __import__("select")


#: Under gevent, each of the process's clients keeps at most COOPERATIVE_POOL_SIZE connections: three times as
#: many greenlets, each holding a connection for 0.2 s (a BLPOP that times out), take three turns on them.
GEVENT_POOL = """
import os, time
from gevent import monkey
monkey.patch_all()
import gevent, redis
from api.limits import storage_client
from tasks.slots.client import COOPERATIVE_POOL_SIZE, get_redis

observer = redis.Redis.from_url(os.environ["REDIS_URL"])
for name, client in (("job state", get_redis()), ("request limits", storage_client(os.environ["REDIS_URL"]))):
    before = observer.info("clients")["connected_clients"]
    seen = []
    started = time.monotonic()
    waits = [gevent.spawn(client.blpop, ["recplay-test-empty"], 0.2) for _ in range(3 * COOPERATIVE_POOL_SIZE)]
    while not all(w.ready() for w in waits):
        seen.append(observer.info("clients")["connected_clients"] - before)
        gevent.sleep(0.02)
    elapsed = time.monotonic() - started
    assert [w.get() for w in waits] == [None] * len(waits), name
    assert max(seen) == COOPERATIVE_POOL_SIZE, (name, seen)
    assert elapsed >= 0.6, (name, elapsed)  # three turns
    client.connection_pool.disconnect()
print("bounded")
"""


def test_under_gevent_each_client_keeps_at_most_its_pool_of_connections_and_greenlets_take_turns(
        data_dir: Path, redis_server) -> None:
    assert _under_gevent(GEVENT_POOL, data_dir, redis_server.url).endswith("bounded")


def test_without_gevent_the_pool_is_redis_pys_own(redis_server) -> None:
    reset_redis()
    try:
        assert type(get_redis().connection_pool) is redis.ConnectionPool
        assert type(storage_client(redis_server.url).connection_pool) is redis.ConnectionPool
    finally:
        reset_redis()
