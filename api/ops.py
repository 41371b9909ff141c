"""Operations endpoints: liveness, readiness, and behind the admin token the ops overview and the Twilio account
each business is bound to."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import bearer_token, settings
from api.errors import ApiError
from tasks.access import verify_business_token
from tasks.catalog.queries import Catalog
from tasks.errors import AccessDenied
from tasks.media.store import media_store
from tasks.ops.overview import overview as queue_overview
from tasks.ops.tenancy import bind_twilio, twilio_binding
from tasks.slots.client import get_redis

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _check(probe: Any) -> dict[str, Any]:
    try:
        result = probe()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ok": True} if result is not False else {"ok": False, "error": "not writable"}


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis, the database and the media store all work; 503 naming the one that does not."""
    checks = {
        "redis": _check(lambda: get_redis().ping()),
        "database": _check(lambda: Catalog(settings()).ping()),
        "media_store": _check(lambda: media_store(settings()).is_writable()),
    }
    ok = all(c["ok"] for c in checks.values())
    response = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def require_admin() -> None:
    """Let only the admin bearer token through.

    Raises:
        ApiError: 404 while no admin token is configured (the ops API is off), 401 without the admin token,
            403 for a business token (it is valid, but not for this).
    """
    configured = settings().admin_token
    if not configured:
        raise ApiError(404, "not_found", "the ops API is disabled (RECPLAY_ADMIN_TOKEN is not set)")
    given = bearer_token()
    if given is None:
        raise ApiError(401, "unauthorized", "missing admin bearer token",
                       {"WWW-Authenticate": 'Bearer realm="recplay-ops"'})
    if hmac.compare_digest(given.encode(), configured.encode()):
        return
    try:
        verify_business_token(settings(), given)
    except AccessDenied:
        raise ApiError(401, "unauthorized", "not the admin token",
                       {"WWW-Authenticate": 'Bearer realm="recplay-ops"'}) from None
    raise ApiError(403, "forbidden", "a business token cannot use the ops API")


@bp.get("/api/ops/overview")
def ops_overview() -> Response:
    """The same JSON as ``recplay status --json``."""
    require_admin()
    response = jsonify(queue_overview(get_redis(), settings()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/api/ops/businesses/<business_id>/twilio", methods=["GET", "PUT"])
def ops_twilio_binding(business_id: str) -> Response:
    """GET: ``{"business_id", "account_sid"}`` (null when unbound). PUT ``{"account_sid": "AC..."}``: bind the
    business to that account (the same as ``recplay twilio-bind``); answers the binding and the previous one."""
    require_admin()
    if request.method == "PUT":
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or set(data) != {"account_sid"}:
            raise ApiError(400, "invalid_body", 'body must be {"account_sid": "AC..."}')
        binding = bind_twilio(settings(), business_id, data["account_sid"])
        body = binding.as_dict()
    else:
        binding = twilio_binding(settings(), business_id)
        body = {"business_id": binding.business_id, "account_sid": binding.account_sid}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
