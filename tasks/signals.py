"""Releasing, on every path: the slots a task of this process still holds when Celery says it is over.

The download code records every slot it holds here (task id -> business_id, call_sid, fence) for as long as it
holds it; its own ``finally`` releases the slot and forgets it. Whatever is still recorded when Celery reports
the task over (``task_postrun``, ``task_failure``, ``task_revoked``) or when the worker goes away (a cold
shutdown, the end of any shutdown, a pool child exiting) is given up here: the job is requeued at once with a
new task id, and the slot is released and passed to the next parked job of its business. Nothing waits for the
lease to run out, and nothing waits for the broker's visibility timeout.

A SIGKILL runs none of this. There the lease runs out, and the sweeper requeues the job (``tasks.sweeper``).
Giving up is fenced like everything else: it only touches a job whose current attempt is the one recorded, so a
late signal can never requeue a job that has moved on.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery import signals

from tasks import keys
from tasks.dispatch import DOWNLOAD_TASK, send_download, send_handed
from tasks.ids import is_valid_id
from tasks.jobs import finish_job, new_task_id
from tasks.redis_client import get_redis
from tasks.semaphore import BusinessSlots
from tasks.settings import get_settings

log = logging.getLogger(__name__)

#: Seconds a shutdown handler waits for the slots to be given up before it lets the worker go on.
SHUTDOWN_GIVE_UP_SECONDS = 10.0


@dataclass(frozen=True)
class HeldSlot:
    """A slot a task of this process holds: the attempt that holds it is identified by its fence."""

    business_id: str
    call_sid: str
    fence: int


_held: dict[str, HeldSlot] = {}
_held_lock = threading.Lock()


def hold(task_id: str, business_id: str, call_sid: str, fence: int) -> None:
    """Record that ``task_id`` holds a slot (the download code calls this right after acquiring)."""
    with _held_lock:
        _held[task_id] = HeldSlot(business_id, call_sid, fence)


def forget(task_id: str) -> None:
    """The task's own ``finally`` takes care of its slot from here on."""
    with _held_lock:
        _held.pop(task_id, None)


@contextmanager
def holding(task_id: str, business_id: str, call_sid: str, fence: int) -> Iterator[None]:
    """Record the slot while the block runs; the caller's ``finally`` (``semaphore.slot``) releases it after.

    A block cut short by the process being stopped (SystemExit, KeyboardInterrupt, Celery terminating the task)
    gives the slot up on its way out, so that the job is requeued at once rather than after a sweep.
    """
    hold(task_id, business_id, call_sid, fence)
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):
            _safely("give up an interrupted attempt", give_up, task_id, f"interrupted by {type(exc).__name__}")
        raise
    finally:
        forget(task_id)


def held() -> dict[str, HeldSlot]:
    """A copy of what this process holds right now, by task id."""
    with _held_lock:
        return dict(_held)


def give_up(task_id: str, reason: str) -> bool:
    """Requeue the job of the slot ``task_id`` still holds, and release the slot. False if it holds none."""
    with _held_lock:
        slot = _held.pop(task_id, None)
    if slot is None:
        return False
    _requeue_and_release(slot, task_id, reason)
    return True


def give_up_all(reason: str) -> int:
    """Give up every slot this process holds; returns how many there were."""
    with _held_lock:
        found = dict(_held)
        _held.clear()
    for task_id, slot in found.items():
        try:
            _requeue_and_release(slot, task_id, reason)
        except Exception:
            log.exception("could not give up a slot business_id=%s call_sid=%s task_id=%s",
                          slot.business_id, slot.call_sid, task_id)
    return len(found)


def give_up_task(task_id: str, business_id: str, call_sid: str, reason: str) -> bool:
    """Give up the slot of ``task_id``, found in this process or else in Redis (a prefork pool child held it).

    Returns:
        True when a slot held by ``task_id`` was found and given up.
    """
    if give_up(task_id, reason):
        return True
    if not (is_valid_id(business_id) and is_valid_id(call_sid)):
        return False
    client = get_redis()
    info = client.hget(keys.holder_info(business_id), call_sid)
    if not info:
        return False
    fence, holder_task, worker = str(info).split("|", 2)
    if holder_task != task_id or not worker or not fence.isdigit():
        return False  # another attempt's slot, or a reservation: not ours to give up
    _requeue_and_release(HeldSlot(business_id, call_sid, int(fence)), task_id, reason)
    return True


