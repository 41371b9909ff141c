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

import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from api import ranges
from api.auth import settings
from api.media_headers import SECURITY_HEADERS, MediaResponse, add_security_headers
from tasks.errors import NotFound, RecplayError
from tasks.media.links import PREFIX, check_link
from tasks.settings import Settings

bp = Blueprint("media", __name__, url_prefix="/media")

#: As the recordings' stream: a link is for one recording and expires; private caches may keep the bytes.
CACHE_CONTROL = "private, max-age=3600"
#: The query string of the links this API hands out, which the fast path takes.
_USUAL_QUERY = re.compile(r"expires=([0-9]{1,12})&sig=([A-Za-z0-9_-]{1,64})(&download=1)?")

#: Where a server cannot sendfile, a single range up to this size is read at once, a larger one in reads of it:
#: few system calls, and no more than this much of a file held by a response waiting on a slow client (gevent
#: workers keep up to worker_connections of them). Whole-file GETs took less CPU with it than with 64 KiB or
#: 1 MiB reads.
READ_SIZE = 256 * 1024

WsgiHeaders = list[tuple[str, str]]

#: Sent with every answer of a link, after the plan's headers.
_LINK_HEADERS = (("Cache-Control", CACHE_CONTROL), *SECURITY_HEADERS)
_STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}


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
        EOFError: the file is shorter than its size said (it never is: stored files do not change in place).
    """
    if app_settings.storage != "local":
        # With S3, players get presigned URLs from the stream endpoint; nothing is served from here.
        raise NotFound("no such recording")
    found = check_link(app_settings, key, expires, sig)
    try:
        fd = os.open(os.path.join(app_settings.media_dir, found.key), os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound("no such recording") from exc
    try:
        stat = os.fstat(fd)
        rep = representation(int(stat.st_mtime), stat.st_size, found.content_type)
        plan = ranges.plan_response(
            method, rep,
            range_header=environ.get("HTTP_RANGE"),
            if_range=environ.get("HTTP_IF_RANGE"),
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
            if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
            # As nginx, which answers these links too: one range-spec that ends before it starts is a 416.
            reject_backwards=True,
        )
    except BaseException:
        os.close(fd)
        raise
    headers = [*plan.headers, *_LINK_HEADERS]
    if download:
        headers.append(("Content-Disposition", f'attachment; filename="{found.download_name}"'))
    if not (plan.send_body and plan.parts):
        os.close(fd)
        return plan.status, headers, ()
    return plan.status, headers, _body(plan, rep, fd, environ)


@lru_cache(maxsize=1024)
def representation(mtime: int, size: int, content_type: str) -> ranges.Representation:
    """The file as nginx describes it: ETag ``"<mtime hex>-<size hex>"``, Last-Modified its mtime. Kept per
    (mtime, size, type): a player asks for the same file range after range, and the answer is immutable."""
    return ranges.Representation(
        length=size,
        etag=f'"{mtime:x}-{size:x}"',
        last_modified=datetime.fromtimestamp(mtime, UTC),
        content_type=content_type,
    )


def sendfile_works() -> bool:
    """Whether a file wrapper's body reaches a real sendfile: not under gevent's patched sockets (gunicorn's
    gevent workers), whose sendfile is a Python loop reading and sending 8 KiB at a time. gevent is looked up,
    never imported: a process that has not imported it is not patched."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is None or not monkey.is_module_patched("socket")


def _body(plan: ranges.Plan, rep: ranges.Representation, fd: int, environ: dict[str, Any]) -> Iterable[bytes]:
    """The body of a GET with parts; it owns ``fd`` from here on (closes it, or leaves it to what it returns).

    One range goes through the server's file wrapper where that is a real sendfile (gunicorn sends from the
    file's position, no more than Content-Length, as PEP 3333 asks). Elsewhere one range of up to
    :data:`READ_SIZE` is read at once into a single body, a larger one :data:`READ_SIZE` at a time: a system
    call per read and a send per block, where gevent's sendfile makes 8 KiB of each. Several ranges are read
    through :func:`ranges.iter_body`."""
    first, last = plan.parts[0]
    wrapper = environ.get("wsgi.file_wrapper") if sendfile_works() else None
    if plan.boundary is None and wrapper is None and last - first < READ_SIZE:
        try:
            return (_pread(fd, first, last - first + 1),)
        finally:
            os.close(fd)
    try:
        fileobj = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    if plan.boundary is not None:
        return _closing(fileobj, ranges.iter_body(plan, rep, fileobj))
    if wrapper is not None:
        fileobj.seek(first)
        found: Iterable[bytes] = wrapper(fileobj, 65536)
        return found
    return _closing(fileobj, _preads(fileobj.fileno(), first, last))


def _pread(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes of the file ``fd`` from ``offset``; EOFError if it ends first, as :func:`ranges.iter_body`."""
    data = os.pread(fd, size, offset)
    if len(data) < size:
        raise EOFError(f"file ended at byte {offset + len(data)}, before byte {offset + size - 1}")
    return data


def _preads(fd: int, first: int, last: int) -> Iterator[bytes]:
    """Bytes ``first`` to ``last`` of the file ``fd``, :data:`READ_SIZE` at a time."""
    end = last + 1
    for offset in range(first, end, READ_SIZE):
        yield _pread(fd, offset, min(READ_SIZE, end - offset))


def _closing(fileobj: io.FileIO, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, then the file closed; if the server closes the body before iterating it, the collector
    closes the file."""
    with fileobj:
        yield from chunks


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
        start_response(_STATUS_LINES[status], headers)
        return body
