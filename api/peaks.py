"""``GET /api/recordings/<call_sid>/peaks``: a ready recording's waveform peaks, computed once by the worker.

The answer is BBC audiowaveform's binary format, version 2, 8-bit (``tasks.media.decode.encode_peaks``): a
24-byte little-endian header (version 2, flags 1, sample rate, samples per pixel, length, channels), then for
each pixel, for each channel, one signed byte min and one max. About 50 ms a pixel, at most 72,000 pixels (an hour
of two channels: 281 KiB). Access is the stream's: a bearer token that may play, or the recording's short-lived
token in ``?token=`` (what ``peaks_url`` in the status object carries). Strong ETag, ``If-None-Match`` answers
304. A recording not ready answers 202 (and is asked for, as by the stream); one stored before downloads were
decoded answers 202 too, while a worker computes its peaks from the stored file.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.auth import business_for_stream, settings
from api.errors import ApiError
from api.media_headers import add_security_headers
from tasks.catalog.models import READY
from tasks.ids import check_id
from tasks.recordings import Recordings
from tasks.slots.client import get_redis

bp = Blueprint("peaks", __name__, url_prefix="/api/recordings")

#: The query a peaks request may carry: its token, nothing else.
ALLOWED_QUERY = frozenset({"token"})
RETRY_AFTER_SECONDS = 2


@bp.get("/<call_sid>/peaks")
def peaks(call_sid: str) -> Response:
    check_id(call_sid, "call_sid")
    unknown = set(request.args) - ALLOWED_QUERY
    if unknown:
        raise ApiError(400, "invalid_query", f"unknown query parameters: {', '.join(sorted(unknown))}")
    recs = Recordings(get_redis(), settings(), business_for_stream(call_sid))
    rec = recs.get(call_sid)
    if rec is None:
        raise ApiError(404, "not_found", "no such recording")
    stored = rec.state == READY and recs.store.exists(rec.file_path)
    data = recs.store.get_peaks(rec.file_path) if stored and rec.file_path and rec.channels else None
    if data is None:
        if stored and rec.channels == 0:
            raise ApiError(404, "no_peaks", "this recording does not decode: it has no waveform")
        # Not ready (ask for it, as the stream does), or stored before downloads were decoded (compute them).
        status = recs.request(rec, "force" if stored else "stream")
        response = jsonify(status.as_dict())
        response.status_code = 502 if status.status == "failed" else 202
        if response.status_code == 202:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response.headers["Cache-Control"] = "no-store"
        return response
    etag = f'"{(rec.sha256 or "")[:32]}-peaks"'
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        response = Response(status=304)
    else:
        response = Response(data, mimetype="application/octet-stream")
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "private, max-age=3600"
    add_security_headers(response.headers)
    return response
