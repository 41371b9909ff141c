"""One download attempt: take a slot (or park), fetch, verify, store, mark ready, release and pass the slot on.

The Celery task that runs it is ``tasks.download`` (:mod:`tasks.worker.tasks`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field

import redis

from tasks import logs, metrics
from tasks.catalog.models import READY, RecordingRow
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_download, send_handed
from tasks.errors import LeaseLost, ProviderError
from tasks.media.decode import DecodedMedia, DecodeFailed, NotAudio
from tasks.media.http import Fetcher, new_session
from tasks.media.local import Written
from tasks.media.providers import fetch_recording
from tasks.media.sandbox import decode_audio
from tasks.media.store import Store, media_store
from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.client import get_redis
from tasks.slots.facts import Fact, announce_ready
from tasks.slots.jobs import finish_job, new_task_id, settle
from tasks.slots.semaphore import Acquired, BusinessSlots, Parked, slot
from tasks.worker import held

# The name log queries filter job lines on; kept from before the code moved into tasks/worker/.
log = logging.getLogger("tasks.download")

_local = threading.local()


def _fetcher(settings: Settings) -> Fetcher:
    # One requests session per worker thread: sessions pool connections but are not thread-safe.
    fetcher: Fetcher | None = getattr(_local, "fetcher", None)
    if fetcher is None or fetcher.settings is not settings:
        fetcher = _local.fetcher = Fetcher(settings, new_session())
    return fetcher


class _Renewer:
    """One thread per process renews every lease its downloads hold, each every lease/3.

    A thread per attempt cost two thread starts and joins per download (one while it downloads, one while it
    stores); this one sleeps until the earliest renewal is due. Renewals run one after another: each is one
    short script, and the lease is three renewal periods long.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._beats: dict[int, tuple[float, Heartbeat]] = {}  # id -> (when its next renewal is due, the beat)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._wakes_at = math.inf  # when the thread next looks, unless woken

    def add(self, beat: Heartbeat) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child has none of its parent's threads or beats
                self._beats, self._thread, self._pid, self._wakes_at = {}, None, os.getpid(), math.inf
            due = time.monotonic() + beat.interval
            self._beats[id(beat)] = (due, beat)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
                self._thread.start()
            elif due < self._wakes_at:
                self._lock.notify()  # due before the thread would look (it had nothing, or later ones only)

    def remove(self, beat: Heartbeat) -> None:
        with self._lock:
            self._beats.pop(id(beat), None)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [beat for when, beat in self._beats.values() if when <= now]
                for beat in due:
                    self._beats[id(beat)] = (now + beat.interval, beat)
                if not due:
                    self._wakes_at = min((when for when, _ in self._beats.values()), default=math.inf)
                    self._lock.wait(None if self._wakes_at == math.inf else self._wakes_at - now)
                    self._wakes_at = now  # awake: a beat added now is seen without a notify
                    continue
            for beat in due:
                beat.context.run(beat.renew)


_renewer = _Renewer()


class Heartbeat:
    """Renews a held lease every lease/3 while the block runs; sets ``lost`` when the lease is no longer ours."""

    def __init__(self, slots: BusinessSlots, call_sid: str, fence: int) -> None:
        self.slots, self.call_sid, self.fence = slots, call_sid, fence
        self.interval = slots.settings.lease_seconds / 3
        self.lost = threading.Event()
        self.active = False
        # Held while a renewal runs: once the block has ended, no renewal is under way or starts.
        self._renewing = threading.Lock()
        # Renewals log with the task's job fields (tasks.logs keeps them in a context variable).
        self.context = contextvars.copy_context()

    def __enter__(self) -> Heartbeat:
        self.active = True
        _renewer.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _renewer.remove(self)
        with self._renewing:
            self.active = False

    def renew(self) -> None:
        with self._renewing:
            if not self.active:
                return
            try:
                if not self.slots.renew(self.call_sid, self.fence):
                    log.warning("lease lost business_id=%s call_sid=%s fence=%s",
                                self.slots.business_id, self.call_sid, self.fence)
                    self.lost.set()
                    self.active = False
                    _renewer.remove(self)
            except Exception:
                # A Redis blip: keep trying until the lease itself runs out.
                log.exception("lease renewal failed business_id=%s call_sid=%s",
                              self.slots.business_id, self.call_sid)


def decode(written: Written, settings: Settings) -> DecodedMedia:
    """Decode the downloaded file through, in a decoder process under limits (:mod:`tasks.media.sandbox`).

    Raises:
        ProviderError: permanent when the body is no audio, or audio cut short; transient when the decoder ran
            out of time or memory, or crashed (a body that always does uses up the job's attempts).
    """
    try:
        return decode_audio(written.temp_path, max_seconds=settings.decode_seconds,
                            max_memory_bytes=settings.decode_memory_bytes)
    except NotAudio as exc:
        raise ProviderError(str(exc), permanent=True) from exc
    except DecodeFailed as exc:
        raise ProviderError(f"decoding failed: {exc}", permanent=False) from exc


