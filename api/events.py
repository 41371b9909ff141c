"""``GET /api/recordings/<call_sid>/events``: a recording's status changes as Server-Sent Events.

Each event's ``data:`` is the status object (as ``GET /api/recordings/<call_sid>`` answers it), one per change,
the first at once; the stream ends after ``ready`` or ``failed``, when the recording is deleted, or after
``MAX_STREAM_SECONDS`` (the client opens it again). A comment line every ``HEARTBEAT_SECONDS`` keeps proxies
from closing a quiet stream. Access as for the status: the business token in the Authorization header (a
player reads the stream with fetch, since EventSource cannot send headers).

The changes come from Redis pub/sub (:mod:`tasks.slots.events`): a waiting client holds no database connection
and reads nothing until a change is announced; its waiting costs what the server's worker class needs for an
open response (a greenlet under gunicorn's gevent workers, deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context

from api.auth import business_from_header, settings
from api.recordings import bp, status_body
from tasks.errors import NotFound
from tasks.ids import check_id
from tasks.media.types import safe_content_type
from tasks.recordings import Recordings, Status
from tasks.slots.client import get_redis
from tasks.slots.events import DELETED, Subscription, change_order, hub_for
from tasks.slots.jobs import Job

HEARTBEAT_SECONDS = 15.0
#: A stream is closed after this long (a recording waiting behind its business's limit can wait for long).
MAX_STREAM_SECONDS = 600.0
FINAL = ("ready", "failed")


# On the recordings blueprint (``/api/recordings``): the same request limits.
@bp.get("/<call_sid>/events")
def events(call_sid: str) -> Response:
    recs = Recordings(get_redis(), settings(), business_from_header())
    check_id(call_sid, "call_sid")
    sub = hub_for(recs.client).subscribe(recs.business_id, call_sid)
    # Subscribed (and confirmed) before the state is read: no change can fall between the two.
    sub.__enter__()
    try:
        first, job = recs.current(call_sid)
    except BaseException:
        sub.__exit__(None, None, None)
        raise
    response = Response(stream_with_context(_stream(recs, sub, first, job)), mimetype="text/event-stream")
    # Unsubscribed when the server closes the response, even if it never started sending it.
    response.call_on_close(lambda: sub.__exit__(None, None, None))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
    return response


def _order(status: Status, job: Job | None) -> tuple[int, int]:
    fence = int(job.fence or 0) if job is not None and status.status in ("queued", "processing", "ready") else 0
    return change_order(status.status, fence, status.attempts)


def _event(recs: Recordings, status: Status) -> bytes:
    return b"data: " + json.dumps(status_body(recs, status), separators=(",", ":")).encode() + b"\n\n"


def _stream(recs: Recordings, sub: Subscription, first: Status, job: Job | None) -> Iterator[bytes]:
    try:
        yield _event(recs, first)
        if first.status in FINAL:
            return
        last, base = _order(first, job), first
        deadline = time.monotonic() + MAX_STREAM_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            message = sub.get(min(HEARTBEAT_SECONDS, remaining))
            if message is None:
                yield b": keep-alive\n\n"
                continue
            if message.get("status") == DELETED:
                return
            found = _changed(recs, base, message)
            if found is None:
                return  # gone meanwhile
            status, order = found
            if order <= last:
                continue  # older than what this client was sent (read before the message came)
            last, base = order, status
            yield _event(recs, status)
            if status.status in FINAL:
                return
    finally:
        sub.__exit__(None, None, None)


def _changed(recs: Recordings, base: Status, message: dict[str, Any]) -> tuple[Status, tuple[int, int]] | None:
    """The status after ``message`` and its place in the job's changes; None when the recording is gone."""
    if message.get("status") in ("queued", "processing", "failed"):
        status = dataclasses.replace(base, status=message["status"], attempts=int(message.get("attempts") or 0),
                                     error=message.get("error") or None, size_bytes=None, content_type=None,
                                     media_key=None)
        return status, change_order(status.status, int(message.get("fence") or 0), status.attempts)
    if message.get("status") == "ready" and message.get("file") and recs.store.exists(message["file"]):
        # The worker says what it stored: every waiting client is answered without a read.
        status = dataclasses.replace(base, status="ready", attempts=int(message.get("attempts") or 0), error=None,
                                     size_bytes=message.get("size_bytes"),
                                     content_type=safe_content_type(message.get("content_type")),
                                     media_key=message["file"], has_peaks=bool(message.get("channels")))
        return status, change_order("ready", int(message.get("fence") or 0), status.attempts)
    # Another `ready` (the fact was written before the announcement), or a resync after a lost connection: read
    # the state.
    try:
        status, job = recs.current(base.call_sid)
    except NotFound:
        return None
    return status, _order(status, job)
