"""Counters every process keeps in Redis, and the Prometheus collector that reads them.

Workers, the beat, the CLI and each API process bump fields of one Redis hash (``keys.METRICS``), so the
API's ``/metrics`` sees all of their work, whichever process serves the scrape. :class:`RedisCollector`
reads the hash and the live slot picture (``tasks.overview``) at every scrape: nothing is cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tasks import keys
from tasks.settings import Settings

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


class RedisCollector(Collector):
    """Prometheus metrics read from Redis at every scrape."""

    def __init__(self, client: Callable[[], redis.Redis], settings: Callable[[], Settings]) -> None:
        self._client, self._settings = client, settings

    def collect(self) -> Iterator[Metric]:
        from tasks.overview import overview
        from tasks.workers import MISSED_HEARTBEATS, heartbeat_ages

        up = GaugeMetricFamily("recplay_redis_up", "1 when this scrape could read recplay's state in Redis.")
        settings = self._settings()
        try:
            client = self._client()
            picture = overview(client, settings)
            counters = read_counters(client)
            ages = heartbeat_ages(client)
        except redis.RedisError as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        active = GaugeMetricFamily("recplay_slots_active", "Download slots held now, per business.",
                                   labels=["business_id"])
        limit = GaugeMetricFamily("recplay_slots_limit", "Concurrent downloads allowed, per business.",
                                  labels=["business_id"])
        parked = GaugeMetricFamily("recplay_parked_jobs", "Jobs waiting in Redis for a slot, per business.",
                                   labels=["business_id"])
        for biz in picture["businesses"]:
            active.add_metric([biz["business_id"]], biz["active"])
            limit.add_metric([biz["business_id"]], biz["limit"])
            parked.add_metric([biz["business_id"]], biz["parked"])
        yield from (active, limit, parked)
        yield GaugeMetricFamily("recplay_queue_length", "Download messages waiting for a worker.",
                                value=picture["queue_length"])

        downloads = CounterMetricFamily("recplay_downloads", "Finished download attempts, by outcome.",
                                        labels=["outcome"])
        outcomes = dict.fromkeys(OUTCOMES, 0.0)
        for name, value in counters.items():
            if name.startswith("downloads:"):
                outcomes[name.split(":", 1)[1]] = value
        for outcome, value in outcomes.items():
            downloads.add_metric([outcome], value)
        yield downloads

        buckets = [(str(bound), counters.get(f"download_seconds_bucket:{bound}", 0.0))
                   for bound in DOWNLOAD_BUCKETS]
        buckets.append(("+Inf", counters.get("download_seconds_count", 0.0)))
        yield HistogramMetricFamily("recplay_download_seconds", "Duration of download attempts.",
                                    buckets=buckets, sum_value=counters.get("download_seconds_sum", 0.0))

        yield CounterMetricFamily("recplay_bytes_streamed", "Media bytes sent to players.",
                                  value=counters.get(BYTES_STREAMED, 0.0))
        reclaimed = CounterMetricFamily("recplay_reclaimed_leases",
                                        "Slot leases taken back: expired, or held by a gone worker.",
                                        labels=["reason"])
        reclaimed.add_metric(["expired"], counters.get(RECLAIMED_LEASES, 0.0))
        reclaimed.add_metric(["worker_gone"], counters.get(EVICTED_LEASES, 0.0))
        yield reclaimed

        fresh = MISSED_HEARTBEATS * settings.worker_heartbeat_seconds
        yield GaugeMetricFamily("recplay_workers_alive", "Workers whose heartbeat is current.",
                                value=sum(1 for age in ages.values() if age <= fresh))
