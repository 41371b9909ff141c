"""``GET /metrics``: Prometheus text read from Redis at every scrape; and the count of media bytes sent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tasks import metrics
from tasks.redis_client import get_redis
from tasks.settings import Settings

bp = Blueprint("metrics", __name__)

STREAM_ENDPOINT = "recordings.stream"


@bp.get("/metrics")
def scrape() -> Response:
    from flask import current_app

    registry: CollectorRegistry = current_app.extensions["recplay.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


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


def init_app(app: Flask, settings: Settings) -> None:
    """Register ``/metrics`` with a registry of its own (one app, one collector; tests build many apps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RedisCollector(get_redis, lambda: settings))
    app.extensions["recplay.metrics"] = registry
    app.register_blueprint(bp)
    app.after_request(_count_streamed_bytes)

