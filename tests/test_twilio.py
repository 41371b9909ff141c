"""Twilio as the provider: HTTP Basic with an API key or the auth token, mp3 by default, resolution of a
recording from its CallSid, "not ready yet" 404s retried, 429 backed off, credentials kept on Twilio's host.

Twilio is a stand-in on loopback (tests/twilio_standin.py) reached through RECPLAY_TWILIO_API_BASE; downloads
run in a real worker process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog.queries import Catalog
from tasks.media.http import credentials_for, is_twilio_url
from tasks.media.twilio import with_format
from tasks.settings import get_settings, load_settings, reset_settings
from tests.conftest import Api, assert_quiescent
from tests.provider import make_wav
from tests.twilio_standin import (
    ACCOUNT_SID,
    API_KEY,
    API_SECRET,
    AUTH_TOKEN,
    Media,
    TwilioStandIn,
    basic,
    mp3_bytes,
    recording_sid,
)

CALL = "CA" + "a" * 32


@pytest.fixture
def twilio(data_dir: Path, provider: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Start the stand-in and point the environment at it; returns (stand-in, api_for) for the given
    credentials ("api_key" or "auth_token") and extra environment."""
    started: list[TwilioStandIn] = []

    def setup(credentials: str = "api_key", **env: str) -> tuple[TwilioStandIn, Callable[[str], Api]]:
        pair = (API_KEY, API_SECRET) if credentials == "api_key" else (ACCOUNT_SID, AUTH_TOKEN)
        standin = TwilioStandIn(pair).start()
        started.append(standin)
        monkeypatch.setenv("RECPLAY_TWILIO_API_BASE", standin.base)
        monkeypatch.setenv("RECPLAY_MEDIA_HOSTS", f"{provider.host},{standin.host}")
        monkeypatch.setenv("RECPLAY_INTERNAL_MEDIA_HOSTS", f"{provider.host},{standin.host}")
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        if credentials == "api_key":
            monkeypatch.setenv("TWILIO_API_KEY", API_KEY)
            monkeypatch.setenv("TWILIO_API_SECRET", API_SECRET)
        else:
            monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        from api import create_app

        client = create_app({"TESTING": True}).test_client()
        return standin, lambda business_id: Api(client, business_id)

    yield setup
    for standin in started:
        standin.stop()


def test_credentials_go_only_to_twilio_over_https_or_to_the_configured_api_base(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("RECPLAY_TWILIO_API_BASE", "http://127.0.0.1:8999/")
    settings = load_settings()
    assert settings.twilio_api_base == "http://127.0.0.1:8999"
    media = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(1)}"
    assert credentials_for("https://api.twilio.com" + media, settings) == (ACCOUNT_SID, AUTH_TOKEN)
    assert credentials_for("http://127.0.0.1:8999" + media, settings) == (ACCOUNT_SID, AUTH_TOKEN)
    assert credentials_for("http://api.twilio.com" + media, settings) is None  # never in clear text
    assert credentials_for("http://127.0.0.1:9000" + media, settings) is None
    assert credentials_for("https://storage.example.com/x.mp3", settings) is None
    monkeypatch.setenv("TWILIO_API_KEY", API_KEY)
    monkeypatch.setenv("TWILIO_API_SECRET", API_SECRET)
    assert credentials_for("https://api.twilio.com" + media, load_settings()) == (API_KEY, API_SECRET)
    assert is_twilio_url(None, settings) is False


def test_a_recording_url_without_extension_gets_the_configured_format(monkeypatch):
    settings = load_settings()
    assert settings.twilio_format == "mp3"
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(7)}"
    assert with_format(url, settings) == url + ".mp3"
    assert with_format(url + ".wav", settings) == url + ".wav"
    assert with_format(url + "?Download=true", settings) == url + ".mp3?Download=true"
    monkeypatch.setenv("RECPLAY_TWILIO_FORMAT", "wav")
    assert with_format(url, load_settings()) == url + ".wav"
    monkeypatch.setenv("RECPLAY_TWILIO_FORMAT", "ogg")
    with pytest.raises(Exception, match="RECPLAY_TWILIO_FORMAT must be one of mp3, wav"):
        load_settings()


