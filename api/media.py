"""Media links (``/media/<business_id>/<file>?expires=&sig=``, :mod:`tasks.media.links`) answered by the API
itself, for deployments without nginx in front; behind nginx, nginx answers them (deploy/nginx.conf) and sends
only the rare requests it cannot answer exactly as this module does (If-* preconditions, HEAD, several ranges)
here. One choice follows nginx: a Range header of one range-spec whose last position is before its first
(``bytes=5-1``) is refused with 416, where the stream endpoint ignores it (RFC 9110 14.2 allows both).

No catalog read and no Redis call: the signature says which file, the file says the rest. A deleted
recording's file is gone, so its links answer 404 at once.

Every range request of a playing player lands here when there is no nginx, so the answer is built once, in
:func:`answer`, and a link in its usual form (``?expires=N&sig=S``, maybe ``&download=1``) whose file is there is
answered by :class:`FastLinks` straight from the WSGI environ, without Flask's request machinery; anything else
(a refusal, a missing file, another query string) goes through the Flask view, which answers from the same
function or raises the error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from api import ranges
from api.auth import settings
from api.media_headers import SECURITY_HEADERS, MediaResponse, add_security_headers
from tasks.errors import NotFound, RecplayError
from tasks.media.links import PREFIX, MediaKey, check_link
from tasks.settings import Settings

bp = Blueprint("media", __name__, url_prefix="/media")

#: As the recordings' stream: a link is for one recording and expires; private caches may keep the bytes.
CACHE_CONTROL = "private, max-age=3600"
#: The query string of the links this API hands out, which the fast path takes.
_USUAL_QUERY = re.compile(r"expires=([0-9]{1,12})&sig=([A-Za-z0-9_-]{1,64})(&download=1)?")

WsgiHeaders = list[tuple[str, str]]


@bp.after_request
def _secure(response: Response) -> Response:
    # Errors too: nothing this path answers is to be sniffed or run as a document.
    add_security_headers(response.headers)
    return response


@bp.route("/<business_id>/<name>", methods=["GET", "HEAD"])
def media(business_id: str, name: str) -> Response:
    status, headers, body = answer(settings(), f"{business_id}/{name}", request.args.get("expires"),
                                   request.args.get("sig"), request.args.get("download") == "1",
                                   request.method, request.environ)
    response = MediaResponse(body, status=status, direct_passthrough=True)
    for header, value in headers:
        response.headers[header] = value
    return response


def answer(app_settings: Settings, key: str, expires: str | None, sig: str | None, download: bool, method: str,
           environ: dict[str, Any]) -> tuple[int, WsgiHeaders, Iterable[bytes]]:
    """Status, headers and body of a GET or HEAD of a media link (``environ`` gives the request's headers).

    Raises:
        LinkForged, LinkExpired: the link does not hold.
        NotFound: not the local store, or no such file.
    """
    if app_settings.storage != "local":
        # With S3, players get presigned URLs from the stream endpoint; nothing is served from here.
        raise NotFound("no such recording")
    found = check_link(app_settings, key, expires, sig)
    try:
        fd = os.open(app_settings.media_dir / found.key, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound("no such recording") from exc
    try:
        rep = representation(found, os.fstat(fd))
        plan = ranges.plan_response(
            method, rep,
            range_header=environ.get("HTTP_RANGE"),
            if_range=environ.get("HTTP_IF_RANGE"),
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
            if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
            # As nginx, which answers these links too: one range-spec that ends before it starts is a 416.
            reject_backwards=True,
        )
        headers = [*plan.headers, ("Cache-Control", CACHE_CONTROL), *SECURITY_HEADERS]
        if download:
            headers.append(("Content-Disposition", f'attachment; filename="{found.download_name}"'))
        if not (plan.send_body and plan.parts):
            os.close(fd)
            return plan.status, headers, ()
        return plan.status, headers, _body(plan, rep, os.fdopen(fd, "rb"), environ)
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


def _body(plan: ranges.Plan, rep: ranges.Representation, fileobj: Any, environ: dict[str, Any]) -> Iterable[bytes]:
    """One range through the server's file wrapper (gunicorn sends it with sendfile from the file's position,
    no more than Content-Length, as PEP 3333 asks); several ranges, or a server without one, read here."""
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None and plan.boundary is None and len(plan.parts) == 1:
        fileobj.seek(plan.parts[0][0])
        found: Iterable[bytes] = wrapper(fileobj, 65536)
        return found

    def generate() -> Iterator[bytes]:
        try:
            yield from ranges.iter_body(plan, rep, fileobj)
        finally:
            fileobj.close()

    return generate()


class FastLinks:
    """WSGI middleware: a GET or HEAD of a media link in its usual form whose file is there, answered by
    :func:`answer` without Flask; any other request, and any link that does not hold, goes to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], app_settings: Settings) -> None:
        self.app, self.settings = app, app_settings

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        query = _USUAL_QUERY.fullmatch(environ.get("QUERY_STRING", "")) if path.startswith(PREFIX) else None
        if query is None or method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        try:
            status, headers, body = answer(self.settings, path[len(PREFIX):], query[1], query[2],
                                           query[3] is not None, method, environ)
        except (RecplayError, OSError):
            return self.app(environ, start_response)  # the view raises it again and answers the error
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
        return body
