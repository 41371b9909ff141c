"""recplay's Celery app and domain: jobs, slots, downloads, the media store and the catalog.

``celery -A tasks worker`` finds :data:`app` here; its configuration comes from ``celeryconfig.py``.
"""

from __future__ import annotations

from celery import Celery

# The task modules register themselves on import; workers and beat import them through ``include``, with the
# modules that hook the worker's signals (heartbeats, structured logs).
app = Celery("recplay", include=["tasks.download", "tasks.sweeper", "tasks.workers", "tasks.logs"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
