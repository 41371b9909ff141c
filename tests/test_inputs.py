"""Every bad input of SPEC gets its status and error code, and changes nothing."""

from __future__ import annotations

import pytest

from tasks.slots import keys
from tests.conftest import token_for


@pytest.fixture
def api(api_for, provider):
    return api_for("biz1")


def snapshot(api, rclient):
    listing = api.client.get("/api/recordings", headers=api.headers).get_json()
    redis_keys = sorted(k for k in rclient.keys("recplay:*") if k != keys.BUSINESSES)
    return listing, redis_keys, rclient.llen("recplay")


def code(r):
    return r.get_json()["error"]["code"]


BAD_IDS = ["-starts-with-dash", "_underscore", "a" * 65, "has space", "dot.dot", "semi;colon", "ümlaut", "a/b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_call_sid_is_400_invalid_id_on_every_endpoint(api, provider, rclient, bad):
    from urllib.parse import quote

    url = provider.add("/biz1/a.wav", body=b"RIFF....")
    before = snapshot(api, rclient)
    sid = quote(bad, safe="")
    for method, path in [("PUT", f"/api/recordings/{sid}"), ("GET", f"/api/recordings/{sid}"),
                         ("POST", f"/api/recordings/{sid}/fetch"), ("GET", f"/api/recordings/{sid}/stream"),
                         ("DELETE", f"/api/recordings/{sid}")]:
        r = api.client.open(path, method=method, headers=api.headers,
                            json={"media_url": url} if method == "PUT" else None)
        if "/" in bad:
            assert r.status_code == 404, (method, path)  # a slash never reaches a view
        else:
            assert r.status_code == 400, (method, path, r.data)
            assert code(r) == "invalid_id"
    assert snapshot(api, rclient) == before


def test_the_longest_valid_call_sid_is_accepted(api, provider):
    assert api.register("a" * 64, provider.add("/biz1/x.wav", body=b"x")).status_code == 201


@pytest.mark.parametrize("url", [
    "http://evil.example.com/a.mp3",
    "http://127.0.0.1:1/a.mp3",  # right host, wrong port
    "http://localhost/a.mp3",
])
def test_a_media_host_off_the_allowlist_is_422(api, rclient, url):
    before = snapshot(api, rclient)
    r = api.register("CA1", url)
    assert r.status_code == 422
    assert code(r) == "media_host_not_allowed"
    assert snapshot(api, rclient) == before


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher", "javascript"])
def test_a_scheme_other_than_http_or_https_is_422(api, provider, rclient, scheme):
    before = snapshot(api, rclient)
    r = api.register("CA1", f"{scheme}://{provider.host}/biz1/a.mp3")
    assert r.status_code == 422
    assert code(r) == "media_host_not_allowed"
    assert snapshot(api, rclient) == before


def test_a_body_over_64_kib_is_413(api, provider, rclient):
    before = snapshot(api, rclient)
    big = '{"media_url": "' + provider.url("/biz1/a.mp3") + '", "pad": "' + "x" * (64 * 1024) + '"}'
    r = api.client.put("/api/recordings/CA1", data=big, content_type="application/json", headers=api.headers)
    assert r.status_code == 413
    assert code(r) == "payload_too_large"
    assert snapshot(api, rclient) == before


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"a string"', b"", b'{"media_url": 5}',
                                  b'{"duration_seconds": 3}', b'{"media_url": ""}'])
def test_a_malformed_body_is_400_invalid_body(api, rclient, body):
    before = snapshot(api, rclient)
    r = api.client.put("/api/recordings/CA1", data=body, content_type="application/json", headers=api.headers)
    assert r.status_code == 400
    assert code(r) == "invalid_body"
    assert snapshot(api, rclient) == before


@pytest.mark.parametrize("duration", [-1, "ten", True, [1]])
def test_a_bad_duration_is_400_invalid_body(api, provider, rclient, duration):
    before = snapshot(api, rclient)
    r = api.register("CA1", provider.url("/biz1/a.mp3"), duration_seconds=duration)
    assert r.status_code == 400
    assert code(r) == "invalid_body"
    assert snapshot(api, rclient) == before


def test_registering_the_same_recording_again_is_200_and_changes_nothing(api, provider, rclient):
    url = provider.url("/biz1/a.mp3")
    first = api.register("CA1", url, duration_seconds=12)
    assert first.status_code == 201
    assert first.headers["Location"].endswith("/api/recordings/CA1")
    before = snapshot(api, rclient)
    again = api.register("CA1", url, duration_seconds=12)
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert snapshot(api, rclient) == before


def test_registering_another_media_url_is_409_and_keeps_the_first(api, provider, rclient):
    api.register("CA1", provider.url("/biz1/a.mp3"))
    before = snapshot(api, rclient)
    r = api.register("CA1", provider.url("/biz1/other.mp3"))
    assert r.status_code == 409
    assert code(r) == "conflict"
    assert snapshot(api, rclient) == before


def test_a_new_recording_has_the_full_status_object(api, provider):
    body = api.register("CA1", provider.url("/biz1/a.mp3"), duration_seconds=61.5).get_json()
    assert set(body) == {"call_sid", "status", "attempts", "error", "size_bytes", "content_type",
                         "duration_seconds", "stream_url", "created_at", "channels", "peaks_url"}
    assert body["status"] == "new"
    assert body["attempts"] == 0
    assert body["stream_url"] is None
    assert body["duration_seconds"] == 61.5


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "limit=-1", "cursor=%%%", "cursor=MA"])
def test_bad_list_parameters_are_400(api, query):
    r = api.client.get(f"/api/recordings?{query}", headers=api.headers)
    assert r.status_code == 400
    assert code(r) in {"invalid_limit", "invalid_cursor"}


def test_the_list_is_newest_first_and_pages_with_the_cursor(api, provider):
    for i in range(7):
        api.register(f"CA{i}", provider.url(f"/biz1/{i}.mp3"))
    seen, cursor = [], None
    while True:
        q = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(f"/api/recordings?{q}", headers=api.headers).get_json()
        seen += [item["call_sid"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"CA{i}" for i in reversed(range(7))]


def test_the_list_limit_is_capped_at_200(api, provider):
    r = api.client.get("/api/recordings?limit=200", headers=api.headers)
    assert r.status_code == 200


def test_an_unknown_route_is_a_json_404(api):
    r = api.client.get("/api/nothing-here", headers=api.headers)
    assert r.status_code == 404
    assert code(r) == "not_found"


def test_a_wrong_method_is_a_json_405(api):
    r = api.client.patch("/api/recordings/CA1", headers=api.headers)
    assert r.status_code == 405
    assert code(r) == "method_not_allowed"


def test_the_other_business_token_cannot_see_the_recording_list_items(api, provider):
    api.register("CA1", provider.url("/biz1/a.mp3"))
    other = api.client.get("/api/recordings", headers={"Authorization": f"Bearer {token_for('biz2')}"})
    assert other.get_json()["items"] == []


def test_the_player_page_and_its_modules_are_served_and_revalidated(app):
    client = app.test_client()
    with client.get("/") as page:
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-cache"
    with client.get("/static/app.js") as script:
        assert script.status_code == 200
        assert script.headers["Cache-Control"] == "no-cache"
        etag = script.headers["ETag"]
    with client.get("/static/app.js", headers={"If-None-Match": etag}) as again:
        assert again.status_code == 304


@pytest.mark.parametrize("path", ["/static/package.json", "/static/tests/api.test.js", "/static/../setup.cfg",
                                  "/static/nothing.js"])
def test_only_the_players_assets_are_served(app, path):
    assert app.test_client().get(path).status_code == 404
