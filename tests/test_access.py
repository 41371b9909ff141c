"""Every access rule of SPEC: tokens, ownership, stream tokens."""

from __future__ import annotations

import os
import time

import jwt
import pytest

from tasks import access
from tasks.access import mint_stream_token
from tests.conftest import SECRET, token_for
from tests.media import make_ready

VERBS = [
    ("GET", "/api/recordings/CA1"),
    ("PUT", "/api/recordings/CA1"),
    ("POST", "/api/recordings/CA1/fetch"),
    ("GET", "/api/recordings/CA1/stream"),
    ("HEAD", "/api/recordings/CA1/stream"),
    ("DELETE", "/api/recordings/CA1"),
    ("GET", "/api/recordings"),
]


@pytest.fixture
def client(app):
    make_ready("owner", "CA1", b"ID3" + b"\x00" * 997)
    return app.test_client()


def call(client, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "PUT":
        kwargs.setdefault("json", {"media_url": f"http://{os.environ['RECPLAY_MEDIA_HOSTS']}/x.mp3"})
    return client.open(path, method=method, headers=headers, **kwargs)


def error_code(response):
    return response.get_json()["error"]["code"]


@pytest.mark.parametrize(("method", "path"), VERBS)
def test_no_token_is_401(client, method, path):
    r = call(client, method, path)
    assert r.status_code == 401
    if method != "HEAD":
        assert error_code(r) == "unauthorized"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "", "Bearer"])
@pytest.mark.parametrize(("method", "path"), VERBS)
def test_a_garbage_token_is_401(client, method, path, token):
    r = client.open(path, method=method, headers={"Authorization": f"Bearer {token}"},
                    json={"media_url": "http://x/y"} if method == "PUT" else None)
    assert r.status_code == 401


@pytest.mark.parametrize(("method", "path"), VERBS)
def test_a_forged_token_is_401(client, method, path):
    forged = jwt.encode({"sub": "owner", "exp": int(time.time()) + 600}, "not-the-secret-key-at-all-0123456789",
                        algorithm="HS256")
    assert call(client, method, path, forged).status_code == 401


@pytest.mark.parametrize(("method", "path"), VERBS)
def test_an_expired_token_is_401(client, method, path):
    expired = jwt.encode({"sub": "owner", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    assert call(client, method, path, expired).status_code == 401


def test_a_token_signed_with_none_is_401(client):
    unsigned = jwt.encode({"sub": "owner", "exp": int(time.time()) + 600}, None, algorithm="none")
    assert call(client, "GET", "/api/recordings/CA1", unsigned).status_code == 401


@pytest.mark.parametrize(("method", "path"), [v for v in VERBS if v[1] != "/api/recordings"])
def test_another_business_recording_is_404_exactly_as_a_missing_one(client, method, path):
    other = token_for("intruder")
    theirs = call(client, method, path, other)
    if method == "PUT":
        # Registering the same call_sid under another business is that business's own recording.
        assert theirs.status_code == 201
        return
    missing = call(client, method, path.replace("CA1", "CA404"), other)
    assert theirs.status_code == 404
    assert missing.status_code == 404
    if method != "HEAD":
        assert theirs.get_json() == missing.get_json()


def test_another_business_sees_none_of_the_owners_recordings(client):
    r = call(client, "GET", "/api/recordings", token_for("intruder"))
    assert r.status_code == 200
    assert r.get_json() == {"items": [], "next_cursor": None}


def test_a_business_token_in_the_query_string_is_401(client):
    r = client.get(f"/api/recordings/CA1/stream?token={token_for('owner')}")
    assert r.status_code == 401
    assert error_code(r) == "unauthorized"


def test_a_business_token_in_the_query_string_is_refused_on_other_endpoints(client):
    r = client.get(f"/api/recordings/CA1?token={token_for('owner')}")
    assert r.status_code == 401


def test_a_stream_token_plays_its_own_recording(client, settings):
    tok = mint_stream_token(settings, "owner", "CA1")
    r = client.get(f"/api/recordings/CA1/stream?token={tok}")
    assert r.status_code == 200
    assert r.data.startswith(b"ID3")


def test_a_stream_token_for_another_recording_is_401(client, settings):
    make_ready("owner", "CA2", b"ID3" + b"\x01" * 100)
    tok = mint_stream_token(settings, "owner", "CA2")
    assert client.get(f"/api/recordings/CA1/stream?token={tok}").status_code == 401


def test_a_stream_token_is_not_a_business_token(client, settings):
    tok = mint_stream_token(settings, "owner", "CA1")
    assert call(client, "GET", "/api/recordings/CA1", tok).status_code == 401
    assert call(client, "DELETE", "/api/recordings/CA1", tok).status_code == 401


def test_an_expired_stream_token_is_401(client):
    tok = jwt.encode({"sub": "owner", "call_sid": "CA1", "typ": "stream", "exp": int(time.time()) - 1}, SECRET,
                     algorithm="HS256")
    assert client.get(f"/api/recordings/CA1/stream?token={tok}").status_code == 401


def test_a_token_whose_subject_is_not_a_valid_id_is_401(client):
    tok = jwt.encode({"sub": "../etc", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert call(client, "GET", "/api/recordings", tok).status_code == 401


def test_any_valid_business_exists_as_soon_as_a_token_names_it(client):
    r = call(client, "GET", "/api/recordings", token_for("brand-new_biz"))
    assert r.status_code == 200
    assert r.get_json()["items"] == []


def test_the_api_refuses_to_start_without_a_secret_key(monkeypatch, data_dir):
    from api import create_app
    from tasks.errors import ConfigError
    from tasks.settings import reset_settings

    monkeypatch.delenv("RECPLAY_SECRET_KEY")
    reset_settings()
    with pytest.raises(ConfigError, match="RECPLAY_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("RECPLAY_DEV", "1")
    reset_settings()
    assert create_app().extensions["recplay.settings"].dev is True


def test_a_token_used_again_after_its_expiry_is_401_though_its_check_was_kept(client, monkeypatch):
    """The API keeps the claims of a token it has checked (a player sends the same one with every request), and
    checks the expiry again on every use."""
    token = token_for("owner", ttl=60)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/recordings/CA1", headers=headers).status_code == 200
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(access.time, "time", lambda: float(expires))  # the second it expires, as PyJWT
    answer = client.get("/api/recordings/CA1", headers=headers)
    assert (answer.status_code, answer.get_json()["error"]["message"]) == (401, "token expired")
    # The same claims signed with another key are not taken for the kept ones.
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another key of at least thirty-two bytes", algorithm="HS256")
    monkeypatch.setattr(access.time, "time", lambda: float(expires) - 30)
    assert client.get("/api/recordings/CA1", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert client.get("/api/recordings/CA1", headers=headers).status_code == 200
