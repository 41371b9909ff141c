"""The download task: take a slot (or park), fetch, verify, store, mark ready, release and pass the slot on."""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from dataclasses import dataclass

from celery import Task

from tasks import app, keys, logs, metrics
from tasks.catalog import Catalog
from tasks.dispatch import MESSAGE_VERSION, send_download, send_handed
from tasks.errors import LeaseLost, ProviderError
from tasks.jobs import finish_job, new_task_id
from tasks.providers import Fetcher, fetch_recording, new_session
from tasks.redis_client import get_redis
from tasks.semaphore import Acquired, BusinessSlots, Parked, slot
from tasks.settings import Settings, get_settings
from tasks.store import media_store

log = logging.getLogger(__name__)

_local = threading.local()


def _fetcher(settings: Settings) -> Fetcher:
    # One requests session per worker thread: sessions pool connections but are not thread-safe.
    fetcher: Fetcher | None = getattr(_local, "fetcher", None)
    if fetcher is None or fetcher.settings is not settings:
        fetcher = _local.fetcher = Fetcher(settings, new_session())
    return fetcher


class Heartbeat:
    """Renews a held lease every lease/3 in a thread; sets ``lost`` when the lease is no longer ours."""

    def __init__(self, slots: BusinessSlots, call_sid: str, fence: int) -> None:
        self.slots, self.call_sid, self.fence = slots, call_sid, fence
        self.lost = threading.Event()
        self._stop = threading.Event()
        # The thread logs with its task's job fields (tasks.logs keeps them in a context variable).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name=f"lease-{call_sid}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = self.slots.settings.lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                if not self.slots.renew(self.call_sid, self.fence):
                    log.warning("lease lost business_id=%s call_sid=%s fence=%s",
                                self.slots.business_id, self.call_sid, self.fence)
                    self.lost.set()
                    return
            except Exception:
                # A Redis blip: keep trying until the lease itself runs out.
                log.exception("lease renewal failed business_id=%s call_sid=%s",
                              self.slots.business_id, self.call_sid)


def backoff_seconds(settings: Settings, attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter; the provider's Retry-After wins when it asks for longer."""
    base = settings.retry_backoff_seconds * (2 ** max(0, attempts - 1))
    delay = min(settings.retry_backoff_max_seconds, base) * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_backoff_max_seconds))
    return round(delay, 3)


@dataclass
class Attempt:
    """One run of the download task for one job."""

    business_id: str
    call_sid: str
    task_id: str
    worker: str
    settings: Settings

    def run(self) -> str:
        client = get_redis()
        slots = BusinessSlots(client, self.business_id, self.settings)
        with slot(slots, self.call_sid, self.task_id, self.worker, send_handed) as got:
            if isinstance(got, Parked):
                log.info("parked business_id=%s call_sid=%s task_id=%s position=%s",
                         self.business_id, self.call_sid, self.task_id, got.position)
                return "parked"
            if not isinstance(got, Acquired):
                log.info("dropped stale message business_id=%s call_sid=%s task_id=%s reason=%s",
                         self.business_id, self.call_sid, self.task_id, got.reason)
                return "stale"
            return self._download(slots, got)

    def _download(self, slots: BusinessSlots, got: Acquired) -> str:
        logs.bind(attempt=got.attempts)
        client, settings = slots.client, self.settings
        catalog, store = Catalog(settings), media_store(settings)
        ctx = f"business_id={self.business_id} call_sid={self.call_sid} task_id={self.task_id} attempt={got.attempts}"
        rec = catalog.get(self.business_id, self.call_sid)
        job_recording = client.hget(keys.job(self.business_id, self.call_sid), "recording_id")
        if rec is None or str(rec.id) != job_recording:
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "cancel")
            log.info("recording gone, job cancelled %s", ctx)
            return "cancelled"
        if rec.state == "ready" and store.exists(rec.file_path):
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "ready")
            log.info("already stored, not downloaded again %s", ctx)
            return "ready"

        log.info("downloading %s", ctx)
        started = time.monotonic()
        partial = store.open_partial(self.business_id, self.call_sid)
        try:
            with Heartbeat(slots, self.call_sid, got.fence) as beat:
                written = fetch_recording(_fetcher(settings), catalog, rec, partial, stop=beat.lost)
            # Our lease must still be ours when we store: a reclaimed attempt never overwrites a newer one.
            if beat.lost.is_set() or not slots.renew(self.call_sid, got.fence):
                raise LeaseLost("slot lease lost before the result was stored")
        except LeaseLost:
            partial.discard()
            metrics.count_download(client, "lease_lost", time.monotonic() - started)
            log.warning("result discarded, lease lost %s", ctx)
            return "lease_lost"
        except ProviderError as exc:
            partial.discard()
            return self._failed_attempt(slots, got, rec.id, exc, ctx, time.monotonic() - started)
        except BaseException:
            partial.discard()
            raise

        rel = store.commit(written, self.business_id, self.call_sid, rec.id)
        if not catalog.mark_ready(rec.id, size_bytes=written.size_bytes, content_type=written.content_type,
                                  sha256=written.sha256, file_path=rel, attempts=got.attempts):
            store.delete(rel)
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "cancel")
            log.info("recording deleted during the download, result discarded %s", ctx)
            return "cancelled"
        finish_job(client, settings, self.business_id, self.call_sid, got.fence, "ready")
        metrics.count_download(client, "ready", time.monotonic() - started)
        log.info("ready %s bytes=%s seconds=%.3f", ctx, written.size_bytes, time.monotonic() - started)
        return "ready"

    def _failed_attempt(self, slots: BusinessSlots, got: Acquired, recording_id: int, exc: ProviderError,
                        ctx: str, seconds: float) -> str:
        client, settings = slots.client, self.settings
        if exc.permanent or got.attempts >= settings.max_attempts:
            if finish_job(client, settings, self.business_id, self.call_sid, got.fence, "failed", error=str(exc)):
                Catalog(settings).mark_failed(recording_id, str(exc), got.attempts)
            metrics.count_download(client, "failed", seconds)
            log.warning("failed %s error=%s", ctx, exc)
            return "failed"
        delay = backoff_seconds(settings, got.attempts, exc.retry_after)
        task_id = new_task_id()
        if finish_job(client, settings, self.business_id, self.call_sid, got.fence, "retry", error=str(exc),
                      retry_task_id=task_id, retry_in_seconds=delay):
            send_download(self.business_id, self.call_sid, task_id, countdown=delay)
        metrics.count_download(client, "retried", seconds)
        log.warning("attempt failed, retry in %.1fs %s error=%s", delay, ctx, exc)
        return "retry"


@app.task(name="tasks.download", bind=True, acks_late=True, ignore_result=True)
def download(self: Task, business_id: str, call_sid: str, v: int = MESSAGE_VERSION) -> str:
    """Download one recording for (business_id, call_sid); idempotent, safe to deliver twice."""
    if v not in (MESSAGE_VERSION, MESSAGE_VERSION - 1):
        log.error("unknown message version %s business_id=%s call_sid=%s", v, business_id, call_sid)
        return "rejected"
    worker = f"{self.request.hostname}"
    return Attempt(business_id, call_sid, str(self.request.id), worker, get_settings()).run()
