"""Every Celery and POSIX signal the worker listens to, connected in one ordered list (:data:`HOOKS`).

Celery calls the receivers of one signal in the order they were connected, and the order matters here: the
job fields of a task's log lines are set before anything else runs for it and cleared after; the heartbeat
starts before the shutdown guards are put in front of Celery's handlers, and stops before the slots still held
are given up on shutdown. What each hook does lives in the modules it calls: :mod:`tasks.logs` (log fields
and format), :mod:`tasks.ops.workers` (liveness heartbeats), :mod:`tasks.worker.held` (the slots this process
holds, and giving them up).

A SIGKILL runs none of this: the lease runs out and the sweeper requeues the job (:mod:`tasks.ops.sweeper`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

import redis
from celery import signals
from celery.utils.dispatch import Signal
from celery.worker import state as worker_state

from tasks import logs
from tasks.dispatch import DOWNLOAD_TASK
from tasks.ops.workers import HeartbeatWriter, forget_silent_workers, forget_worker
from tasks.settings import get_settings
from tasks.slots.client import get_redis
from tasks.worker.held import give_up, give_up_all, give_up_task, safely

log = logging.getLogger(__name__)

#: Seconds a shutdown handler waits for the slots to be given up before it lets the worker go on.
SHUTDOWN_GIVE_UP_SECONDS = 10.0
#: The name Celery gives the signal handler of a cold shutdown (``celery.apps.worker._shutdown_handler``).
COLD_SHUTDOWN_HANDLER = "worker_Cold"


# ---- what a signal says ------------------------------------------------------------------------------------

def _task_name(request: Any) -> str | None:
    # A worker Request names its task in ``name``; the task Context that some signals carry, in ``task``.
    name = getattr(request, "name", None)
    if isinstance(name, str):
        return name
    task = getattr(request, "task", None)
    return task if isinstance(task, str) else getattr(task, "name", None)


def _request_args(request: Any) -> tuple[str, str] | None:
    """(business_id, call_sid) of a download request, None for any other task."""
    args: list[Any] = list(getattr(request, "args", None) or [])
    if _task_name(request) != DOWNLOAD_TASK or len(args) < 2:
        return None
    return str(args[0]), str(args[1])


# ---- log fields --------------------------------------------------------------------------------------------

def _worker_logging(logger: logging.Logger | None = None, format: str | None = None, **_: Any) -> None:
    logs.setup_logging(logger, text_format=format)


def _enter_job(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == DOWNLOAD_TASK and args and len(args) >= 2:
        logs.enter_job(business_id=args[0], call_sid=args[1], task_id=task_id)


def _leave_job(task: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == DOWNLOAD_TASK:
        logs.leave_job()


# ---- liveness heartbeat ------------------------------------------------------------------------------------

_writer: HeartbeatWriter | None = None


def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _writer
    worker = str(getattr(sender, "hostname", "") or "")
    if not worker or _writer is not None:
        return
    client = get_redis()
    with contextlib.suppress(redis.RedisError):
        forget_silent_workers(client)
    _writer = HeartbeatWriter(client, worker, get_settings().worker_heartbeat_seconds).start()
    log.info("heartbeat started worker=%s every %ss", worker, _writer.interval)


def _stop_heartbeat(**_: Any) -> None:
    global _writer
    writer, _writer = _writer, None
    if writer is None:
        return
    writer.stop()
    try:
        forget_worker(writer.client, writer.worker)
    except redis.RedisError:
        log.warning("could not remove the heartbeat of worker=%s", writer.worker)


# ---- giving up the slots a task left -----------------------------------------------------------------------

def _after_task(task_id: str | None = None, **_: Any) -> None:
    # Celery sends these in the thread that ran the task: only that run's slot is given up.
    if task_id:
        safely("give up after the task", give_up, task_id, "the task ended without releasing its slot",
               threading.get_ident())


def _after_failure(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        safely("give up after a failure", give_up, task_id, "the task failed", threading.get_ident())


def _after_revoke(request: Any = None, terminated: bool = False, **_: Any) -> None:
    found = _request_args(request)
    if request is not None and found is not None and getattr(request, "id", None):
        safely("give up a revoked task", give_up_task, str(request.id), found[0], found[1],
               "the task was revoked" + (" and terminated" if terminated else ""))


def _give_up_requests(requests: list[Any], reason: str) -> None:
    for request in requests:
        found = _request_args(request)
        if found is not None:
            safely("give up on shutdown", give_up_task, str(request.id), found[0], found[1], reason)


def _give_up_everything(reason: str) -> None:
    """This process's own slots, then those of the requests still running in pool children."""
    safely("give up on shutdown", give_up_all, reason)
    _give_up_requests(list(worker_state.active_requests), reason)


