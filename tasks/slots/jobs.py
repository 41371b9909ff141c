"""The job registry: one job per (business_id, call_sid), its state in a Redis hash.

``request_job`` is the dedup point: one Lua script creates the job or returns the existing one, so however many
requests arrive at once, one job exists. A new job whose business has a free slot gets it reserved and the
caller sends its one Celery message; otherwise it parks in arrival order and no message is sent until a slot
is handed to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import redis

from tasks.settings import Settings
from tasks.slots import events, keys
from tasks.slots.scripts import script

RequestMode = Literal["fetch", "stream", "force"]
#: The live states of a job (Redis only); a finished job is ``ready`` or ``failed`` like its catalog row.
QUEUED, PROCESSING = "queued", "processing"
#: What request.lua publishes for a new job (the same for every one: no attempt yet).
_QUEUED_MESSAGE = events.message(QUEUED)
Outcome = Literal["ready", "failed", "retry", "cancel"]


@dataclass(frozen=True)
class Job:
    business_id: str
    call_sid: str
    status: str
    attempts: int
    error: str
    task_id: str
    fence: str
    worker: str
    parked: bool
    recording_id: str
    media_url: str

    @classmethod
    def from_hash(cls, business_id: str, call_sid: str, raw: dict[str, str]) -> Job:
        return cls(
            business_id=business_id,
            call_sid=call_sid,
            status=raw.get("status", ""),
            attempts=int(raw.get("attempts") or 0),
            error=raw.get("error", ""),
            task_id=raw.get("task_id", ""),
            fence=raw.get("fence", ""),
            worker=raw.get("worker", ""),
            parked=raw.get("parked") == "1",
            recording_id=raw.get("recording_id", ""),
            media_url=raw.get("media_url", ""),
        )


@dataclass(frozen=True)
class RequestResult:
    """What ``request_job`` did: ``enqueued`` (a slot is reserved: send ``task_id``), ``parked`` (it waits for
    a slot, no message), ``exists``, ``ready`` or ``failed``."""

    outcome: str
    task_id: str | None = None
    status: str | None = None
    error: str | None = None
    sent: bool = False  # enqueued, and the message given to request_job is on its queue


def _job_keys(business_id: str, call_sid: str) -> list[str]:
    return [*keys.business_keys(business_id), keys.job(business_id, call_sid)]  # KEYS[9]: the job


def finished_ttl_ms(settings: Settings) -> int:
    return (settings.dedup_seconds + keys.JOB_TTL_GRACE_SECONDS) * 1000


def request_job(
    client: redis.Redis,
    settings: Settings,
    business_id: str,
    call_sid: str,
    *,
    media_url: str,
    recording_id: int,
    mode: RequestMode = "fetch",
    task_id: str | None = None,
    message: tuple[str, str] | None = None,
    event: tuple[str, str] | None = None,
) -> RequestResult:
    """Create the job, or return the existing one (the same script announces a new job ``queued`` to its
    subscribers); on ``enqueued`` the caller sends the message, unless it gave it: ``message`` (queue list,
    payload: :func:`tasks.dispatch.download_message` for ``task_id``) is pushed by the script that reserves the
    slot, and the result says ``sent``; then ``event`` (channel, payload: :func:`tasks.dispatch.task_sent_event`)
    is published, in the same step. With a message, the script also adds the business to the set of businesses
    (the caller does it otherwise)."""
    if message is not None and task_id is None:
        raise ValueError("a message is for the task id it names: pass that task_id too")
    task_id = task_id or new_task_id()
    queue, payload = message or ("", "")
    reply = script(client, "request")(
        keys=[*_job_keys(business_id, call_sid), *([queue, keys.BUSINESSES] if message else [])],
        args=[call_sid, task_id, media_url, recording_id, settings.dedup_seconds * 1000, mode,
              settings.max_concurrent, settings.reservation_seconds * 1000, payload,
              keys.events(business_id, call_sid), _QUEUED_MESSAGE, *(event or ("", "")), business_id],
    )
    kind = reply[0]
    if kind in ("enqueued", "parked"):
        if message is None:
            client.sadd(keys.BUSINESSES, business_id)
        if kind == "parked":
            return RequestResult(kind, status=QUEUED)
        return RequestResult(kind, task_id=reply[1], status=QUEUED, sent=reply[2] == 1)
    if kind == "exists":
        return RequestResult("exists", status=reply[1])
    if kind == "failed":
        return RequestResult("failed", status="failed", error=reply[1])
    return RequestResult("ready", status="ready")


def finish_job(
    client: redis.Redis,
    settings: Settings,
    business_id: str,
    call_sid: str,
    fence: int,
    outcome: Outcome,
    *,
    error: str = "",
    retry_task_id: str = "",
    retry_in_seconds: float = 0.0,
    reopen: bool = False,
) -> bool:
    """Record an attempt's outcome if the attempt still owns the job; False means discard its result.

    A ``retry`` with a ``retry_task_id`` waits for that message (sent with its backoff by the caller); without
    one, the job goes back in line at its arrival place, and a release hands it a slot. ``reopen`` lets the
    attempt that marked the job ready turn that into a retry or a failure, when it could not store the result
    it had claimed. A ``ready`` or ``failed`` job is settled (:func:`settle`) once the catalog records it.
    """
    overdue_ms = int((retry_in_seconds + settings.queued_deadline_seconds) * 1000)
    reply = script(client, "finish")(
        keys=_job_keys(business_id, call_sid),
        args=[call_sid, fence, outcome, error[:500], retry_task_id, overdue_ms, finished_ttl_ms(settings),
              "1" if reopen else "0"],
    )
    if reply == "ok" and outcome in ("failed", "retry"):
        # `ready` is announced by the caller once the result is stored where readers look.
        attempts = int(client.hget(keys.job(business_id, call_sid), "attempts") or 0)
        events.publish(client, business_id, call_sid, "failed" if outcome == "failed" else "queued", attempts,
                       error[:500], fence)
    return bool(reply == "ok")


def settle(client: redis.Redis, business_id: str, call_sid: str) -> None:
    """The catalog has recorded the job's outcome: the sweep need not look at it again."""
    client.zrem(keys.claimed(business_id), call_sid)


def delete_job(client: redis.Redis, business_id: str, call_sid: str) -> bool:
    """Forget the job, its slot and its parked place; True if that freed a slot."""
    return bool(script(client, "delete")(keys=_job_keys(business_id, call_sid), args=[call_sid]))


def get_job(client: redis.Redis, business_id: str, call_sid: str) -> Job | None:
    raw = client.hgetall(keys.job(business_id, call_sid))
    return Job.from_hash(business_id, call_sid, {str(k): str(v) for k, v in raw.items()}) if raw else None


def get_jobs(client: redis.Redis, business_id: str, call_sids: list[str]) -> dict[str, Job]:
    """The jobs that exist among ``call_sids``, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for call_sid in call_sids:
        pipe.hgetall(keys.job(business_id, call_sid))
    found = {}
    for call_sid, raw in zip(call_sids, pipe.execute(), strict=True):
        if raw:
            found[call_sid] = Job.from_hash(business_id, call_sid, raw)
    return found


def new_task_id() -> str:
    return str(uuid.uuid4())
