"""/healthz, /readyz and the admin-only /api/ops/overview."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tasks.access import mint_stream_token
from tests.conftest import free_port, run_cli, token_for

ADMIN = "admin-token-for-tests-0123456789"


def app_with(**changes):
    from api import create_app
    from tasks.settings import get_settings

    settings = dataclasses.replace(get_settings(), **changes)
    return create_app({"TESTING": True, "RECPLAY_SETTINGS": settings}).test_client()


def test_healthz_answers_ok(app):
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_names_each_check(app):
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {
        "redis": {"ok": True}, "database": {"ok": True}, "media_store": {"ok": True}}}


def test_readyz_is_503_naming_redis_when_redis_is_down(app, monkeypatch):
    from tasks.settings import reset_settings
    from tasks.slots.client import reset_redis

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_settings()
    reset_redis()
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"].startswith("ConnectionError")
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["media_store"] == {"ok": True}


def test_readyz_is_503_naming_the_media_store_when_it_cannot_be_written(data_dir):
    client = app_with(data_dir=Path("/dev/null/not-a-directory"))
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["checks"]["media_store"]["ok"] is False
    assert body["checks"]["redis"] == {"ok": True}


def test_the_ops_overview_is_off_without_an_admin_token(data_dir):
    client = app_with(admin_token=None)
    response = client.get("/api/ops/overview", headers={"Authorization": f"Bearer {token_for('biz')}"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("header", "status", "code"), [
    (None, 401, "unauthorized"),
    ("Bearer not-the-admin-token", 401, "unauthorized"),
    ("Basic " + ADMIN, 401, "unauthorized"),
    ("business", 403, "forbidden"),
    ("stream", 401, "unauthorized"),
])
def test_the_ops_overview_refuses_anything_but_the_admin_token(data_dir, header, status, code):
    from tasks.settings import get_settings

    client = app_with(admin_token=ADMIN)
    if header == "business":
        header = f"Bearer {token_for('biz')}"
    elif header == "stream":
        header = f"Bearer {mint_stream_token(get_settings(), 'biz', 'CA1')}"
    response = client.get("/api/ops/overview", headers={"Authorization": header} if header else {})
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_the_ops_overview_is_the_json_of_recplay_status(data_dir):
    run_cli("set-limit", "alpha", "3")
    run_cli("set-limit", "beta", "7")
    client = app_with(admin_token=ADMIN)
    response = client.get("/api/ops/overview", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200
    assert response.get_json() == json.loads(run_cli("status", "--json").stdout)
    assert [b["business_id"] for b in response.get_json()["businesses"]] == ["alpha", "beta"]
