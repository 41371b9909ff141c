"""The overhead scenario's fairer peer: the naive "seed" design recplay replaced, as a minimal Flask + Celery app.

POST /api/recordings/<call_sid>/fetch reads the business from the bearer token's payload (not verified: this app
only routes), looks the media URL up in one Redis hash (filled by the scenario beforehand) and enqueues one Celery
task; the task downloads the file with ``requests``, writes it to disk and marks it done (one RPUSH of its finish
time, as ``bench.noop_app`` does). No leases, no dedup, no catalog, no fsync, no retries.

Run it as ``gunicorn bench.seed_app:app`` and ``celery -A bench.seed_app:celery worker`` (the Celery app is named
``celery`` beside the Flask ``app``, so ``-A`` must name it); the worker has recplay's settings (``celeryconfig``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import jwt
import redis
import requests
from celery import Celery
from flask import Flask, abort, request

MEDIA_KEY = "bench:seed:media"  # hash: "<business_id>/<call_sid>" -> media URL
DONE_KEY = "bench:seed:done"  # list: "<business_id>/<call_sid> <finish time>"

MEDIA_DIR = Path(os.environ.get("RECPLAY_DATA_DIR", "var")) / "seed"

_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
_local = threading.local()

celery = Celery("recplay-bench-seed")
celery.config_from_object("celeryconfig")
celery.conf.beat_schedule = {}

app = Flask(__name__)


def _session() -> requests.Session:
    """One session per worker thread, so downloads reuse connections as recplay's do."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@celery.task(name="bench.seed.download", ignore_result=True)
def download(business_id: str, call_sid: str, url: str) -> None:
    """Download one recording, write it whole, and say it is done."""
    response = _session().get(url, timeout=60)
    response.raise_for_status()
    folder = MEDIA_DIR / business_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{call_sid}.wav").write_bytes(response.content)
    _client.rpush(DONE_KEY, f"{business_id}/{call_sid} {time.time()}")


@app.post("/api/recordings/<call_sid>/fetch")
def fetch(call_sid: str) -> tuple[dict[str, str], int]:
    """Enqueue the download of a registered recording: one Redis read and one task per request."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    try:
        business_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    except (jwt.InvalidTokenError, KeyError):
        abort(401)
    url = _client.hget(MEDIA_KEY, f"{business_id}/{call_sid}")
    if url is None:
        abort(404)
    download.delay(business_id, call_sid, str(url))
    return {"status": "queued"}, 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """What the bench harness polls to know the API is up."""
    return {"status": "ok"}