def test_registering_by_call_sid_needs_twilio_and_matches_the_resolved_url(twilio, api_for):
    unconfigured = api_for("biz")
    answer = unconfigured.client.put(f"/api/recordings/{CALL}", json={"provider": "twilio"},
                                     headers=unconfigured.headers)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (422, "twilio_not_configured")
    bad = unconfigured.client.put(f"/api/recordings/{CALL}", json={"provider": "sip"},
                                  headers=unconfigured.headers)
    assert (bad.status_code, bad.get_json()["error"]["code"]) == (400, "invalid_body")
    no_url = unconfigured.client.put(f"/api/recordings/{CALL}", json={}, headers=unconfigured.headers)
    assert no_url.status_code == 400

    standin, make_api = twilio()
    api = make_api("biz")
    first = api.client.put(f"/api/recordings/{CALL}", json={"provider": "twilio"}, headers=api.headers)
    assert (first.status_code, first.get_json()["status"]) == (201, "new")
    again = api.client.put(f"/api/recordings/{CALL}", json={"provider": "twilio"}, headers=api.headers)
    assert again.status_code == 200
    recording_url = standin.add_recording(CALL, 1, Media(mp3=mp3_bytes(), wav=make_wav(0.2)))
    named = api.register(CALL, recording_url, provider="twilio")  # what the status callback knows
    assert named.status_code == 200
    assert Catalog(get_settings()).get("biz", CALL).media_url == recording_url  # type: ignore[union-attr]
    other = api.register(CALL, recording_url.replace(recording_sid(1), recording_sid(2)))
    assert (other.status_code, other.get_json()["error"]["code"]) == (409, "conflict")
    assert standin.paths() == []  # registering never calls Twilio


def test_twilio_recordings_are_resolved_fetched_as_mp3_and_retried_while_not_ready(twilio, provider, procs):
    standin, make_api = twilio("api_key")
    procs.worker(concurrency=4)
    api = make_api("biz")
    # Given four calls: one plain, one whose media 404s twice right after the call, one still "processing"
    # at the first look, one answered 429 twice; and a fifth whose media redirects to signed storage.
    audio = {n: mp3_bytes(3000 + n) for n in range(1, 6)}
    calls = {n: "CA" + f"{n:x}" * 32 for n in range(1, 6)}
    storage_url = provider.add("/storage/re5.mp3", body=audio[5], content_type="audio/mpeg")
    standin.add_recording(calls[1], 1, Media(mp3=audio[1], wav=b""))
    standin.add_recording(calls[2], 2, Media(mp3=audio[2], wav=b"", not_found_first=2))
    standin.add_recording(calls[3], 3, Media(mp3=audio[3], wav=b""), processing_first=1)
    standin.add_recording(calls[4], 4, Media(mp3=audio[4], wav=b"", fail_first=[429, 429]))
    standin.add_recording(calls[5], 5, Media(mp3=b"", wav=b"", redirect_to=storage_url))

    for n in calls:
        assert api.client.put(f"/api/recordings/{calls[n]}", json={"provider": "twilio"},
                              headers=api.headers).status_code == 201
        assert api.fetch(calls[n]).status_code == 202
    done = {n: api.wait_status(calls[n], {"ready", "failed"}, 60) for n in calls}

    assert {n: body["status"] for n, body in done.items()} == dict.fromkeys(calls, "ready")
    assert {n: body["attempts"] for n, body in done.items()} == {1: 1, 2: 3, 3: 2, 4: 3, 5: 1}
    for n in calls:
        assert api.client.get(done[n]["stream_url"]).data == audio[n]
        assert done[n]["content_type"] == "audio/mpeg"
        media_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(n)}.mp3"
        assert Catalog(get_settings()).get("biz", calls[n]).media_url == standin.base + media_path  # type: ignore[union-attr]
    key_auth = basic(API_KEY, API_SECRET)
    assert set(standin.auth_of("/")) == {key_auth}
    assert len(standin.auth_of(f"/Calls/{calls[3]}/Recordings.json")) == 2
    assert len(standin.auth_of(f"/Recordings/{recording_sid(2)}.mp3")) == 3
    assert provider.auth_headers["/storage/re5.mp3"] == [None]  # never sent to another host
    assert provider.requests.get("/storage/re5.mp3") == 1
    # 429 without Retry-After backs off: RECPLAY_RETRY_BACKOFF_SECONDS=0.2, doubling, jitter at least 0.8.
    times = standin.times[f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(4)}.mp3"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.8 * 0.2
    assert times[2] - times[1] >= 0.8 * 0.4
    assert_quiescent()


