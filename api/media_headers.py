"""The headers of every media answer, in one place: a type from a fixed table of audio formats, which the browser
must neither sniff nor run as a document. nginx's media locations add the same two headers (deploy/nginx.conf)."""

from __future__ import annotations

from typing import Any

from flask import Response
from werkzeug.datastructures import Headers

from tasks.media.links import MEDIA_TYPES, OCTET_STREAM
from tasks.media.local import EXTENSIONS

#: Sent with every answer of a media endpoint, errors included.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
)


def safe_content_type(recorded: str | None) -> str:
    """The type to send for a catalog's ``content_type``: its audio format's one name from the fixed table
    (``audio/x-wav`` is sent as ``audio/wav``), or application/octet-stream for anything else."""
    ext = EXTENSIONS.get((recorded or "").split(";")[0].strip().lower())
    return MEDIA_TYPES.get(ext, OCTET_STREAM) if ext else OCTET_STREAM


def add_security_headers(headers: Headers) -> None:
    for name, value in SECURITY_HEADERS:
        headers[name] = value


class MediaResponse(Response):
    """Keeps the representation headers on a 304, which werkzeug strips; SPEC wants them on every answer."""

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        if self.status_code == 304:
            for name in ("Content-Type", "Last-Modified"):
                if name in self.headers and name not in headers:
                    headers[name] = self.headers[name]
        return headers
