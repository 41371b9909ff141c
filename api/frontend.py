"""Serves the web player: ``/`` and its static files."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"

bp = Blueprint("frontend", __name__)


@bp.get("/")
def index() -> Response:
    response = send_from_directory(FRONTEND_DIR, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(FRONTEND_DIR, name, max_age=300)