def _requeue_and_release(slot: HeldSlot, task_id: str, reason: str) -> None:
    client, settings = get_redis(), get_settings()
    retry_task_id = new_task_id()
    # Requeue first: while the slot is still held nobody else can take this job's turn; the fence makes this a
    # no-op when the attempt is no longer the job's current one.
    requeued = finish_job(client, settings, slot.business_id, slot.call_sid, slot.fence, "retry",
                          error=f"attempt given up: {reason}", retry_task_id=retry_task_id)
    released, handed = BusinessSlots(client, slot.business_id, settings).release(slot.call_sid, slot.fence)
    if requeued:
        send_download(slot.business_id, slot.call_sid, retry_task_id)
    if handed:
        send_handed(slot.business_id, handed)
    log.warning("gave up a slot business_id=%s call_sid=%s task_id=%s fence=%s reason=%s requeued=%s "
                "released=%s", slot.business_id, slot.call_sid, task_id, slot.fence, reason, requeued, released)


def _safely(what: str, fn: Any, *args: Any) -> None:
    # A signal handler must never break the worker: log and go on (the lease and the sweeper remain).
    try:
        fn(*args)
    except (redis.RedisError, OSError):
        log.warning("%s: Redis unreachable, the lease will run out instead", what, exc_info=True)
    except Exception:
        log.exception("%s failed", what)


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


def _give_up_requests(requests: list[Any], reason: str) -> None:
    for request in requests:
        found = _request_args(request)
        if found is not None:
            _safely("give up on shutdown", give_up_task, str(request.id), found[0], found[1], reason)


def _in_thread(fn: Any, *args: Any) -> None:
    """Run ``fn`` in a thread and wait for it (bounded). Shutdown signals arrive inside a signal handler of the
    main thread, which may be interrupted halfway through a call on the very connection pool we need."""
    thread = threading.Thread(target=fn, args=args, name="recplay-give-up", daemon=True)
    thread.start()
    thread.join(SHUTDOWN_GIVE_UP_SECONDS)


def _active_requests() -> list[Any]:
    from celery.worker import state

    return list(state.active_requests)


@signals.task_postrun.connect
def _after_task(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _safely("give up after the task", give_up, task_id, "the task ended without releasing its slot")


@signals.task_failure.connect
def _after_failure(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _safely("give up after a failure", give_up, task_id, "the task failed")


@signals.task_revoked.connect
def _after_revoke(request: Any = None, terminated: bool = False, **_: Any) -> None:
    found = _request_args(request)
    if request is not None and found is not None and getattr(request, "id", None):
        _safely("give up a revoked task", give_up_task, str(request.id), found[0], found[1],
                "the task was revoked" + (" and terminated" if terminated else ""))


@signals.worker_shutting_down.connect
def _on_shutting_down(how: str | None = None, **_: Any) -> None:
    # A warm shutdown lets running downloads finish: they release their own slots. A cold one cuts them off.
    if how == "Cold":
        _in_thread(_give_up_everything, "cold worker shutdown")


#: The name Celery gives the signal handler of a cold shutdown (``celery.apps.worker._shutdown_handler``).
COLD_SHUTDOWN_HANDLER = "worker_Cold"


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


@signals.worker_ready.connect
def _on_ready(**_: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGQUIT", "SIGINT", "SIGTERM"):
        found = getattr(signal, name, None)
        if found is not None:
            _guard_cold_shutdown(found)


@signals.worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    _in_thread(_give_up_everything, "worker shut down")


@signals.worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    _safely("give up on process exit", give_up_all, "worker process exited")


def _give_up_everything(reason: str) -> None:
    """This process's own slots, then those of the requests still running in pool children."""
    _safely("give up on shutdown", give_up_all, reason)
    _give_up_requests(_active_requests(), reason)