def backoff_seconds(settings: Settings, attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter; the provider's Retry-After wins when it asks for longer."""
    base = settings.retry_backoff_seconds * (2 ** max(0, attempts - 1))
    delay = min(settings.retry_backoff_max_seconds, base) * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_backoff_max_seconds))
    return round(delay, 3)


@dataclass
class Attempt:
    """One run of the download task for one job.

    The lifecycle: acquire a slot (or park, or drop a stale message); while the slot is held it is recorded in
    :mod:`tasks.worker.held`, so that Celery's signals give it up if this code never reaches its ``finally``; a
    heartbeat renews the lease while the download runs; then one compare-and-set on the fence decides whether
    the result is the job's, before anything is written where readers look. Every exit releases the slot and
    passes it to the next parked job.
    """

    business_id: str
    call_sid: str
    task_id: str
    worker: str
    settings: Settings

    @property
    def ctx(self) -> str:
        return f"business_id={self.business_id} call_sid={self.call_sid} task_id={self.task_id}"

    def run(self) -> str:
        client = get_redis()
        slots = BusinessSlots(client, self.business_id, self.settings)
        with slot(slots, self.call_sid, self.task_id, self.worker, send_handed) as got:
            if isinstance(got, Parked):
                log.info("parked %s", self.ctx)
                return "parked"
            if not isinstance(got, Acquired):
                log.info("dropped stale message %s reason=%s", self.ctx, got.reason)
                return "stale"
            with held.holding(self.task_id, self.business_id, self.call_sid, got.fence):
                return self._attempt(slots, got)

    def _attempt(self, slots: BusinessSlots, got: Acquired) -> str:
        state = _AttemptState()
        try:
            return self._download(slots, got, state)
        except Exception as exc:
            # Anything unforeseen (database down, disk full, a bug) is a failed attempt like a provider error:
            # the job is retried with backoff, or failed after its last attempt. It never waits for a sweep.
            log.exception("attempt failed unexpectedly %s attempt=%s", self.ctx, got.attempts)
            error = ProviderError(f"internal error: {type(exc).__name__}: {exc}", permanent=False)
            return self._failed_attempt(slots, got, state.recording_id, error, self.ctx, state.seconds(),
                                        reopen=state.claimed)

    def _download(self, slots: BusinessSlots, got: Acquired, state: _AttemptState) -> str:
        logs.bind(attempt=got.attempts)
        client, settings = slots.client, self.settings
        catalog, store = Catalog(settings), media_store(settings)
        ctx = f"{self.ctx} attempt={got.attempts}"
        rec = catalog.get(self.business_id, self.call_sid)
        job_recording = client.hget(keys.job(self.business_id, self.call_sid), "recording_id")
        if rec is None or str(rec.id) != job_recording:
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "cancel")
            log.info("recording gone, job cancelled %s", ctx)
            return "cancelled"
        state.recording_id = rec.id
        if rec.state == READY and store.exists(rec.file_path):
            if rec.channels is None:
                with Heartbeat(slots, self.call_sid, got.fence):
                    self._backfill_peaks(store, catalog, rec, ctx)
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "ready")
            stored = catalog.get(self.business_id, self.call_sid) or rec  # the peaks may have just been computed
            _announce_ready(client, stored, got, rec.file_path or "", rec.size_bytes, rec.content_type,
                            stored.channels, None)
            log.info("already stored, not downloaded again %s", ctx)
            return "ready"

        log.info("downloading %s", ctx)
        beat = Heartbeat(slots, self.call_sid, got.fence)
        partial = store.open_partial(self.business_id, self.call_sid)
        try:
            with beat:
                written = fetch_recording(_fetcher(settings), catalog, rec, partial, stop=beat.lost)
                media = decode(written, settings)
            written = dataclasses.replace(written, content_type=media.content_type)
            if beat.lost.is_set():
                raise LeaseLost("slot lease lost during the download")
        except LeaseLost:
            partial.discard()
            return self._lease_lost(client, ctx, state.seconds())
        except ProviderError as exc:
            partial.discard()
            if beat.lost.is_set():
                return self._lease_lost(client, ctx, state.seconds())  # cut off, or failed after losing the slot
            return self._failed_attempt(slots, got, rec.id, exc, ctx, state.seconds())
        except BaseException:
            partial.discard()
            raise

        # The compare-and-set on the fence: only the job's current attempt gets past it, and once it has, the
        # job is finished and no other attempt can start. A paused or reclaimed attempt that wakes up late
        # fails here and never writes over the result of the attempt that replaced it.
        if not finish_job(client, settings, self.business_id, self.call_sid, got.fence, "ready"):
            partial.discard()
            return self._lease_lost(client, ctx, state.seconds())
        state.claimed = True
        # The lease is renewed while the result is stored too: the sweeper takes a claimed result that never
        # reached the catalog for lost only once its attempt's lease has run out.
        with Heartbeat(slots, self.call_sid, got.fence):
            try:
                rel = store.commit(written, self.business_id, self.call_sid, rec.id)
            except BaseException:
                partial.discard()
                raise
            try:
                store.put_peaks(rel, media.peaks)
                marked = catalog.mark_ready(rec.id, size_bytes=written.size_bytes,
                                            content_type=written.content_type, sha256=written.sha256,
                                            file_path=rel, attempts=got.attempts,
                                            duration_seconds=media.duration_seconds, channels=media.channels)
            except BaseException:
                store.delete(rel)  # not in the catalog: bytes nobody would ever serve or delete
                raise
        if not marked:
            store.delete(rel)
            finish_job(client, settings, self.business_id, self.call_sid, got.fence, "cancel", reopen=True)
            log.info("recording deleted during the download, result discarded %s", ctx)
            return "cancelled"
        # A file of an earlier download of this recording under another extension is not kept.
        store.delete_recording(self.business_id, self.call_sid, rec.id, keep=rel)
        _announce_ready(client, rec, got, rel, written.size_bytes, written.content_type, media.channels,
                        media.duration_seconds)
        metrics.count_download(client, "ready", state.seconds())
        log.info("ready %s bytes=%s seconds=%.3f", ctx, written.size_bytes, state.seconds())
        return "ready"

    def _backfill_peaks(self, store: Store, catalog: Catalog, rec: RecordingRow, ctx: str) -> None:
        """A recording stored before every download was decoded: decode the stored file now, keep its peaks.

        Raises:
            ProviderError: transient (the decoder ran out of time or memory): the attempt is retried.
        """
        assert rec.file_path
        try:
            with store.local_copy(rec.file_path) as path:
                media = decode(Written(path, rec.size_bytes or 0, rec.sha256 or "", rec.content_type or ""),
                               self.settings)
        except ProviderError as exc:
            if not exc.permanent:
                raise
            # It is served as it is (a safe type, nosniff, a sandbox): only the waveform cannot be drawn.
            catalog.set_media_facts(rec.id, 0, None)
            log.warning("a stored recording does not decode, no peaks %s error=%s", ctx, exc)
            return
        store.put_peaks(rec.file_path, media.peaks)
        catalog.set_media_facts(rec.id, media.channels, media.duration_seconds)
        log.info("peaks computed for a recording stored before %s channels=%s", ctx, media.channels)

    def _lease_lost(self, client: redis.Redis, ctx: str, seconds: float) -> str:
        metrics.count_download(client, "lease_lost", seconds)
        log.warning("result discarded: the slot was reclaimed and the job moved on %s", ctx)
        return "lease_lost"

    def _failed_attempt(self, slots: BusinessSlots, got: Acquired, recording_id: int | None, exc: ProviderError,
                        ctx: str, seconds: float, reopen: bool = False) -> str:
        client, settings = slots.client, self.settings
        if exc.permanent or got.attempts >= settings.max_attempts:
            if not finish_job(client, settings, self.business_id, self.call_sid, got.fence, "failed",
                              error=str(exc), reopen=reopen):
                return self._lease_lost(client, ctx, seconds)
            if recording_id is not None:
                Catalog(settings).mark_failed(recording_id, str(exc), got.attempts)
            settle(client, self.business_id, self.call_sid)
            metrics.count_download(client, "failed", seconds)
            log.warning("failed %s error=%s", ctx, exc)
            return "failed"
        delay = backoff_seconds(settings, got.attempts, exc.retry_after)
        # With a backoff, the retry's message waits in the broker without a slot; without one, the job goes back
        # in line and the release that follows hands it a slot.
        task_id = new_task_id() if delay > 0 else ""
        if not finish_job(client, settings, self.business_id, self.call_sid, got.fence, "retry", error=str(exc),
                          retry_task_id=task_id, retry_in_seconds=delay, reopen=reopen):
            return self._lease_lost(client, ctx, seconds)
        if task_id:
            send_download(self.business_id, self.call_sid, task_id, countdown=delay)
        metrics.count_download(client, "retried", seconds)
        log.warning("attempt failed, retry in %.1fs %s error=%s", delay, ctx, exc)
        return "retry"


