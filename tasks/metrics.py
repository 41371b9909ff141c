"""Counters every process keeps in Redis.

Workers, the beat, the CLI and each API process bump fields of one Redis hash (``keys.METRICS``), so the
API's ``/metrics`` (its Prometheus collector is in ``api/metrics.py``) sees all of their work, whichever process
serves the scrape.
"""

from __future__ import annotations

import logging

import redis

from tasks.slots import keys

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the download-duration histogram buckets.
DOWNLOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Outcomes of a download attempt; each is exported even while it is 0.
OUTCOMES = ("ready", "failed", "retried", "lease_lost")

# Fields of the keys.METRICS hash.
RECLAIMED_LEASES = "reclaimed_leases"  # expired leases the sweep dropped
EVICTED_LEASES = "evicted_leases"  # live leases of gone workers released by purge-stuck
BYTES_STREAMED = "bytes_streamed"  # media bytes the API sent to players


def count_download(client: redis.Redis, outcome: str, seconds: float) -> None:
    """Count one finished attempt by outcome and its duration (never lets metrics break a download)."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(keys.METRICS, f"downloads:{outcome}", 1)
        for bound in DOWNLOAD_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(keys.METRICS, f"download_seconds_bucket:{bound}", 1)
        pipe.hincrby(keys.METRICS, "download_seconds_count", 1)
        pipe.hincrbyfloat(keys.METRICS, "download_seconds_sum", seconds)
        pipe.execute()
    except redis.RedisError:
        log.warning("could not count a download outcome=%s", outcome)


def count(client: redis.Redis, name: str, amount: int = 1) -> None:
    if amount:
        try:
            client.hincrby(keys.METRICS, name, amount)
        except redis.RedisError:
            log.warning("could not count %s", name)


def read_counters(client: redis.Redis) -> dict[str, float]:
    return {str(k): float(v) for k, v in client.hgetall(keys.METRICS).items()}
