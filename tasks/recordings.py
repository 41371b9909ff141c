"""Use cases over one business's recordings, shared by the API, the Twilio webhook and the CLI.

Each function combines the catalog (durable facts), the job registry (live state) and the store, and returns
plain data; the HTTP layer only maps them to responses.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import redis

from tasks.catalog.models import FAILED, HTTP, READY, TWILIO, WANTED, RecordingRow
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_download, send_handed
from tasks.errors import Conflict, NotFound, TwilioNotConfigured
from tasks.media import twilio
from tasks.media.http import check_media_url, is_twilio_url
from tasks.media.store import Store, media_store
from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.facts import Fact, forget_fact, read_fact, write_fact
from tasks.slots.jobs import Job, RequestMode, delete_job, get_job, get_jobs, request_job
from tasks.slots.semaphore import BusinessSlots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """What a client sees of one recording (SPEC's status object, less the stream URL)."""

    call_sid: str
    status: str
    attempts: int
    error: str | None
    size_bytes: int | None
    content_type: str | None
    duration_seconds: float | None
    created_at: str
    #: The stored file's key when ready (signed media links name it); not part of the status object.
    media_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid, "status": self.status, "attempts": self.attempts, "error": self.error,
            "size_bytes": self.size_bytes, "content_type": self.content_type,
            "duration_seconds": self.duration_seconds, "created_at": self.created_at,
        }


def status_of(rec: RecordingRow, job: Job | None, store: Store) -> Status:
    ready = rec.state == READY and store.exists(rec.file_path)
    if ready:
        status, error = "ready", None
    elif job is not None and job.recording_id == str(rec.id) and job.status in ("queued", "processing", "failed"):
        status, error = job.status, (job.error or None)
        if status == "failed" and not error:
            error = rec.error
    elif rec.state == WANTED:
        status, error = "queued", None
    elif rec.state == FAILED:
        status, error = "failed", rec.error
    else:
        status, error = "new", None
    attempts = job.attempts if job is not None and job.recording_id == str(rec.id) else rec.attempts
    return Status(
        call_sid=rec.call_sid, status=status, attempts=attempts, error=error,
        size_bytes=rec.size_bytes if ready else None, content_type=rec.content_type if ready else None,
        duration_seconds=rec.duration_seconds, created_at=rec.created_at.isoformat(),
        media_key=rec.file_path if ready else None,
    )


def fact_of(rec: RecordingRow) -> Fact:
    """The hot fields of a catalog row, for the job registry's side (:mod:`tasks.slots.facts`)."""
    ready = rec.state == READY and rec.file_path
    return Fact(recording_id=rec.id, created_at=rec.created_at.isoformat(), duration_seconds=rec.duration_seconds,
                attempts=rec.attempts, file=rec.file_path if ready else None,
                size_bytes=rec.size_bytes if ready else None, content_type=rec.content_type if ready else None)


def known_status(call_sid: str, fact: Fact | None, job: Job | None, store: Store) -> Status | None:
    """The status that a recording's fact and job give alone, or None when the catalog must be read: as
    :func:`status_of` for a ready recording or a job queued or running; anything else (new, failed, a job of
    another registration, no fact) is the catalog's to say."""
    if fact is None:
        return None
    current = job is not None and job.recording_id == str(fact.recording_id)
    if fact.ready and store.exists(fact.file):
        return Status(call_sid=call_sid, status=READY, attempts=job.attempts if job and current else fact.attempts,
                      error=None, size_bytes=fact.size_bytes, content_type=fact.content_type,
                      duration_seconds=fact.duration_seconds, created_at=fact.created_at, media_key=fact.file)
    if job is not None and current and job.status in ("queued", "processing"):
        return Status(call_sid=call_sid, status=job.status, attempts=job.attempts, error=job.error or None,
                      size_bytes=None, content_type=None, duration_seconds=fact.duration_seconds,
                      created_at=fact.created_at)
    return None


