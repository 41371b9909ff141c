"""Scoped tokens: `play` lists, reads, fetches and streams; `manage` also registers and deletes; a token without
the claim (a back end's) may do everything; any other scope may do nothing."""

from __future__ import annotations

import os
import time
from typing import Any

import jwt
import pytest

from tasks.access import MANAGE, PLAY, mint_token
from tasks.settings import get_settings
from tests.conftest import SECRET, run_cli
from tests.media import make_ready

PLAYING = [
    ("GET", "/api/recordings"),
    ("GET", "/api/recordings/CA1"),
    ("POST", "/api/recordings/CA1/fetch"),
    ("GET", "/api/recordings/CA1/stream"),
    ("HEAD", "/api/recordings/CA1/stream"),
]
MANAGING = [
    ("PUT", "/api/recordings/CA2"),
    ("DELETE", "/api/recordings/CA1"),
]


@pytest.fixture
def client(app: Any) -> Any:
    make_ready("owner", "CA1", b"ID3" + b"\x00" * 997)
    return app.test_client()


def _call(client: Any, method: str, path: str, token: str) -> Any:
    body = {"json": {"media_url": f"http://{os.environ['RECPLAY_MEDIA_HOSTS']}/x.mp3"}} if method == "PUT" else {}
    return client.open(path, method=method, headers={"Authorization": f"Bearer {token}"}, **body)


def _token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "owner", "iat": now, "exp": now + 600, **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(("method", "path"), PLAYING)
@pytest.mark.parametrize("scope", [PLAY, MANAGE, None])
def test_every_scope_may_play(client, method, path, scope):
    answer = _call(client, method, path, mint_token(get_settings(), "owner", 600, scope=scope))
    assert answer.status_code in (200, 202), (answer.status_code, answer.get_data())


@pytest.mark.parametrize(("method", "path"), MANAGING)
@pytest.mark.parametrize("scope", [MANAGE, None])
def test_manage_and_no_claim_may_register_and_delete(client, method, path, scope):
    answer = _call(client, method, path, mint_token(get_settings(), "owner", 600, scope=scope))
    assert answer.status_code == (201 if method == "PUT" else 204)


@pytest.mark.parametrize(("method", "path"), MANAGING)
def test_a_play_token_may_not_register_or_delete(client, method, path):
    answer = _call(client, method, path, mint_token(get_settings(), "owner", 600, scope=PLAY))
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "forbidden"
    # Nothing changed: CA1 is still there and CA2 was not registered.
    listed = _call(client, "GET", "/api/recordings", mint_token(get_settings(), "owner", 600))
    assert [item["call_sid"] for item in listed.get_json()["items"]] == ["CA1"]


@pytest.mark.parametrize("scope", ["admin", "Play", "play manage", ["play", "manage"], 1, ""])
@pytest.mark.parametrize(("method", "path"), [*PLAYING, *MANAGING])
def test_any_other_scope_may_do_nothing(client, method, path, scope):
    answer = _call(client, method, path, _token(scope=scope))
    assert answer.status_code == 403, (scope, method, path)
    if method != "HEAD":
        assert answer.get_json()["error"]["code"] == "forbidden"


def test_a_play_token_of_another_business_is_still_404(client):
    other = mint_token(get_settings(), "intruder", 600, scope=PLAY)
    assert _call(client, "GET", "/api/recordings/CA1", other).status_code == 404


def test_the_cli_mints_scoped_tokens_and_refuses_unknown_scopes(data_dir):
    for scope in (PLAY, MANAGE):
        token = run_cli("token", "acme", "--scope", scope, "--ttl", "60").stdout.strip()
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == ("acme", scope, 60)
    plain = jwt.decode(run_cli("token", "acme").stdout.strip(), SECRET, algorithms=["HS256"])
    assert "scope" not in plain
    refused = run_cli("token", "acme", "--scope", "admin", check=False)
    assert refused.returncode == 2
    assert "admin" in refused.stderr
