"""The overhead scenario's peer: a Celery app with recplay's worker settings (``celeryconfig``) and one task that
does nothing but say it ran (one RPUSH of its finish time), so the run can tell when all are done.

Run it as ``celery -A bench.noop_app worker``, exactly as recplay's worker but for the app.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

DONE_KEY = "bench:noop:done"

app = Celery("recplay-bench-noop")
app.config_from_object("celeryconfig")
app.conf.beat_schedule = {}

_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.task(name="bench.noop", ignore_result=True)
def noop(n: int) -> None:
    _client.rpush(DONE_KEY, f"{n} {time.time()}")
