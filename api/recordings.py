"""The recordings endpoints: register, list, status, fetch, stream, delete."""

from __future__ import annotations

import base64
import binascii
import math
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import ranges
from api.auth import business_for_stream, business_from_header, settings
from api.errors import ApiError
from api.media_headers import MediaResponse, add_security_headers
from tasks.access import MANAGE, mint_stream_token
from tasks.catalog.models import FAILED, HTTP, PROVIDERS, READY, TWILIO, RecordingRow
from tasks.ids import check_id, is_valid_id
from tasks.media.links import media_link, parse_key
from tasks.media.types import safe_content_type
from tasks.recordings import STATUSES, ListFilter, Recordings, Status, status_of
from tasks.slots.client import get_redis

bp = Blueprint("recordings", __name__, url_prefix="/api/recordings")

#: Bodies larger than this are refused with 413 before they are read.
MAX_BODY_BYTES = 64 * 1024
MAX_PAGE = 200
DEFAULT_PAGE = 50
#: Seconds a client should wait before polling a recording that is not ready yet.
RETRY_AFTER_SECONDS = 2


def _recordings(business_id: str) -> Recordings:
    return Recordings(get_redis(), settings(), business_id)


def _owned(recs: Recordings, call_sid: str) -> RecordingRow:
    rec = recs.get(check_id(call_sid, "call_sid"))
    if rec is None:
        # Another business's recording answers exactly as one that does not exist.
        raise ApiError(404, "not_found", "no such recording")
    return rec


def status_body(recs: Recordings, status: Status) -> dict[str, Any]:
    body = status.as_dict()
    body["stream_url"] = body["peaks_url"] = None
    if status.status == READY:
        body["stream_url"] = stream_url(recs, status)
        if status.has_peaks:
            token = mint_stream_token(recs.settings, recs.business_id, status.call_sid)
            body["peaks_url"] = url_for("peaks.peaks", call_sid=status.call_sid, token=token)
    return body


def stream_url(recs: Recordings, status: Status) -> str:
    """Where a player streams a ready recording: a signed media link to its file (answered by nginx, or by
    :mod:`api.media`), or with S3 the stream endpoint with a stream token (it redirects to a presigned URL)."""
    if recs.store.kind == "local" and status.media_key and parse_key(status.media_key):
        return media_link(recs.settings, status.media_key)
    token = mint_stream_token(recs.settings, recs.business_id, status.call_sid)
    return url_for("recordings.stream", call_sid=status.call_sid, token=token)


def _pending(recs: Recordings, status: Status, code: int) -> Response:
    response = jsonify(status_body(recs, status))
    response.status_code = code
    if code == 202:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _json_body() -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", "body over 64 KiB")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    return data


@bp.put("/<call_sid>")
def register(call_sid: str) -> Response:
    recs = _recordings(business_from_header(MANAGE))
    check_id(call_sid, "call_sid")
    data = _json_body()
    unknown = set(data) - {"media_url", "duration_seconds", "provider", "channels"}
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(sorted(unknown))}")
    provider = data.get("provider", HTTP)
    if provider not in PROVIDERS:
        raise ApiError(400, "invalid_body", f"provider must be one of {', '.join(PROVIDERS)}")
    media_url = data.get("media_url")
    if (media_url is not None or provider != TWILIO) and (
        not isinstance(media_url, str) or not media_url or len(media_url) > 2048
    ):
        raise ApiError(400, "invalid_body", "media_url must be a URL string of at most 2048 characters")
    duration = data.get("duration_seconds")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration)
        or duration < 0
    ):
        raise ApiError(400, "invalid_body", "duration_seconds must be a non-negative number")
    rec, created = recs.register(call_sid, media_url, float(duration) if duration is not None else None,
                                 provider, channels=_channel_labels(data.get("channels")))
    response = jsonify(status_body(recs, recs.status(rec)))
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = url_for("recordings.status", call_sid=call_sid)
    return response


