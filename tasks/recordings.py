"""Use cases over one business's recordings, shared by the API, the Twilio webhook and the CLI.

Each function combines the catalog (durable facts), the job registry (live state) and the store, and returns
plain data; the HTTP layer only maps them to responses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import redis

from tasks.catalog.models import FAILED, HTTP, NEW, READY, TWILIO, WANTED, RecordingRow
from tasks.catalog.queries import Catalog
from tasks.dispatch import download_message, send_download, send_handed, task_sent_event
from tasks.errors import Conflict, NotFound, ProviderError, TwilioAccountMismatch, TwilioNotConfigured
from tasks.media import twilio
from tasks.media.http import Fetcher, check_media_url, is_twilio_url, new_session
from tasks.media.store import Store, media_store
from tasks.media.types import safe_content_type
from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.facts import Fact, bury_fact, forget_fact, read_fact, write_fact
from tasks.slots.jobs import Job, RequestMode, delete_job, get_job, get_jobs, new_task_id, request_job
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
    #: The registration's labels of the channels (agent, caller...), None when it gave none.
    channels: list[str] | None = None
    #: Whether the waveform peaks are there (a ready recording stored since downloads are decoded).
    has_peaks: bool = False
    #: The stored file's key when ready (signed media links name it); not part of the status object.
    media_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid, "status": self.status, "attempts": self.attempts, "error": self.error,
            "size_bytes": self.size_bytes, "content_type": self.content_type,
            "duration_seconds": self.duration_seconds, "created_at": self.created_at, "channels": self.channels,
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
        size_bytes=rec.size_bytes if ready else None,
        content_type=safe_content_type(rec.content_type) if ready else None,
        duration_seconds=rec.duration_seconds, created_at=rec.created_at.isoformat(),
        channels=channel_labels(rec), has_peaks=ready and bool(rec.channels),
        media_key=rec.file_path if ready else None,
    )


def channel_labels(rec: RecordingRow) -> list[str] | None:
    """The labels the registration gave the recording's channels (stored as a JSON list)."""
    return _labels(rec.channel_labels)


def _labels(stored: str | None) -> list[str] | None:
    return [str(label) for label in json.loads(stored)] if stored else None


#: Catalog pages a filtered list reads at most per answer (a status filter may skip rows).
LIST_ROUNDS = 10
#: The catalog states a recording of each status may be in (the live ones are refined by its job).
_STATES_OF = {"new": (NEW,), "queued": (WANTED,), "processing": (WANTED,), "ready": (READY,),
              "failed": (FAILED, WANTED)}
STATUSES = tuple(_STATES_OF)


@dataclass(frozen=True)
class ListFilter:
    """What a list asks for: a call sid prefix, a status, a range of creation days (UTC, both included)."""

    prefix: str | None = None
    status: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    def catalog_states(self) -> tuple[str, ...] | None:
        return _STATES_OF[self.status] if self.status else None

    @classmethod
    def of(cls, prefix: str | None, status: str | None, day_from: date | None, day_to: date | None) -> ListFilter:
        return cls(prefix or None, status or None,
                   datetime.combine(day_from, time.min, UTC) if day_from else None,
                   datetime.combine(day_to + timedelta(days=1), time.min, UTC) if day_to else None)


def fact_of(rec: RecordingRow) -> Fact:
    """The hot fields of a catalog row, for the job registry's side (:mod:`tasks.slots.facts`)."""
    ready = rec.state == READY and rec.file_path
    return Fact(recording_id=rec.id, created_at=rec.created_at.isoformat(), duration_seconds=rec.duration_seconds,
                attempts=rec.attempts, file=rec.file_path if ready else None,
                size_bytes=rec.size_bytes if ready else None, content_type=rec.content_type if ready else None,
                channels=rec.channels if ready else None, channel_labels=rec.channel_labels)


def known_status(call_sid: str, fact: Fact | None, job: Job | None, store: Store) -> Status | None:
    """The status that a recording's fact and job give alone, or None when the catalog must be read: as
    :func:`status_of` for a ready recording or a job queued or running; anything else (new, failed, a job of
    another registration, no fact) is the catalog's to say."""
    if fact is None:
        return None
    current = job is not None and job.recording_id == str(fact.recording_id)
    if fact.ready and store.exists(fact.file):
        return Status(call_sid=call_sid, status=READY, attempts=job.attempts if job and current else fact.attempts,
                      error=None, size_bytes=fact.size_bytes, content_type=safe_content_type(fact.content_type),
                      duration_seconds=fact.duration_seconds, created_at=fact.created_at, media_key=fact.file,
                      channels=_labels(fact.channel_labels), has_peaks=bool(fact.channels))
    if job is not None and current and job.status in ("queued", "processing"):
        return Status(call_sid=call_sid, status=job.status, attempts=job.attempts, error=job.error or None,
                      size_bytes=None, content_type=None, duration_seconds=fact.duration_seconds,
                      created_at=fact.created_at, channels=_labels(fact.channel_labels))
    return None


