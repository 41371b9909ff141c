"""Operations endpoints: liveness, readiness (and, with the operator tooling, metrics and overview)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import settings
from tasks.catalog import Catalog
from tasks.redis_client import get_redis
from tasks.store import MediaStore

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    checks: dict[str, dict[str, Any]] = {}
    try:
        get_redis().ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
    try:
        Catalog(settings()).ping()
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    writable = MediaStore(settings().media_dir).is_writable()
    checks["media_store"] = {"ok": writable} if writable else {"ok": False, "error": "not writable"}
    ok = all(c["ok"] for c in checks.values())
    response = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    return response