def _in_thread(fn: Any, *args: Any) -> None:
    """Run ``fn`` in a thread and wait for it (bounded). Shutdown signals arrive inside a signal handler of the
    main thread, which may be interrupted halfway through a call on the very connection pool we need."""
    thread = threading.Thread(target=fn, args=args, name="recplay-give-up", daemon=True)
    thread.start()
    thread.join(SHUTDOWN_GIVE_UP_SECONDS)


def _on_shutting_down(how: str | None = None, **_: Any) -> None:
    # A warm shutdown lets running downloads finish: they release their own slots. A cold one cuts them off.
    if how == "Cold":
        _in_thread(_give_up_everything, "cold worker shutdown")


def _guard_cold_shutdown(signum: int) -> None:
    """Put a handler in front of Celery's for ``signum`` that gives the slots up before a cold shutdown starts.

    Celery sends ``worker_shutting_down`` only after its cold-shutdown routine has cancelled the running tasks,
    and with the threads pool that routine fails before it gets there (a thread cannot be killed). Giving up
    first covers every pool: the downloads still running then find their lease gone and stop on their own.
    """
    current = signal.getsignal(signum)
    if not callable(current) or getattr(current, "recplay_guard", False):
        return

    def guarded(sig: int, frame: Any) -> None:
        try:
            if getattr(current, "__name__", "") == COLD_SHUTDOWN_HANDLER:
                _in_thread(_give_up_everything, "cold worker shutdown")
            current(sig, frame)
        finally:
            # Celery installs the next handler from inside this one (Ctrl+C twice means cold): stay in front.
            _guard_cold_shutdown(sig)

    guarded.recplay_guard = True  # type: ignore[attr-defined]
    signal.signal(signum, guarded)


def _guard_shutdown_signals(**_: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGQUIT", "SIGINT", "SIGTERM"):
        found = getattr(signal, name, None)
        if found is not None:
            _guard_cold_shutdown(found)


def _on_shutdown(**_: Any) -> None:
    _in_thread(_give_up_everything, "worker shut down")


def _on_process_shutdown(**_: Any) -> None:
    safely("give up on process exit", give_up_all, "worker process exited")


#: Every signal connection, in the order Celery calls the receivers of one signal.
HOOKS: tuple[tuple[Signal, Any], ...] = (
    (signals.after_setup_logger, _worker_logging),
    (signals.task_prerun, _enter_job),
    (signals.task_postrun, _leave_job),
    (signals.task_postrun, _after_task),
    (signals.task_failure, _after_failure),
    (signals.task_revoked, _after_revoke),
    (signals.worker_ready, _start_heartbeat),
    (signals.worker_ready, _guard_shutdown_signals),
    (signals.worker_shutting_down, _on_shutting_down),
    (signals.worker_shutdown, _stop_heartbeat),
    (signals.worker_shutdown, _on_shutdown),
    (signals.worker_process_shutdown, _on_process_shutdown),
)

for _signal, _receiver in HOOKS:
    # A strong reference and a fixed id: importing this module twice never connects a receiver twice.
    _signal.connect(_receiver, weak=False, dispatch_uid=f"recplay:{_receiver.__name__}")