def _announce_ready(client: redis.Redis, rec: RecordingRow, got: Acquired, file: str, size_bytes: int | None,
                    content_type: str | None, channels: int | None, duration_seconds: float | None) -> None:
    """Once the catalog says ready, in one round trip: the job settled (the sweep need not look at it again), the
    recording's fact (so status and duplicate requests are answered from Redis), then the event its waiting
    clients get."""
    duration = rec.duration_seconds if rec.duration_seconds is not None else duration_seconds
    fact = Fact(
        recording_id=rec.id, created_at=rec.created_at.isoformat(),
        duration_seconds=round(duration, 3) if duration is not None else None, attempts=got.attempts, file=file,
        size_bytes=size_bytes, content_type=content_type, channels=channels, channel_labels=rec.channel_labels)
    message = events.message("ready", got.attempts, "", got.fence,
                             {"file": file, "size_bytes": size_bytes, "content_type": content_type,
                              "channels": channels})
    announce_ready(client, rec.business_id, rec.call_sid, fact, message)


@dataclass
class _AttemptState:
    """What an attempt has done so far, for the error path."""

    started: float = field(default_factory=time.monotonic)
    recording_id: int | None = None
    claimed: bool = False  # the job was marked ready by this attempt (its result must be stored or reopened)

    def seconds(self) -> float:
        return time.monotonic() - self.started
