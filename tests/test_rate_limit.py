"""Per-business request limits on the API (flask-limiter, counters in the test session's Redis)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.catalog.queries import Catalog
from tasks.settings import get_settings, reset_settings
from tests.conftest import Api, free_port, run_threads, token_for, wait_for
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, sign, status_callback_form


@pytest.fixture
def limited(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Callable[[str], Api]]:
    """An app with the given limits; returns api_for(business_id)."""

    def make(api: str, stream: str, **env: str) -> Callable[[str], Api]:
        monkeypatch.setenv("RECPLAY_RATE_LIMIT", api)
        monkeypatch.setenv("RECPLAY_STREAM_RATE_LIMIT", stream)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        from api import create_app

        client = create_app({"TESTING": True}).test_client()
        return lambda business_id: Api(client, business_id)

    return make


def _codes(api: Api, n: int, path: str = "/api/recordings") -> list[int]:
    return [api.client.get(path, headers=api.headers).status_code for _ in range(n)]


def test_a_business_over_its_limit_gets_429_with_retry_after_and_others_are_not_affected(limited):
    api_for = limited("5/minute", "50/minute")
    biz, other = api_for("biz"), api_for("other")
    assert _codes(biz, 5) == [200] * 5
    refused = biz.client.get("/api/recordings/CA1", headers=biz.headers)  # one counter for every endpoint
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert biz.client.put("/api/recordings/CA1", json={"media_url": "http://x/a.wav"},
                          headers=biz.headers).status_code == 429
    assert _codes(other, 5) == [200] * 5
    assert _codes(other, 1) == [429]
    assert biz.client.get("/healthz").status_code == 200  # only the recordings API is limited


def test_concurrent_requests_pass_exactly_up_to_the_limit(limited):
    api = limited("10/minute", "")("biz")
    codes = run_threads(24, lambda i: api.client.get("/api/recordings", headers=api.headers).status_code)
    assert sorted(codes) == [200] * 10 + [429] * 14


def test_the_stream_endpoint_has_its_own_higher_limit(limited, provider):
    api = limited("3/minute", "8/minute")("biz")
    url = provider.add("/biz/a.wav", body=b"RIFF")
    Catalog(get_settings()).register("biz", "CA1", url, None)
    assert _codes(api, 3) == [200] * 3
    assert _codes(api, 1) == [429]
    # A player's Range requests: the stream counter is separate from (and larger than) the API's.
    streamed = [api.stream("CA1", {"Range": f"bytes={i}-"}).status_code for i in range(9)]
    assert streamed == [202] * 8 + [429]


def test_a_stream_token_counts_for_its_business(limited, provider):
    from tasks.access import mint_stream_token

    api = limited("50/minute", "2/minute")("biz")
    Catalog(get_settings()).register("biz", "CA1", provider.add("/biz/a.wav", body=b"RIFF"), None)
    token = mint_stream_token(get_settings(), "biz", "CA1")
    by_query = [api.client.get(f"/api/recordings/CA1/stream?token={token}").status_code for _ in range(2)]
    assert by_query == [202, 202]
    assert api.stream("CA1").status_code == 429  # the same business, with its bearer token


def test_requests_without_a_valid_token_are_counted_per_client_address(limited):
    api_for = limited("4/minute", "")
    anonymous = Api(api_for("x").client, "x")
    anonymous.headers = {"Authorization": "Bearer not-a-token"}
    codes = [anonymous.client.get("/api/recordings", headers=anonymous.headers,
                                  environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code for _ in range(5)]
    assert codes == [401] * 4 + [429]
    other_address = anonymous.client.get("/api/recordings", headers=anonymous.headers,
                                          environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other_address.status_code == 401
    assert _codes(api_for("biz"), 1) == [200]


def test_after_retry_after_seconds_the_business_is_served_again(limited):
    api = limited("2/second", "")("biz")
    assert _codes(api, 2) == [200, 200]
    refused = api.client.get("/api/recordings", headers=api.headers)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 2
    wait_for(lambda: _codes(api, 1) == [200], wait + 2, "the window to let a request through", interval=0.2)


def test_empty_limits_disable_limiting_and_webhooks_are_never_limited(limited, provider, monkeypatch):
    api = limited("", "", TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)("biz")
    assert _codes(api, 30) == [200] * 30
    api = limited("1/minute", "1/minute")("biz")
    form = status_callback_form(provider.url("/2010-04-01/Accounts/AC1/Recordings/RE1"), "CA1")
    path = "/webhooks/twilio/biz/recordings"
    signature = sign(f"http://localhost{path}", form)
    codes = [api.client.post(path, data=form, headers={"X-Twilio-Signature": signature}).status_code
             for _ in range(3)]
    assert codes == [204] * 3


def test_when_the_limit_storage_is_down_requests_pass(limited):
    down = f"redis://127.0.0.1:{free_port()}/0"
    api = limited("1/minute", "1/minute", RECPLAY_RATE_LIMIT_STORAGE_URL=down)("biz")
    assert _codes(api, 3) == [200] * 3
    assert token_for("biz")
    assert get_settings().rate_limit_storage_url == down


