"""``GET /metrics``: Prometheus text read from Redis at every scrape; and the count of media bytes sent.

:class:`RedisCollector` reads the counters every process keeps (:mod:`tasks.metrics`) and the live slot
picture (:mod:`tasks.ops.overview`) at every scrape: nothing is cached.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Iterator

import redis
from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from api.auth import bearer_token
from api.auth import settings as app_settings
from api.errors import ApiError
from tasks import metrics
from tasks.ops.overview import overview
from tasks.ops.workers import MISSED_HEARTBEATS, heartbeat_ages
from tasks.settings import Settings
from tasks.slots.client import get_redis

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

STREAM_ENDPOINT = "recordings.stream"


@bp.get("/metrics")
def scrape() -> Response:
    _require_metrics_token()
    registry: CollectorRegistry = current_app.extensions["recplay.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


def _require_metrics_token() -> None:
    """With RECPLAY_METRICS_TOKEN set, only a scrape bearing it gets the metrics (they name every business).

    Raises:
        ApiError: 401 without that bearer token.
    """
    wanted = app_settings().metrics_token
    if not wanted:
        return
    given = bearer_token()
    if given is None or not hmac.compare_digest(given.encode(), wanted.encode()):
        raise ApiError(401, "unauthorized", "the metrics need the RECPLAY_METRICS_TOKEN bearer token",
                       {"WWW-Authenticate": 'Bearer realm="recplay-metrics"'})


def _counted(body: Iterable[bytes]) -> Iterator[bytes]:
    """Pass the body through, then add what was sent (all of it, or up to a disconnect) to the counter."""
    sent = 0
    try:
        for chunk in body:
            sent += len(chunk)
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
        metrics.count(get_redis(), metrics.BYTES_STREAMED, sent)


def _count_streamed_bytes(response: Response) -> Response:
    if (request.endpoint == STREAM_ENDPOINT and request.method == "GET"
            and response.status_code in (200, 206) and response.is_streamed):
        response.response = _counted(response.response)  # type: ignore[arg-type]
    return response


class RedisCollector(Collector):
    """Prometheus metrics read from Redis at every scrape."""

    def __init__(self, client: Callable[[], redis.Redis], settings: Callable[[], Settings]) -> None:
        self._client, self._settings = client, settings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("recplay_redis_up", "1 when this scrape could read recplay's state in Redis.")
        settings = self._settings()
        try:
            client = self._client()
            picture = overview(client, settings)
            counters = metrics.read_counters(client)
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
        outcomes = dict.fromkeys(metrics.OUTCOMES, 0.0)
        for name, value in counters.items():
            if name.startswith("downloads:"):
                outcomes[name.split(":", 1)[1]] = value
        for outcome, value in outcomes.items():
            downloads.add_metric([outcome], value)
        yield downloads

        buckets = [(str(bound), counters.get(f"download_seconds_bucket:{bound}", 0.0))
                   for bound in metrics.DOWNLOAD_BUCKETS]
        buckets.append(("+Inf", counters.get("download_seconds_count", 0.0)))
        yield HistogramMetricFamily("recplay_download_seconds", "Duration of download attempts.",
                                    buckets=buckets, sum_value=counters.get("download_seconds_sum", 0.0))

        yield CounterMetricFamily("recplay_bytes_streamed", "Media bytes sent to players.",
                                  value=counters.get(metrics.BYTES_STREAMED, 0.0))
        reclaimed = CounterMetricFamily("recplay_reclaimed_leases",
                                        "Slot leases taken back: expired, or held by a gone worker.",
                                        labels=["reason"])
        reclaimed.add_metric(["expired"], counters.get(metrics.RECLAIMED_LEASES, 0.0))
        reclaimed.add_metric(["worker_gone"], counters.get(metrics.EVICTED_LEASES, 0.0))
        yield reclaimed

        fresh = MISSED_HEARTBEATS * settings.worker_heartbeat_seconds
        yield GaugeMetricFamily("recplay_workers_alive", "Workers whose heartbeat is current.",
                                value=sum(1 for age in ages.values() if age <= fresh))


def init_app(app: Flask, settings: Settings) -> None:
    """Register ``/metrics`` with a registry of its own (one app, one collector; tests build many apps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(get_redis, lambda: settings))
    app.extensions["recplay.metrics"] = registry
    app.register_blueprint(bp)
    app.after_request(_count_streamed_bytes)

