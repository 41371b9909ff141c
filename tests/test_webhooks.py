"""Twilio's recording status callback: signatures checked with the twilio package's RequestValidator, the
public URL rebuilt behind a proxy, recordings registered once (fetched at once with RECPLAY_PREFETCH=1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog.queries import Catalog
from tasks.settings import get_settings, reset_settings
from tests.conftest import Api, assert_quiescent, run_threads
from tests.twilio_standin import (
    ACCOUNT_SID,
    API_KEY,
    API_SECRET,
    AUTH_TOKEN,
    Media,
    TwilioStandIn,
    mp3_bytes,
    recording_sid,
    sign,
    status_callback_form,
)

CALL = "CA" + "b" * 32
PATH = "/webhooks/twilio/biz/recordings"


def callback_form(recording_url: str, status: str = "completed", call_sid: str = CALL,
                  n: int = 1) -> dict[str, str]:
    return status_callback_form(recording_url, call_sid, status=status, n=n)


class Hooks:
    def __init__(self, client: Any, standin: TwilioStandIn) -> None:
        self.client, self.standin = client, standin

    def post(self, form: dict[str, str], signature: str | None, path: str = PATH,
             base: str = "http://localhost", headers: dict[str, str] | None = None) -> Any:
        sent = dict(headers or {})
        if signature is not None:
            sent["X-Twilio-Signature"] = signature
        return self.client.post(path, data=form, headers=sent, base_url=base)

    def signed(self, form: dict[str, str], path: str = PATH) -> Any:
        return self.post(form, sign(f"http://localhost{path}", form), path)


@pytest.fixture
def hooks(data_dir: Path, provider: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Hooks]]:
    standin = TwilioStandIn((API_KEY, API_SECRET)).start()

    def make(**env: str) -> Hooks:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("TWILIO_API_KEY", API_KEY)
        monkeypatch.setenv("TWILIO_API_SECRET", API_SECRET)
        monkeypatch.setenv("RECPLAY_TWILIO_API_BASE", standin.base)
        monkeypatch.setenv("RECPLAY_MEDIA_HOSTS", f"{provider.host},{standin.host}")
        monkeypatch.setenv("RECPLAY_INTERNAL_MEDIA_HOSTS", f"{provider.host},{standin.host}")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        from api import create_app

        return Hooks(create_app({"TESTING": True}).test_client(), standin)

    yield make
    standin.stop()


def _rows() -> list[Any]:
    return Catalog(get_settings()).page("biz", 50, None)


def test_a_completed_callback_registers_the_recording_once_however_often_it_comes(hooks):
    h = hooks()
    url = h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    form = callback_form(url)
    for _ in range(3):
        assert h.signed(form).status_code == 204
    rows = _rows()
    assert len(rows) == 1
    rec = rows[0]
    assert (rec.call_sid, rec.media_url, rec.provider, rec.duration_seconds, rec.state) == (
        CALL, url, "twilio", 4.0, "new")
    # A second recording of the same call (recorded in parts) keeps the first.
    second = h.standin.add_recording(CALL, 2, Media(mp3=b"", wav=b""))
    assert h.signed(callback_form(second, n=2)).status_code == 204
    assert [r.media_url for r in _rows()] == [url]
    assert h.standin.paths() == []  # without prefetch nothing is downloaded


def test_callbacks_that_are_not_completed_are_acknowledged_and_ignored(hooks):
    h = hooks()
    url = h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    for status in ("in-progress", "absent", "failed"):
        assert h.signed(callback_form(url, status=status)).status_code == 204
    assert _rows() == []


def test_a_missing_or_wrong_signature_is_refused_with_403(hooks):
    h = hooks()
    url = h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    form = callback_form(url)
    good = sign(f"http://localhost{PATH}", form)
    refused = [
        h.post(form, None),
        h.post(form, ""),
        h.post(form, sign(f"http://localhost{PATH}", form, token="another-account-token")),
        h.post({**form, "RecordingUrl": url.replace(recording_sid(1), recording_sid(9))}, good),  # tampered
        h.post(form, good, path="/webhooks/twilio/other-biz/recordings"),  # signed for another business
        h.post(form, sign(f"https://localhost{PATH}", form)),  # signed for another URL
    ]
    assert [r.status_code for r in refused] == [403] * 6
    assert {r.get_json()["error"]["code"] for r in refused} == {"forbidden"}
    assert _rows() == []
    assert h.post(form, good).status_code == 204


def test_without_an_auth_token_no_callback_is_accepted(hooks, monkeypatch):
    h = hooks()
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    reset_settings()
    from api import create_app

    client = create_app({"TESTING": True}).test_client()
    url = h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    form = callback_form(url)
    signature = sign(f"http://localhost{PATH}", form)
    answer = client.post(PATH, data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 403
    assert _rows() == []


def test_behind_a_trusted_proxy_the_public_url_is_what_twilio_signed(hooks):
    public = "https://recplay.example.com"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "recplay.example.com",
                 "X-Forwarded-Port": "443", "X-Forwarded-For": "203.0.113.9"}
    direct = hooks()
    url = direct.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    form = callback_form(url)
    # Not trusting the proxy, the app sees its own URL: Twilio's signature over the public one fails.
    assert direct.post(form, sign(public + PATH, form), headers=forwarded).status_code == 403

    proxied = hooks(RECPLAY_TRUST_PROXY="1")
    assert proxied.post(form, sign("http://localhost" + PATH, form), headers=forwarded).status_code == 403
    assert proxied.post(form, sign(public + PATH, form), headers=forwarded).status_code == 204
    assert len(_rows()) == 1


def test_invalid_call_sids_and_media_hosts_are_refused_after_the_signature(hooks):
    h = hooks()
    bad_call = callback_form(h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b"")), call_sid="../etc")
    assert h.signed(bad_call).status_code == 400
    off_list = callback_form("https://evil.example.com/2010-04-01/Accounts/AC1/Recordings/RE1")
    assert h.signed(off_list).status_code == 400
    assert h.post(off_list, None).status_code == 403  # unsigned: refused before anything is read
    assert h.signed(callback_form("x"), path="/webhooks/twilio/bad%20biz/recordings").status_code == 400
    assert _rows() == []


def test_a_recording_registered_by_call_sid_takes_the_url_from_its_callback(hooks):
    h = hooks()
    api = Api(h.client, "biz")
    created = h.client.put(f"/api/recordings/{CALL}", json={"provider": "twilio"}, headers=api.headers)
    assert created.status_code == 201
    url = h.standin.add_recording(CALL, 1, Media(mp3=b"", wav=b""))
    assert h.signed(callback_form(url)).status_code == 204
    assert [(r.call_sid, r.media_url) for r in _rows()] == [(CALL, url)]


def test_with_prefetch_concurrent_duplicate_callbacks_download_the_recording_once(hooks, procs):
    h = hooks(RECPLAY_PREFETCH="1")
    procs.worker(concurrency=4)
    audio = mp3_bytes(5000)
    url = h.standin.add_recording(CALL, 1, Media(mp3=audio, wav=b""))
    form = callback_form(url)
    codes = run_threads(8, lambda i: h.signed(form).status_code)
    assert codes == [204] * 8
    api = Api(h.client, "biz")
    body = api.wait_status(CALL, {"ready", "failed"}, 30)
    assert body["status"] == "ready", body
    assert body["content_type"] == "audio/mpeg"
    media = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid(1)}.mp3"
    assert h.standin.paths() == [media]
    assert api.client.get(body["stream_url"]).data == audio
    assert_quiescent()