class Recordings:
    """One business's recordings."""

    def __init__(self, client: redis.Redis, settings: Settings, business_id: str) -> None:
        self.client, self.settings, self.business_id = client, settings, business_id
        self.catalog = Catalog(settings)
        self.store: Store = media_store(settings)

    def register(self, call_sid: str, media_url: str | None, duration_seconds: float | None,
                 provider: str = HTTP, *, from_callback: bool = False) -> tuple[RecordingRow, bool]:
        """Register a recording; returns (row, created). The same registration again changes nothing.

        A Twilio recording may be registered by its CallSid alone (``media_url`` None), to be resolved when it
        is fetched; a later registration naming its Twilio URL fills the URL in. A provider's status callback
        (``from_callback``) for another recording of a call already registered keeps the first one.

        Raises:
            MediaHostNotAllowed: the media URL is off the allowlist.
            TwilioNotConfigured: a CallSid alone, and no Twilio account to resolve it with.
            Conflict: the call_sid is registered with another media URL.
        """
        if media_url is not None:
            check_media_url(media_url, self.settings)
        elif provider == TWILIO and not twilio.is_configured(self.settings):
            raise TwilioNotConfigured("set TWILIO_ACCOUNT_SID and its credentials to register Twilio recordings "
                                      "by CallSid")
        rec, created = self.catalog.register(self.business_id, call_sid, media_url, duration_seconds,
                                             provider=provider)
        if created:
            return rec, True
        if not from_callback and not self._same_recording(rec, media_url):
            raise Conflict("this call_sid is registered with another media_url")
        if rec.media_url is None and media_url is not None:
            # The status callback (or a later registration) names the URL of a recording known by its CallSid.
            held = self.catalog.set_media_url(rec.id, media_url)
            rec = dataclasses.replace(rec, media_url=held)
        elif from_callback and rec.media_url != media_url:
            log.info("another recording of a registered call, kept the first business_id=%s call_sid=%s",
                     self.business_id, call_sid)
        return rec, False

    def _same_recording(self, rec: RecordingRow, media_url: str | None) -> bool:
        """Whether a registration names the recording already registered: the same media URL, or a Twilio
        recording named by its CallSid on one side and a Twilio URL (or the CallSid) on the other."""
        if media_url is not None and rec.media_url is not None:
            return media_url == rec.media_url
        if media_url is None:
            return rec.provider == TWILIO or is_twilio_url(rec.media_url, self.settings)
        return is_twilio_url(media_url, self.settings)

    def get(self, call_sid: str) -> RecordingRow | None:
        return self.catalog.get(self.business_id, call_sid)

    def known(self, call_sid: str) -> tuple[Status | None, Job | None]:
        """A recording's status from Redis alone (its fact and job, one round trip), or None when the catalog
        must be read; and its job. A business only ever reads its own keys."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.fact(self.business_id, call_sid))
        pipe.hgetall(keys.job(self.business_id, call_sid))
        raw_fact, raw_job = pipe.execute()
        job = Job.from_hash(self.business_id, call_sid, raw_job) if raw_job else None
        return known_status(call_sid, read_fact(raw_fact), job, self.store), job

    def current(self, call_sid: str) -> tuple[Status, Job | None]:
        """A recording's status: from Redis when it can say, else from the catalog (whose row is then kept as
        the recording's fact); and its job.

        Raises:
            NotFound: the business has no such recording.
        """
        found, job = self.known(call_sid)
        if found is not None:
            return found, job
        rec = self.get(call_sid)
        if rec is None:
            raise NotFound("no such recording")
        self.remember(rec)
        job = get_job(self.client, self.business_id, call_sid)
        return status_of(rec, job, self.store), job

    def remember(self, rec: RecordingRow) -> None:
        """Keep the row's hot fields beside the job, for the next request to be answered from Redis."""
        write_fact(self.client, self.business_id, rec.call_sid, fact_of(rec))

    def forget(self, call_sid: str) -> None:
        forget_fact(self.client, self.business_id, call_sid)

    def status(self, rec: RecordingRow) -> Status:
        return status_of(rec, get_job(self.client, self.business_id, rec.call_sid), self.store)

    def list(self, limit: int, before_id: int | None) -> tuple[list[Status], int | None]:
        """A page, newest first, and the cursor of the next page (None at the end)."""
        rows = self.catalog.page(self.business_id, limit + 1, before_id)
        page = rows[:limit]
        found = get_jobs(self.client, self.business_id, [r.call_sid for r in page])
        statuses = [status_of(r, found.get(r.call_sid), self.store) for r in page]
        return statuses, (page[-1].id if len(rows) > limit else None)

    def request(self, rec: RecordingRow, mode: RequestMode) -> Status:
        """Ask for the media: enqueue the job once, however many ask at once. Returns the new status."""
        if rec.state == READY and not self.store.exists(rec.file_path):
            log.warning("stored file missing, fetching again business_id=%s call_sid=%s",
                        self.business_id, rec.call_sid)
            self.catalog.mark_lost(rec.id)
            self.forget(rec.call_sid)
            rec = dataclasses.replace(rec, state=WANTED, file_path=None, sha256=None, ready_at=None)
            mode = "force"
        result = request_job(self.client, self.settings, self.business_id, rec.call_sid,
                             media_url=rec.media_url or "", recording_id=rec.id, mode=mode)
        if result.outcome == "enqueued" and result.task_id:
            if rec.state != WANTED:
                self.catalog.mark_wanted(rec.id)
                rec = dataclasses.replace(rec, state=WANTED, error=None)
            send_download(self.business_id, rec.call_sid, result.task_id)
            events.publish(self.client, self.business_id, rec.call_sid, "queued")
        # No second catalog read: this request changed the row only as just mirrored in ``rec``.
        self.remember(rec)
        return self.status(rec)

    def delete(self, rec: RecordingRow) -> None:
        """Forget the recording: catalog row, stored file and job; a running download's result is discarded."""
        self.catalog.delete(self.business_id, rec.call_sid)
        self.forget(rec.call_sid)
        if delete_job(self.client, self.business_id, rec.call_sid):
            send_handed(self.business_id, BusinessSlots(self.client, self.business_id, self.settings).hand_off())
        self.store.delete(rec.file_path)
        events.publish(self.client, self.business_id, rec.call_sid, events.DELETED)
        log.info("deleted business_id=%s call_sid=%s", self.business_id, rec.call_sid)