def test_with_the_auth_token_wav_is_fetched_and_old_or_absent_recordings_fail_at_once(twilio, procs):
    standin, make_api = twilio("auth_token", RECPLAY_TWILIO_FORMAT="wav",
                               RECPLAY_TWILIO_NOT_READY_SECONDS="0")
    procs.worker(concurrency=2)
    api = make_api("biz")
    wav = make_wav(0.3)
    calls = {n: "CA" + f"{n:x}" * 32 for n in range(1, 5)}
    url1 = standin.add_recording(calls[1], 1, Media(mp3=b"", wav=wav))
    url2 = standin.add_recording(calls[2], 2, Media(mp3=b"", wav=wav, not_found_first=5))
    standin.add_recording(calls[3], 3, Media(mp3=b"", wav=b""), status="absent")

    assert api.register(calls[1], url1, provider="twilio").status_code == 201  # as the status callback does
    assert api.register(calls[2], url2).status_code == 201  # a Twilio URL is a Twilio recording either way
    for n in (3, 4):  # 4: Twilio lists no recording for the call at all
        assert api.client.put(f"/api/recordings/{calls[n]}", json={"provider": "twilio"},
                              headers=api.headers).status_code == 201
    for n in calls:
        api.fetch(calls[n])
    done = {n: api.wait_status(calls[n], {"ready", "failed"}, 60) for n in calls}

    assert done[1]["status"] == "ready" and done[1]["content_type"] == "audio/wav"
    assert api.client.get(done[1]["stream_url"]).data == wav
    assert standin.auth_of(f"/Recordings/{recording_sid(1)}.wav") == [basic(ACCOUNT_SID, AUTH_TOKEN)]
    assert (done[2]["status"], done[2]["attempts"]) == ("failed", 1)
    assert done[2]["error"] == "provider answered 404"
    assert (done[3]["status"], done[3]["attempts"]) == ("failed", 1)
    assert done[3]["error"] == "Twilio has no media for this call (recording absent)"
    assert (done[4]["status"], done[4]["attempts"]) == ("failed", 1)
    assert done[4]["error"] == "Twilio has no completed recording for this call yet (0 listed) after 0s"
    assert_quiescent()


def test_wrong_twilio_credentials_fail_the_recording_with_the_answer(twilio, procs):
    standin, make_api = twilio("api_key", TWILIO_API_SECRET="not-the-secret")
    procs.worker(concurrency=1)
    api = make_api("biz")
    standin.add_recording(CALL, 1, Media(mp3=mp3_bytes(), wav=b""))
    api.client.put(f"/api/recordings/{CALL}", json={"provider": "twilio"}, headers=api.headers)
    api.fetch(CALL)
    body = api.wait_status(CALL, {"ready", "failed"}, 30)
    assert (body["status"], body["attempts"], body["error"]) == ("failed", 1, "provider answered 401")
    assert standin.auth_of("/") == [basic(API_KEY, "not-the-secret")]
    assert os.environ["TWILIO_API_SECRET"] == "not-the-secret"
