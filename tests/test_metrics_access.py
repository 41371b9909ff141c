"""GET /metrics: open to a scraper on the private network, or behind RECPLAY_METRICS_TOKEN when it is set (nginx
never exposes it: tests/test_nginx.py)."""

from __future__ import annotations

import dataclasses

from tasks.access import mint_token
from tasks.settings import get_settings


def test_metrics_are_open_without_a_token_and_need_it_when_one_is_set(data_dir):
    from api import create_app

    open_app = create_app({"TESTING": True}).test_client()
    assert open_app.get("/metrics").status_code == 200
    guarded = create_app({"TESTING": True, "RECPLAY_SETTINGS": dataclasses.replace(
        get_settings(), metrics_token="scrape-me-0123456789")}).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic c2NyYXBlLW1l"},
                    {"Authorization": f"Bearer {mint_token(get_settings(), 'owner', 600)}"}):
        refused = guarded.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="recplay-metrics"'
        assert b"recplay_" not in refused.data
    allowed = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
    assert allowed.status_code == 200
    assert b"recplay_redis_up" in allowed.data