def _list_filter() -> ListFilter:
    """``q`` (call sid prefix), ``status``, ``from`` and ``to`` (YYYY-MM-DD, UTC days, both included)."""
    args = request.args
    prefix = args.get("q", "")
    if prefix and not (len(prefix) <= 64 and is_valid_id(prefix)):
        raise ApiError(400, "invalid_filter", "q must be the start of a call sid: letters, digits, _ and -")
    status = args.get("status", "")
    if status and status not in STATUSES:
        raise ApiError(400, "invalid_filter", f"status must be one of {', '.join(STATUSES)}")
    days = {}
    for name in ("from", "to"):
        raw = args.get(name, "")
        try:
            days[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            raise ApiError(400, "invalid_filter", f"{name} must be a date, YYYY-MM-DD") from None
        if raw and len(raw) != 10:
            raise ApiError(400, "invalid_filter", f"{name} must be a date, YYYY-MM-DD")
    if days["from"] and days["to"] and days["from"] > days["to"]:
        raise ApiError(400, "invalid_filter", "from must not be after to")
    return ListFilter.of(prefix, status, days["from"], days["to"])


#: At most this many channel labels, each of 1 to this many printable characters.
MAX_CHANNELS, MAX_LABEL = 8, 32


def _channel_labels(raw: Any) -> list[str] | None:
    """The registration's ``channels``: a list of short labels, one per channel (e.g. ["agent", "caller"])."""
    if raw is None:
        return None
    if (not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CHANNELS
            or not all(isinstance(x, str) and 1 <= len(x) <= MAX_LABEL and x.isprintable() for x in raw)):
        raise ApiError(400, "invalid_body", f"channels must be a list of 1 to {MAX_CHANNELS} labels of 1 to "
                       f"{MAX_LABEL} printable characters")
    return [str(x) for x in raw]


def _decode_cursor(raw: str) -> int:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        value = int(text)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued") from exc
    if not text.isdigit() or value < 1:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued")
    return value


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


@bp.get("")
def list_recordings() -> Response:
    recs = _recordings(business_from_header())
    raw_limit = request.args.get("limit", str(DEFAULT_PAGE))
    # ASCII digits only: str.isdigit also accepts '٣' and '²', which int() reads as 3 or refuses.
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    cursor = request.args.get("cursor")
    before = _decode_cursor(cursor) if cursor else None
    statuses, next_id = recs.list(int(raw_limit), before, _list_filter())
    return jsonify({
        "items": [status_body(recs, s) for s in statuses],
        "next_cursor": _encode_cursor(next_id) if next_id is not None else None,
    })


@bp.get("/<call_sid>")
def status(call_sid: str) -> Response:
    recs = _recordings(business_from_header())
    current, _ = recs.current(check_id(call_sid, "call_sid"))
    response = jsonify(status_body(recs, current))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<call_sid>/fetch")
def fetch(call_sid: str) -> Response:
    recs = _recordings(business_from_header())
    # A recording that is ready, or whose job is queued or running, is answered from Redis alone: a burst of
    # duplicates costs no catalog read.
    known, job = recs.known(check_id(call_sid, "call_sid"))
    if known is not None:
        return _pending(recs, known, 200 if known.status == READY else 202)
    rec = _owned(recs, call_sid)
    # The job as known() read it, a moment ago: one a request created since is found by request() at once.
    current = status_of(rec, job, recs.store)
    if current.status == READY:
        recs.remember(rec)
        return _pending(recs, current, 200)
    return _pending(recs, recs.request(rec, "fetch"), 202)


@bp.route("/<call_sid>/stream", methods=["GET", "HEAD"])
def stream(call_sid: str) -> Response:
    check_id(call_sid, "call_sid")
    recs = _recordings(business_for_stream(call_sid))
    rec = _owned(recs, call_sid)
    if rec.state != READY or not recs.store.exists(rec.file_path):
        current = recs.status(rec)
        if current.status == FAILED:
            return _pending(recs, current, 502)
        return _pending(recs, recs.request(rec, "stream"), 202)
    return _send_media(recs, rec)


@bp.after_request
def _guard_media(response: Response) -> Response:
    """Every answer of the stream endpoint (media, redirect, pending status or error) carries the media
    security headers."""
    if request.endpoint == "recordings.stream":
        add_security_headers(response.headers)
    return response


def _send_media(recs: Recordings, rec: RecordingRow) -> Response:
    assert rec.file_path and rec.sha256 and rec.size_bytes is not None and rec.ready_at is not None
    rep = ranges.Representation(
        length=rec.size_bytes,
        etag=f'"{rec.sha256[:32]}"',
        last_modified=rec.ready_at.replace(microsecond=0),
        # Rows stored before the fixed table may hold a provider's header (`audio/mpeg, text/html`).
        content_type=safe_content_type(rec.content_type),
    )
    plan = ranges.plan_response(
        request.method, rep,
        range_header=request.headers.get("Range"),
        if_range=request.headers.get("If-Range"),
        if_none_match=request.headers.get("If-None-Match"),
        if_modified_since=request.headers.get("If-Modified-Since"),
    )
    store = recs.store
    if plan.send_body and plan.parts:
        if not store.verify(rec.file_path):
            return _lost(recs, rec)
        url = store.redirect_url(rec.file_path, rep.content_type, _disposition(rec))
        if url is not None:
            return _redirect(url)
    accel_path = store.accel_path(rec.file_path)
    if recs.settings.accel_redirect and accel_path is not None and _nginx_can_send(plan):
        return _accel_redirect(recs.settings.accel_redirect + accel_path, rec, plan)
    body: Any = ()
    if plan.send_body and plan.parts:
        fileobj = store.open_ranges(rec.file_path, plan.parts)

        def generate() -> Any:
            try:
                yield from ranges.iter_body(plan, rep, fileobj)
            finally:
                fileobj.close()

        body = generate()
    response = MediaResponse(body, status=plan.status, direct_passthrough=True)
    for name, value in plan.headers:
        response.headers[name] = value
    _media_headers(response, rec)
    return response


def _disposition(rec: RecordingRow) -> str | None:
    if request.args.get("download") != "1":
        return None
    return f'attachment; filename="{rec.call_sid}{PurePosixPath(rec.file_path or "").suffix}"'


def _media_headers(response: Response, rec: RecordingRow) -> None:
    response.headers["Cache-Control"] = "private, max-age=3600"
    add_security_headers(response.headers)
    disposition = _disposition(rec)
    if disposition:
        response.headers["Content-Disposition"] = disposition


def _redirect(url: str) -> Response:
    """Access is checked: the client gets the object from the store itself (a bucket answers Range) through a
    short-lived presigned URL."""
    response = Response(status=302)
    response.headers["Location"] = url
    response.headers["Cache-Control"] = "no-store"  # the URL expires
    return response


def _lost(recs: Recordings, rec: RecordingRow) -> Response:
    """The bucket no longer has a ready recording's object: fetch it again."""
    recs.catalog.mark_lost(rec.id, rec.file_path, rec.sha256)
    recs.forget(rec.call_sid)
    fresh = recs.get(rec.call_sid) or rec
    return _pending(recs, recs.request(fresh, "force"), 202)


def _nginx_can_send(plan: ranges.Plan) -> bool:
    """Whether nginx, given the request as it is, sends exactly the bytes and status of ``plan``.

    nginx is handed a GET answered 200 without a Range header, or 206 for a Range header of one range-spec.
    Everything else is rare and answered here, where the RFC 9110 choices are made once: HEAD, 304, 416, a
    Range header that is ignored (bad syntax, a failed If-Range) or asks for several ranges, and the
    preconditions this API does not evaluate (If-Match, If-Unmodified-Since), which nginx would.
    """
    headers = request.headers
    if request.method != "GET" or headers.get("If-Match") or headers.get("If-Unmodified-Since"):
        return False
    range_header = headers.get("Range")
    if plan.status == 200:
        return range_header is None
    single_range = range_header is not None and "," not in range_header
    return plan.status == 206 and plan.boundary is None and single_range


def _accel_redirect(location: str, rec: RecordingRow, plan: ranges.Plan) -> Response:
    """Access is checked: let nginx send the file (X-Accel-Redirect to ``location``, in its internal location).

    nginx keeps the Content-Type, Content-Disposition and Cache-Control sent here; deploy/nginx.conf makes it
    send this ETag and Last-Modified too (``add_header ... $upstream_http_...``) and apply Range and If-Range
    against them, so a client sees the same validators in both modes.
    """
    response = Response(status=200)
    for name, value in plan.headers:
        # nginx adds Accept-Ranges to a 200 itself, but not to a 206: it keeps ours then.
        if name in ("ETag", "Last-Modified") or (name == "Accept-Ranges" and plan.status == 206):
            response.headers[name] = value
    response.headers["Content-Type"] = safe_content_type(rec.content_type)
    response.headers["X-Accel-Redirect"] = location
    _media_headers(response, rec)
    return response


@bp.delete("/<call_sid>")
def delete(call_sid: str) -> Response:
    recs = _recordings(business_from_header(MANAGE))
    rec = _owned(recs, call_sid)
    recs.delete(rec)
    return Response(status=204)
