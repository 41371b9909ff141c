"""recplay's Celery app and domain: slots and jobs in Redis, media, the catalog, operations and the worker.

``celery -A tasks worker`` finds :data:`app` here; its configuration comes from ``celeryconfig.py``.
"""

from __future__ import annotations

from celery import Celery

# The task modules register themselves on import; workers and beat import them through ``include``, with the
# module that connects the worker's signals (structured logs, heartbeats, giving up the slots a task left).
app = Celery("recplay", include=["tasks.worker.tasks", "tasks.worker.hooks"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