class Recordings:
    """One business's recordings."""

    def __init__(self, client: redis.Redis, settings: Settings, business_id: str) -> None:
        self.client, self.settings, self.business_id = client, settings, business_id
        self.catalog = Catalog(settings)
        self.store: Store = media_store(settings)

    def register(self, call_sid: str, media_url: str | None, duration_seconds: float | None,
                 provider: str = HTTP, *, from_callback: bool = False,
                 channels: list[str] | None = None) -> tuple[RecordingRow, bool]:
        """Register a recording; returns (row, created). The same registration again changes nothing.

        A Twilio recording may be registered by its CallSid alone (``media_url`` None), to be resolved when it
        is fetched; a later registration naming its Twilio URL fills the URL in. A provider's status callback
        (``from_callback``) for another recording of a call already registered keeps the first one.

        Raises:
            MediaHostNotAllowed: the media URL is off the allowlist.
            TwilioNotConfigured: a CallSid alone, and no Twilio account to resolve it with.
            TwilioAccountMismatch: the business is bound to a Twilio account, and this is a recording of
                another (:meth:`check_twilio_account`).
            Conflict: the call_sid is registered with another media URL.
        """
        bound = self.catalog.twilio_account(self.business_id)
        if media_url is not None:
            check_media_url(media_url, self.settings)
        elif provider == TWILIO and not twilio.is_configured(self.settings, bound):
            raise TwilioNotConfigured("set TWILIO_ACCOUNT_SID and its credentials to register Twilio recordings "
                                      "by CallSid")
        if bound is not None:
            self.check_twilio_account(bound, call_sid, media_url, provider)
        labels = json.dumps(channels) if channels else None
        rec, created = self.catalog.register(self.business_id, call_sid, media_url, duration_seconds,
                                             provider=provider, channel_labels=labels)
        if created:
            return rec, True
        if labels is not None and rec.channel_labels != labels:
            self.catalog.set_channel_labels(rec.id, labels)  # the labels may be given (or corrected) later
            rec = dataclasses.replace(rec, channel_labels=labels)
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

    def check_twilio_account(self, bound: str, call_sid: str, media_url: str | None, provider: str) -> None:
        """Refuse a Twilio recording of another account than ``bound``, the business's.

        A Twilio URL must name ``bound`` in its path. A CallSid alone is looked up in ``bound``: Twilio not
        knowing the call there (or naming another owner) refuses it; Twilio unreachable lets it through, since
        the download resolves the CallSid in ``bound`` only and checks the account again.

        Raises:
            TwilioAccountMismatch: a recording of another account.
        """
        if media_url is not None:
            mismatch = twilio.account_mismatch(bound, media_url) if is_twilio_url(media_url, self.settings) else None
            if mismatch:
                log.warning("registration refused business_id=%s call_sid=%s: %s", self.business_id, call_sid,
                            mismatch)
                raise TwilioAccountMismatch(mismatch)
            return
        if provider != TWILIO:
            return
        fetcher = Fetcher(self.settings, new_session())
        try:
            owner = twilio.call_account(fetcher, bound, call_sid)
        except ProviderError as exc:
            log.warning("could not ask Twilio whose call it is, the download checks again business_id=%s "
                        "call_sid=%s: %s", self.business_id, call_sid, exc)
            return
        finally:
            fetcher.session.close()
        if owner != bound:
            log.warning("registration refused business_id=%s call_sid=%s: the call is not in account %s",
                        self.business_id, call_sid, bound)
            raise TwilioAccountMismatch(f"the call is not one of account {bound}, the business's")

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

    def list(self, limit: int, before_id: int | None,
             filters: ListFilter | None = None) -> tuple[list[Status], int | None]:
        """A page, newest first, and the cursor of the next page (None at the end).

        A status filter is applied to the live status (the catalog's state and the job's), so a page may hold
        fewer than ``limit`` items with a next cursor: the catalog rows read for it are bounded.
        """
        filters = filters or ListFilter()
        statuses: list[Status] = []
        cursor, rounds = before_id, 0
        while True:
            rows = self.catalog.page(self.business_id, limit + 1, cursor, prefix=filters.prefix,
                                     states=filters.catalog_states(), created_from=filters.created_from,
                                     created_before=filters.created_before)
            page = rows[:limit]
            found = get_jobs(self.client, self.business_id, [r.call_sid for r in page])
            for row in page:
                status = status_of(row, found.get(row.call_sid), self.store)
                if filters.status is None or status.status == filters.status:
                    statuses.append(status)
                cursor = row.id
                if len(statuses) == limit:
                    more = row is not page[-1] or len(rows) > limit
                    return statuses, (cursor if more else None)
            rounds += 1
            if len(rows) <= limit:
                return statuses, None
            if rounds == LIST_ROUNDS:
                return statuses, cursor

    def request(self, rec: RecordingRow, mode: RequestMode) -> Status:
        """Ask for the media: enqueue the job once, however many ask at once. Returns the new status."""
        if rec.state == READY and not self.store.exists(rec.file_path):
            log.warning("stored file missing, fetching again business_id=%s call_sid=%s",
                        self.business_id, rec.call_sid)
            self.catalog.mark_lost(rec.id, rec.file_path, rec.sha256)
            self.forget(rec.call_sid)
            rec = dataclasses.replace(rec, state=WANTED, file_path=None, sha256=None, ready_at=None)
            mode = "force"
        seen = rec.state
        # A failed recording asked for again: in "stream" mode a job still failed stays failed (the script answers
        # so), and the row must too; it is marked wanted only once a new job exists, and that job's message is
        # sent after (as before: a failure of its attempt comes after the mark). Elsewhere it is marked before the
        # job exists, for the same reason.
        failed_on_stream = seen == FAILED and mode == "stream"
        if seen == FAILED and not failed_on_stream:
            self.catalog.mark_wanted(rec.id)
        # The message goes out in the step that creates the job, when a slot is reserved for it (a parked job gets
        # its message when handed one): in a burst, every later step of this request waits behind the others'.
        task_id = new_task_id()
        message = None if failed_on_stream else download_message(self.business_id, rec.call_sid, task_id)
        result = request_job(self.client, self.settings, self.business_id, rec.call_sid,
                             media_url=rec.media_url or "", recording_id=rec.id, mode=mode, task_id=task_id,
                             message=(message.queue, message.payload) if message else None,
                             event=task_sent_event(message) if message else None)
        if result.outcome in ("enqueued", "parked"):
            if failed_on_stream:
                self.catalog.mark_wanted(rec.id)
                if result.task_id:
                    send_download(self.business_id, rec.call_sid, result.task_id)
            elif seen not in (WANTED, FAILED):
                # Only from the state read: an outcome a worker recorded since (ready, failed) stays.
                self.catalog.mark_wanted(rec.id, seen=seen)
            if result.sent:
                log.info("dispatched business_id=%s call_sid=%s task_id=%s", self.business_id, rec.call_sid,
                         task_id)
            if seen != WANTED:
                rec = dataclasses.replace(rec, state=WANTED, error=None)
        # No second catalog read: this request changed the row only as just mirrored in ``rec``.
        self.remember(rec)
        return self.status(rec)

    @staticmethod
    def backfill_peaks(client: redis.Redis, settings: Settings, business_id: str | None = None) -> int:
        """Ask for the peaks of every ready recording stored before downloads were decoded (of one business, or
        all): each becomes a job, which decodes the stored file. Returns how many were asked for."""
        catalog, after_id, asked = Catalog(settings), 0, 0
        while page := catalog.without_peaks(500, after_id, business_id):
            after_id = page[-1].id
            for rec in page:
                Recordings(client, settings, rec.business_id).request(rec, "force")
                asked += 1
        return asked

    def delete(self, rec: RecordingRow) -> None:
        """Forget the recording: catalog row, stored files and job; a running download's result is discarded.

        No bytes stay behind whatever runs meanwhile. The row goes first, so a download that stores its result
        from then on finds it gone and removes its own file (tasks/worker/download.py); every file of the
        recording already stored goes next, under any extension, including one a download stored (and even
        marked ready) after ``rec`` was read.
        """
        gone = self.catalog.delete(self.business_id, rec.call_sid)
        rows = (rec,) if gone is None or gone == rec else (rec, gone)
        # The fact of the row deleted (the one ``rec`` was read from, unless another took its place) is buried:
        # a worker announcing a result, or a status that read the row just before, cannot write it back.
        bury_fact(self.client, self.business_id, rec.call_sid, rows[-1].id)
        if delete_job(self.client, self.business_id, rec.call_sid):
            send_handed(self.business_id, BusinessSlots(self.client, self.business_id, self.settings).hand_off(),
                        by="delete")
        for row in rows:
            self.store.delete(row.file_path)
            self.store.delete_recording(self.business_id, row.call_sid, row.id)
        events.publish(self.client, self.business_id, rec.call_sid, events.DELETED)
        log.info("deleted business_id=%s call_sid=%s", self.business_id, rec.call_sid)
