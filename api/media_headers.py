"""The headers of every media answer, in one place: a type from a fixed table of audio formats, which the browser
must neither sniff nor run as a document. nginx's media locations add the same two headers (deploy/nginx.conf)."""

from __future__ import annotations

from typing import Any

from flask import Response
from werkzeug.datastructures import Headers

from tasks.media.types import safe_content_type

#: Sent with every answer of a media endpoint, errors included.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
)


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

__all__ = ["SECURITY_HEADERS", "MediaResponse", "add_security_headers", "safe_content_type"]
