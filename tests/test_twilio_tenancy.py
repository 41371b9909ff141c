"""Twilio tenancy: a business bound to its Twilio (sub)account gets recordings, CallSids and status callbacks of
that account only; credentials per account, the main account's for its subaccounts; and the webhook signature
checked against an answer computed here, by hand, from Twilio's documented algorithm.

Twilio is the stand-in (tests/twilio_standin.py) with a main account and subaccounts; downloads run in a real
worker; the binding is made with the real `recplay` CLI and the ops API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog.queries import Catalog, dispose_engines
from tasks.settings import get_settings, reset_settings
from tests.conftest import Api, assert_quiescent, run_cli
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
    status_callback_form,
)

SUB_A = "AC" + "a" * 32  # has credentials of its own
SUB_B = "AC" + "b" * 32  # reached with the main account's credentials
SUB_A_KEY, SUB_A_SECRET, SUB_A_TOKEN = "SK" + "a1" * 16, "sub-a-api-secret", "sub-a-auth-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"
CALL_A, CALL_B, CALL_MAIN = "CA" + "a" * 32, "CA" + "b" * 32, "CA" + "c" * 32
HOOK = "/webhooks/twilio/{}/recordings"


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature, written from Twilio's documentation and nothing else: the full URL, then each POST
    parameter's name and value appended in the order of the names, signed with HMAC-SHA1 keyed with the auth
    token, in base64."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_the_hand_written_signature_reproduces_twilios_documented_example():
    # https://www.twilio.com/docs/usage/webhooks/webhooks-security (the worked example)
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == \
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


class World:
    """The stand-in, the environment pointing at it, the app, and helpers."""

    def __init__(self, standin: TwilioStandIn) -> None:
        from api import create_app

        self.standin = standin
        self.client = create_app({"TESTING": True}).test_client()

    def api(self, business_id: str) -> Api:
        return Api(self.client, business_id)

    def put(self, business_id: str, call_sid: str, body: dict[str, Any]) -> Any:
        api = self.api(business_id)
        return self.client.put(f"/api/recordings/{call_sid}", json=body, headers=api.headers)

    def ops(self, method: str, business_id: str, body: Any = None, token: str = ADMIN) -> Any:
        return self.client.open(f"/api/ops/businesses/{business_id}/twilio", method=method, json=body,
                                headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def world(data_dir: Path, provider: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    standin = TwilioStandIn((API_KEY, API_SECRET), subaccounts={SUB_A: (SUB_A_KEY, SUB_A_SECRET), SUB_B: None})
    standin.start()
    env = {
        "RECPLAY_TWILIO_API_BASE": standin.base,
        "RECPLAY_MEDIA_HOSTS": f"{provider.host},{standin.host}",
        "RECPLAY_INTERNAL_MEDIA_HOSTS": f"{provider.host},{standin.host}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RECPLAY_TWILIO_ACCOUNTS": json.dumps({SUB_A: {"auth_token": SUB_A_TOKEN, "api_key": SUB_A_KEY,
                                                       "api_secret": SUB_A_SECRET}}),
        "RECPLAY_ADMIN_TOKEN": ADMIN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield World(standin)
    standin.stop()


def test_a_binding_is_made_with_the_cli_or_the_ops_api_and_kept(world):
    bound = run_cli("twilio-bind", "biz", SUB_A)
    assert bound.stdout.strip() == f"biz: bound to Twilio account {SUB_A} (was unbound)."
    assert run_cli("twilio-bind", "biz", SUB_A).stdout.strip() == f"Nothing to do: biz is already bound to {SUB_A}."
    for bad in ("AC123", "SK" + "0" * 32, SUB_A.lower().replace("ac", "xx", 1), SUB_A + "0"):
        refused = run_cli("twilio-bind", "biz", bad, check=False)
        assert refused.returncode == 2, bad
    assert run_cli("twilio-bind", "../biz", SUB_A, check=False).returncode == 2

    got = world.ops("GET", "biz")
    assert (got.status_code, got.get_json()) == (200, {"business_id": "biz", "account_sid": SUB_A})
    moved = world.ops("PUT", "biz", {"account_sid": SUB_B})
    assert (moved.status_code, moved.get_json()) == (200, {"business_id": "biz", "account_sid": SUB_B,
                                                            "previous_account_sid": SUB_A})
    assert world.ops("GET", "other").get_json() == {"business_id": "other", "account_sid": None}
    for body in ({}, {"account_sid": "AC1"}, {"account_sid": SUB_A, "more": 1}, ["x"], {"account_sid": 5}):
        refused = world.ops("PUT", "biz", body)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (400, "invalid_body"), body
    assert world.ops("PUT", "bad%20id", {"account_sid": SUB_A}).status_code == 400
    business_token = world.api("biz").headers["Authorization"].split(" ", 1)[1]
    assert world.ops("PUT", "biz", {"account_sid": SUB_A}, token=business_token).status_code == 403
    assert world.ops("GET", "biz", token="wrong").status_code == 401
    # Durable: a process that opens the catalog afresh reads it.
    dispose_engines()
    assert Catalog(get_settings()).twilio_account("biz") == SUB_B


def test_registration_refuses_another_accounts_recording_url_or_call_sid(world, provider):
    url_a = world.standin.add_recording(CALL_A, 1, Media(mp3=mp3_bytes(), wav=b""), account=SUB_A)
    url_b = world.standin.add_recording(CALL_B, 2, Media(mp3=mp3_bytes(), wav=b""), account=SUB_B)
    url_main = world.standin.add_recording(CALL_MAIN, 3, Media(mp3=mp3_bytes(), wav=b""))
    # An unbound business keeps the old behaviour: any account's recording (the risk docs/security.md names).
    assert world.put("free", CALL_B, {"media_url": url_b, "provider": "twilio"}).status_code == 201
    # Given a business bound to SUB_A
    run_cli("twilio-bind", "biz", SUB_A)
    before = len(world.standin.paths())
    tricks = {
        "CAt1": url_a.replace(f"/Accounts/{SUB_A}/", f"/Accounts/{SUB_A}/../../Accounts/{SUB_B}/"),
        "CAt2": url_b.replace(f"/Accounts/{SUB_B}/", "/Accounts/%41C" + "b" * 32 + "/"),
        "CAt3": url_b.replace("/Recordings/", f"/Accounts/{SUB_A}/Recordings/"),
        "CAt4": f"{world.standin.base}/2010-04-01/Recordings/{recording_sid(2)}",
    }
    for call_sid, body in [(CALL_B, {"media_url": url_b}), (CALL_MAIN, {"media_url": url_main}),
                           *[(sid, {"media_url": url}) for sid, url in tricks.items()]]:
        refused = world.put("biz", call_sid, body)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "twilio_account_mismatch"), \
            body
    assert len(world.standin.paths()) == before  # a URL is judged by its path: nobody asked Twilio
    # A CallSid of another account: Twilio does not know it in SUB_A.
    cross = world.put("biz", CALL_B, {"provider": "twilio"})
    assert (cross.status_code, cross.get_json()["error"]["code"]) == (422, "twilio_account_mismatch")
    assert world.standin.paths()[-1] == f"/2010-04-01/Accounts/{SUB_A}/Calls/{CALL_B}.json"
    assert world.standin.auth_of(f"/Accounts/{SUB_A}/Calls/") == [basic(SUB_A_KEY, SUB_A_SECRET)]
    # Its own account's recordings, by URL or CallSid, and media elsewhere on the allowlist, are welcome.
    assert world.put("biz", CALL_A, {"provider": "twilio"}).status_code == 201
    assert world.put("biz", CALL_A, {"media_url": url_a, "provider": "twilio"}).status_code == 200
    assert world.put("biz", "CAplain", {"media_url": provider.url("/biz/a.mp3")}).status_code == 201
    rows = {r.call_sid for r in Catalog(get_settings()).page("biz", 50, None)}
    assert rows == {CALL_A, "CAplain"}


def test_downloads_check_the_account_again_and_use_each_accounts_credentials(world, procs):
    audio = {n: mp3_bytes(2500 + n) for n in range(1, 5)}
    url_a = world.standin.add_recording(CALL_A, 1, Media(mp3=audio[1], wav=b""), account=SUB_A)
    url_b = world.standin.add_recording(CALL_B, 2, Media(mp3=audio[2], wav=b""), account=SUB_B)
    call_b2 = "CA" + "d" * 32
    world.standin.add_recording(call_b2, 4, Media(mp3=audio[4], wav=b""), account=SUB_B)
    # Given recordings registered while "biz" was unbound: one of SUB_A, two of SUB_B (a URL and a CallSid)
    api = world.api("biz")
    assert world.put("biz", CALL_A, {"media_url": url_a, "provider": "twilio"}).status_code == 201
    assert world.put("biz", CALL_B, {"media_url": url_b, "provider": "twilio"}).status_code == 201
    assert world.put("biz", call_b2, {"provider": "twilio"}).status_code == 201
    # and a business bound to SUB_B, fetching by CallSid
    run_cli("twilio-bind", "other", SUB_B)
    assert world.put("other", call_b2, {"provider": "twilio"}).status_code == 201
    # When "biz" is bound to SUB_A, and everything is fetched
    run_cli("twilio-bind", "biz", SUB_A)
    procs.worker(concurrency=4)
    for business_id, call_sid in (("biz", CALL_A), ("biz", CALL_B), ("biz", call_b2), ("other", call_b2)):
        world.api(business_id).fetch(call_sid)
    # Then only its own account's recording is downloaded, the others fail at once, before any media request
    assert api.wait_status(CALL_A, {"ready", "failed"}, 30)["status"] == "ready"
    for call_sid in (CALL_B, call_b2):
        refused = api.wait_status(call_sid, {"ready", "failed"}, 30)
        assert (refused["status"], refused["attempts"]) == ("failed", 1), refused
        assert refused["error"].startswith("twilio_account_mismatch: "), refused
    assert world.api("other").wait_status(call_b2, {"ready", "failed"}, 30)["status"] == "ready"
    media = world.standin.auth_of("/Recordings/RE")
    assert world.standin.auth_of(f"/Accounts/{SUB_B}/Recordings/{recording_sid(2)}") == []
    # SUB_A's own API key for SUB_A, the main account's for SUB_B (a subaccount without credentials here)
    assert world.standin.auth_of(f"/Accounts/{SUB_A}/Recordings/") == [basic(SUB_A_KEY, SUB_A_SECRET)]
    assert world.standin.auth_of(f"/Accounts/{SUB_B}/Recordings/{recording_sid(4)}") == [basic(API_KEY, API_SECRET)]
    assert len(media) == 2
    assert_quiescent()


@pytest.fixture
def hook(world: World) -> Callable[..., Any]:
    def post(business_id: str, form: dict[str, str], token: str | None) -> Any:
        url = "http://localhost" + HOOK.format(business_id)
        headers = {"X-Twilio-Signature": twilio_signature(token, url, form)} if token else {}
        return world.client.post(HOOK.format(business_id), data=form, headers=headers)

    return post


def test_a_callback_is_checked_against_a_hand_computed_signature_and_the_bound_account(world, hook, caplog):
    url_a = world.standin.add_recording(CALL_A, 1, Media(mp3=b"", wav=b""), account=SUB_A)
    url_b = world.standin.add_recording(CALL_B, 2, Media(mp3=b"", wav=b""), account=SUB_B)
    url_main = world.standin.add_recording(CALL_MAIN, 3, Media(mp3=b"", wav=b""))

    def form(url: str, call_sid: str, account: str) -> dict[str, str]:
        return {**status_callback_form(url, call_sid), "AccountSid": account}

    # An unbound business, the main account, signed with the main auth token: taken.
    assert hook("free", form(url_main, CALL_MAIN, ACCOUNT_SID), AUTH_TOKEN).status_code == 204
    # Unsigned, or signed with another key: refused.
    assert hook("free", form(url_main, "CAx1", ACCOUNT_SID), None).status_code == 403
    assert hook("free", form(url_main, "CAx2", ACCOUNT_SID), "not-the-token").status_code == 403
    # A subaccount with its own auth token signs with it; the main token does not pass for it.
    assert hook("free", form(url_a, CALL_A, SUB_A), AUTH_TOKEN).status_code == 403
    assert hook("free", form(url_a, CALL_A, SUB_A), SUB_A_TOKEN).status_code == 204

    # Given "biz" bound to SUB_A
    run_cli("twilio-bind", "biz", SUB_A)
    # A callback of another account, however well signed, is refused and logged
    caplog.clear()
    for other in (form(url_b, CALL_B, SUB_B), form(url_main, CALL_MAIN, ACCOUNT_SID)):
        refused = hook("biz", other, AUTH_TOKEN)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (403, "forbidden")
    assert sum("Twilio callback refused: AccountSid" in r.getMessage() and "business_id=biz" in r.getMessage()
               for r in caplog.records) == 2
    # and so is its own account's callback naming another account's recording
    mixed = hook("biz", form(url_b, CALL_B, SUB_A), SUB_A_TOKEN)
    assert (mixed.status_code, mixed.get_json()["error"]["code"]) == (422, "twilio_account_mismatch")
    # Its own account's callback is taken.
    assert hook("biz", form(url_a, CALL_A, SUB_A), SUB_A_TOKEN).status_code == 204
    assert {r.call_sid for r in Catalog(get_settings()).page("biz", 50, None)} == {CALL_A}


def test_the_accounts_setting_is_checked_when_read(monkeypatch):
    from tasks.errors import ConfigError
    from tasks.settings import load_settings

    monkeypatch.setenv("RECPLAY_TWILIO_ACCOUNTS", json.dumps({SUB_A: SUB_A_TOKEN, SUB_B: {"api_key": SUB_A_KEY,
                                                                                         "api_secret": "s"}}))
    accounts = load_settings().twilio_accounts
    assert [(a.sid, a.auth_token, a.api_key, a.api_secret) for a in accounts] == [
        (SUB_A, SUB_A_TOKEN, None, None), (SUB_B, None, SUB_A_KEY, "s")]
    for bad in ("[]", "not json", json.dumps({"AC1": "t"}), json.dumps({SUB_A: ""}), json.dumps({SUB_A: {}}),
                json.dumps({SUB_A: {"api_key": SUB_A_KEY}}), json.dumps({SUB_A: {"api_key": "x", "api_secret": "y"}}),
                json.dumps({SUB_A: {"password": "x"}}), json.dumps({SUB_A: 5})):
        monkeypatch.setenv("RECPLAY_TWILIO_ACCOUNTS", bad)
        with pytest.raises(ConfigError, match="RECPLAY_TWILIO_ACCOUNTS"):
            load_settings()
