"""Celery configuration for recplay's workers, beat and the API's producer.

Read by ``tasks.app.config_from_object("celeryconfig")``; every value comes from the same environment as the
rest of recplay (``tasks.settings``).
"""

from __future__ import annotations

import os

from tasks.settings import get_settings

_settings = get_settings()

broker_url = _settings.redis_url
broker_connection_retry_on_startup = True
# Redis redelivers an unacked message after this long. Keep it above the longest download; recovery of crashed
# work never waits for it (the sweeper requeues on lease expiry and the late redelivery is dropped as stale).
broker_transport_options = {"visibility_timeout": int(os.environ.get("RECPLAY_VISIBILITY_TIMEOUT", "7200"))}

task_ignore_result = True
result_backend = None
task_acks_late = True
task_reject_on_worker_lost = True
task_serializer = "json"
accept_content = ["json"]
task_default_queue = "recplay"
task_track_started = True

# Downloads are I/O bound: threads serve them better than prefork. Override with --pool/--concurrency.
worker_pool = os.environ.get("RECPLAY_WORKER_POOL", "threads")
worker_concurrency = int(os.environ.get("RECPLAY_WORKER_CONCURRENCY", "16"))
worker_prefetch_multiplier = 1
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False
worker_cancel_long_running_tasks_on_connection_loss = True

beat_schedule = {
    "sweep": {
        "task": "tasks.sweep",
        "schedule": float(os.environ.get("RECPLAY_SWEEP_SECONDS", "5")),
        "options": {"expires": 30},
    },
}
