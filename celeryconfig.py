"""Celery configuration for recplay's workers, beat and the API's producer.

Read by ``tasks.app.config_from_object("celeryconfig")``; every value comes from the same environment as the
rest of recplay (``tasks.settings``).
"""

from __future__ import annotations

from kombu import Queue

from tasks.dispatch import DOWNLOAD_QUEUE, HANDOFF_QUEUE, SWEEP_QUEUE, SWEEP_TASK
from tasks.settings import get_settings
from tasks.worker import broker as _broker

_settings = get_settings()

broker_url = _settings.redis_url
# kombu's Redis transport, made to survive cleaning up a lost connection (tasks/worker/broker.py).
_broker.install()
broker_connection_retry_on_startup = True
# Workers, beat and producers reconnect on their own when Redis goes away; keep retrying for a long outage.
broker_connection_max_retries = None
# Redis redelivers an unacked message after this long. Keep it above the longest download (a download renews its
# lease while bytes flow, so its length is only bounded by the media size and the provider's pace); recovery of
# crashed work never waits for it: the sweeper requeues a job as soon as its lease runs out, with a new task id,
# and the late redelivery of the old message is dropped as stale by acquire.lua's task_id check.
# Queues are read in the order task_queues names them: a hand-off (a slot is reserved for it) never waits behind
# other work.
broker_transport_options = {"visibility_timeout": _settings.visibility_timeout, "queue_order_strategy": "priority"}
if _settings.sentinels is not None:
    # kombu's Sentinel transport: the master by name, found again after a failover.
    broker_transport_options["master_name"] = _settings.sentinel_master

task_ignore_result = True
result_backend = None
# Ack after the task ran, and give the message back when the process running it dies (a pool child killed):
# a message is never lost to a crash, and every redelivery is checked against the job's current task id.
task_acks_late = True
task_reject_on_worker_lost = True
task_serializer = "json"
accept_content = ["json"]
task_default_queue = DOWNLOAD_QUEUE
# Sweeps have their own queue, read first, so that download messages never delay recovery; hand-offs have theirs,
# read next (their slot is reserved and its reservation runs out).
task_queues = (Queue(SWEEP_QUEUE), Queue(HANDOFF_QUEUE), Queue(DOWNLOAD_QUEUE))
task_routes = {SWEEP_TASK: {"queue": SWEEP_QUEUE}}
task_track_started = True

# Downloads are I/O bound: threads serve them better than prefork. Override with --pool/--concurrency.
worker_pool = _settings.worker_pool
worker_concurrency = _settings.worker_concurrency
# Take a message only when a thread is free to run it: a message never waits inside a worker that may die, it
# waits in Redis where any worker can take it.
worker_prefetch_multiplier = 1
worker_disable_prefetch = True
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False
# A lost broker connection does not cancel running downloads: their leases and fences keep them safe, cancelling
# would only waste them (and a threads pool cannot cancel: before Celery 5.7 trying killed the worker).
worker_cancel_long_running_tasks_on_connection_loss = False

beat_schedule = {
    "sweep": {
        "task": SWEEP_TASK,
        "schedule": _settings.sweep_seconds,
        # A sweep that could not run within a few periods is replaced by the next one.
        "options": {"expires": max(10.0, 3 * _settings.sweep_seconds)},
    },
}
