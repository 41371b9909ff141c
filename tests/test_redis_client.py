"""The process's Redis clients (tasks/slots/client.py, api/limits.py): what a new connection tells the server
(CLIENT SETINFO, Redis 7.2 and later), and that it does not read the package's metadata to say it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.driver_info
import redis.utils

from api.limits import storage_client
from tasks.slots.client import get_redis, reset_redis


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
