"""Per-business request limits on the API (api/limits.py: sliding window counters in the test session's Redis).

The windows are fixed on Redis's clock (a 1-second window is a whole second of Redis TIME), so the tests that
need a request to land in some part of a window wait on that clock, then check it has not moved past that part.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from api.recordings import RETRY_AFTER_SECONDS
from tasks.catalog.queries import Catalog
from tasks.errors import ConfigError
from tasks.settings import get_settings, reset_settings
from tasks.slots.client import get_redis, now_ms
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
    assert refused.get_json()["error"]["message"] == "too many requests: 5 per 1 minute"
    # Until the window ends, and then the part of the next one in which these 5 still weigh 5 * (1 - 12/60) = 4.
    assert 1 <= int(refused.headers["Retry-After"]) <= 72
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
    streamed = [api.stream("CA1", {"Range": f"bytes={i}-"}) for i in range(9)]
    assert [answer.status_code for answer in streamed] == [202] * 8 + [429]
    # A passing request's answer is the API's own: its Retry-After says when to poll, not when a window ends.
    assert streamed[0].headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert not [name for name, _ in streamed[0].headers.items() if name.lower().startswith("x-ratelimit")]


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




def _wait_for_clock(predicate: Callable[[int], bool], what: str, timeout: float = 3) -> int:
    """Redis's clock (ms) once ``predicate`` holds for it: the clock the limits' windows are fixed on."""
    clock = get_redis()
    found: list[int] = []

    def check() -> bool:
        found[:] = [now_ms(clock)]
        return predicate(found[0])

    wait_for(check, timeout, what, interval=0.005)
    return found[0]


def test_a_request_must_fit_every_limit_of_its_string_and_is_counted_in_each_only_when_it_does(limited):
    api = limited("3/second;5/minute", "")("biz")
    assert _codes(api, 3) == [200] * 3
    refused = api.client.get("/api/recordings", headers=api.headers)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["message"] == "too many requests: 3 per 1 second"
    # Two seconds later the per-second limit has forgotten them; the per-minute one has not.
    second = now_ms(get_redis()) // 1000
    _wait_for_clock(lambda now: now // 1000 >= second + 2, "the per-second windows to pass")
    # The refused request did not count for the minute: exactly 5 pass in it.
    assert _codes(api, 2) == [200, 200]
    refused = api.client.get("/api/recordings", headers=api.headers)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["message"] == "too many requests: 5 per 1 minute"
    # The 5 weigh more than 4 until 12 s into the next minute (less the 2 or 3 s this test may be into it).
    assert int(refused.headers["Retry-After"]) >= 9


def test_the_previous_window_counts_by_the_share_a_window_ending_now_still_covers(limited):
    # Given 2/second, and in one window (second k) 2 requests that pass and 3 that are refused
    api = limited("2/second", "")("biz")
    start = _wait_for_clock(lambda now: now % 1000 < 300, "a second to begin")
    k = start // 1000
    assert _codes(api, 5) == [200, 200, 429, 429, 429]
    assert now_ms(get_redis()) // 1000 == k, "the first requests spilled into the next second"
    # In the first half of second k+1 the 2 of second k still weigh more than 1: refused (a fixed window would
    # let it through), until half of it has gone.
    _wait_for_clock(lambda now: now // 1000 == k + 1, "the next second")
    refused = api.client.get("/api/recordings", headers=api.headers)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert now_ms(get_redis()) < (k + 1) * 1000 + 500, "the request left the first half of the second"
    # Past half of it they weigh less than 1: one request passes, the next one is over again. Had the refused
    # requests counted (5 in second k), none would pass before 80 % of it.
    _wait_for_clock(lambda now: now >= (k + 1) * 1000 + 550, "the second half of the second")
    assert _codes(api, 2) == [200, 429]
    assert now_ms(get_redis()) < (k + 1) * 1000 + 800, "the requests left the part of the second they test"


def test_retry_after_is_the_time_until_the_sliding_window_lets_a_request_through(limited):
    hour = 3_600_000
    api = limited("2/hour", "")("biz")
    # Both requests in the same hour of Redis's clock (it is almost never about to turn).
    _wait_for_clock(lambda now: now % hour < hour - 2000, "the hour to turn")
    assert _codes(api, 2) == [200, 200]
    before = now_ms(get_redis())
    refused = api.client.get("/api/recordings", headers=api.headers)
    after = now_ms(get_redis())
    assert refused.status_code == 429
    # The 2 of this hour weigh 2 * (1 - elapsed) in the next one: a request fits once half of it has passed.
    start = before // hour * hour
    ready = start + hour + hour // 2
    assert int(refused.headers["Retry-After"]) in {math.ceil((ready - now) / 1000) for now in (before, after)}


def test_the_counters_are_one_key_per_limit_under_the_callers_hash_tag_kept_two_windows_at_most(limited):
    api = limited("5/minute;100/hour", "")("biz")
    assert _codes(api, 1) == [200]
    client = get_redis()
    keys = sorted(client.keys("recplay:limits:*"))
    assert keys == ["recplay:limits:api:{business:biz}:100/3600", "recplay:limits:api:{business:biz}:5/60"]
    minute, hour = (client.pttl(key) for key in reversed(keys))
    assert 60_000 < minute <= 120_000
    assert 3_600_000 < hour <= 7_200_000


def test_when_the_limit_storage_fails_it_is_said_once_not_per_request(limited, caplog):
    down = f"redis://127.0.0.1:{free_port()}/0"
    api = limited("1/minute", "", RECPLAY_RATE_LIMIT_STORAGE_URL=down)("biz")
    with caplog.at_level(logging.WARNING, logger="api.limits"):
        assert _codes(api, 3) == [200] * 3
    assert len([r for r in caplog.records if r.name == "api.limits"]) == 1


def test_a_limit_that_does_not_parse_stops_the_app_from_starting(limited):
    with pytest.raises(ConfigError, match="RECPLAY_STREAM_RATE_LIMIT"):
        limited("5/minute", "5 a minute")


def test_a_sentinel_storage_url_names_the_master_and_its_sentinels():
    from api.limits import storage_client

    client = storage_client("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/recmaster")
    pool = client.connection_pool
    assert pool.service_name == "recmaster"
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"], s["password"]) for s in sentinels] == [
        ("10.0.0.1", 26379, "pw"), ("10.0.0.2", 26380, "pw")]
    assert pool.connection_kwargs["password"] == "pw"
