"""Media links (``/media/<business_id>/<file>?expires=&sig=``, :mod:`tasks.media.links`) answered by the API
itself, for deployments without nginx in front; behind nginx, nginx answers them (deploy/nginx.conf) and sends
only the rare requests it cannot answer exactly as this module does (If-* preconditions, HEAD, several ranges)
here. One choice follows nginx: a Range header of one range-spec whose last position is before its first
(``bytes=5-1``) is refused with 416, where the stream endpoint ignores it (RFC 9110 14.2 allows both).

No catalog read and no Redis call: the signature says which file, the file says the rest. A deleted
recording's file is gone, so its links answer 404 at once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from api import ranges
from api.auth import settings
from api.media_headers import MediaResponse, add_security_headers
from tasks.errors import NotFound
from tasks.media.links import MediaKey, check_link

bp = Blueprint("media", __name__, url_prefix="/media")

#: As the recordings' stream: a link is for one recording and expires; private caches may keep the bytes.
CACHE_CONTROL = "private, max-age=3600"


@bp.after_request
def _secure(response: Response) -> Response:
    # Errors too: nothing this path answers is to be sniffed or run as a document.
    add_security_headers(response.headers)
    return response


@bp.route("/<business_id>/<name>", methods=["GET", "HEAD"])
def media(business_id: str, name: str) -> Response:
    app_settings = settings()
    if app_settings.storage != "local":
        # With S3, players get presigned URLs from the stream endpoint; nothing is served from here.
        raise NotFound("no such recording")
    found = check_link(app_settings, f"{business_id}/{name}", request.args.get("expires"),
                       request.args.get("sig"))
    try:
        fd = os.open(app_settings.media_dir / found.key, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound("no such recording") from exc
    try:
        return _answer(found, fd)
    except BaseException:
        os.close(fd)
        raise


def representation(found: MediaKey, stat: os.stat_result) -> ranges.Representation:
    """The file as nginx describes it: ETag ``"<mtime hex>-<size hex>"``, Last-Modified its mtime."""
    mtime = int(stat.st_mtime)
    return ranges.Representation(
        length=stat.st_size,
        etag=f'"{mtime:x}-{stat.st_size:x}"',
        last_modified=datetime.fromtimestamp(mtime, UTC),
        content_type=found.content_type,
    )


def _answer(found: MediaKey, fd: int) -> Response:
    """Answer from the open file ``fd``, which the response then owns (or which is closed here)."""
    rep = representation(found, os.fstat(fd))
    plan = ranges.plan_response(
        request.method, rep,
        range_header=request.headers.get("Range"),
        if_range=request.headers.get("If-Range"),
        if_none_match=request.headers.get("If-None-Match"),
        if_modified_since=request.headers.get("If-Modified-Since"),
        # As nginx, which answers these links too: one range-spec that ends before it starts is a 416.
        reject_backwards=True,
    )
    body: Any = ()
    if plan.send_body and plan.parts:
        body = _body(plan, rep, os.fdopen(fd, "rb"))
    else:
        os.close(fd)
    response = MediaResponse(body, status=plan.status, direct_passthrough=True)
    for name, value in plan.headers:
        response.headers[name] = value
    response.headers["Cache-Control"] = CACHE_CONTROL
    if request.args.get("download") == "1":
        response.headers["Content-Disposition"] = f'attachment; filename="{found.download_name}"'
    return response


def _body(plan: ranges.Plan, rep: ranges.Representation, fileobj: Any) -> Any:
    """One range through the server's file wrapper (gunicorn sends it with sendfile from the file's position,
    no more than Content-Length, as PEP 3333 asks); several ranges, or a server without one, read here."""
    wrapper = request.environ.get("wsgi.file_wrapper")
    if wrapper is not None and plan.boundary is None and len(plan.parts) == 1:
        fileobj.seek(plan.parts[0][0])
        return wrapper(fileobj, 65536)

    def generate() -> Any:
        try:
            yield from ranges.iter_body(plan, rep, fileobj)
        finally:
            fileobj.close()

    return generate()
