"""Serves the web player: ``/`` and its static files."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
#: Only the page's own assets are served; tests and package metadata in frontend/ are not.
STATIC_SUFFIXES = {".js", ".css", ".svg", ".png", ".ico", ".woff2"}

bp = Blueprint("frontend", __name__)


def _revalidated(response: Response) -> Response:
    # Always revalidate (cheap with the ETag): after a deploy, the page never runs with stale modules.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/")
def index() -> Response:
    response = _revalidated(send_from_directory(FRONTEND_DIR, "index.html", max_age=0))
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/static/<path:name>")
def static_file(name: str) -> Response:
    if Path(name).suffix not in STATIC_SUFFIXES or name.startswith("tests/"):
        abort(404)
    return _revalidated(send_from_directory(FRONTEND_DIR, name, max_age=0))
