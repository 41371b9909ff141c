"""A stand-in for Twilio's REST API on loopback: the call recordings list and recording media, both behind
HTTP Basic, with the JSON and URL shapes of ``/2010-04-01`` (Recording resource).

A test adds recordings to calls and gives each recording's media a behaviour (404 while "not ready", statuses
answered first, a redirect to signed storage); the server records every request with its Authorization.

Accounts: the main account (ACCOUNT_SID) and its subaccounts, each of which the main credentials reach too, as
on Twilio; a subaccount may have credentials of its own. A call, its recordings and its media are found under
the account that owns them only.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twilio.request_validator import RequestValidator

from tests.provider import make_mp3

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
API_KEY = "SK" + "fedcba9876543210" * 2
API_SECRET = "api-key-secret"
AUTH_TOKEN = "auth-token-0123456789"

_LIST = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Calls/(\w+)/Recordings\.json")
_CALL = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Calls/(\w+)\.json")
_ACCOUNT = re.compile(r"/2010-04-01/Accounts/(AC\w+)/")
_MEDIA = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Recordings/(RE[0-9a-f]{32})(\.mp3|\.wav|\.json)?")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def recording_sid(n: int) -> str:
    return f"RE{n:032x}"


def status_callback_form(recording_url: str, call_sid: str, status: str = "completed",
                         n: int = 1) -> dict[str, str]:
    """The form fields Twilio posts to a recordingStatusCallback."""
    return {
        "AccountSid": ACCOUNT_SID, "CallSid": call_sid, "RecordingSid": recording_sid(n),
        "RecordingUrl": recording_url, "RecordingStatus": status, "RecordingDuration": "4",
        "RecordingChannels": "1", "RecordingStartTime": "Fri, 17 May 2024 09:30:00 +0000",
        "RecordingSource": "RecordVerb", "ErrorCode": "0",
    }


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature of a request to ``url`` with ``form``, as Twilio computes it."""
    return str(RequestValidator(token).compute_signature(url, form))


def mp3_bytes(n: int = 4000) -> bytes:
    """A real MP3 (the worker decodes every download), a different tone for each ``n``."""
    return make_mp3(0.5, freq=200.0 + n % 1000)


@dataclass
class Media:
    mp3: bytes
    wav: bytes
    not_found_first: int = 0  # 404 while Twilio is still processing the recording
    fail_first: list[int] = field(default_factory=list)  # e.g. [429, 429]
    redirect_to: str | None = None  # 302 to signed storage, as Twilio does


@dataclass
class Call:
    recordings: list[dict[str, Any]] = field(default_factory=list)  # newest first, as Twilio lists them
    processing_first: int = 0  # list requests answered with the recording still "processing"
    account: str = ACCOUNT_SID


class TwilioStandIn:
    def __init__(self, credentials: tuple[str, str] = (API_KEY, API_SECRET),
                 subaccounts: dict[str, tuple[str, str] | None] | None = None) -> None:
        self.credentials = credentials
        #: subaccount SID -> its own credentials (None: reached with the main account's only)
        self.subaccounts = dict(subaccounts or {})
        self.calls: dict[str, Call] = {}
        self.media: dict[str, Media] = {}
        self.media_account: dict[str, str] = {}  # recording sid -> its account
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.times: dict[str, list[float]] = {}  # path -> monotonic arrival times
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="twilio", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TwilioStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_recording(self, call_sid: str, n: int, media: Media, status: str = "completed",
                      processing_first: int = 0, account: str = ACCOUNT_SID) -> str:
        """A recording of ``call_sid`` in ``account``; returns its RecordingUrl (no extension, as status
        callbacks say)."""
        sid = recording_sid(n)
        resource = {
            "account_sid": account, "api_version": "2010-04-01", "call_sid": call_sid,
            "conference_sid": None, "date_created": "Fri, 17 May 2024 09:30:12 +0000",
            "date_updated": "Fri, 17 May 2024 09:30:20 +0000",
            "start_time": "Fri, 17 May 2024 09:30:00 +0000",
            "duration": "4", "sid": sid, "price": "-0.0025", "price_unit": "USD", "status": status,
            "channels": 1, "source": "RecordVerb", "error_code": None, "track": "both",
            "encryption_details": None,
            "uri": f"/2010-04-01/Accounts/{account}/Recordings/{sid}.json",
            "subresource_uris": {
                "add_on_results": f"/2010-04-01/Accounts/{account}/Recordings/{sid}/AddOnResults.json",
                "transcriptions": f"/2010-04-01/Accounts/{account}/Recordings/{sid}/Transcriptions.json",
            },
            "media_url": f"https://api.twilio.com/2010-04-01/Accounts/{account}/Recordings/{sid}",
        }
        with self.lock:
            call = self.calls.setdefault(call_sid, Call(account=account))
            call.recordings.insert(0, resource)
            call.processing_first = max(call.processing_first, processing_first)
            self.media[sid] = media
            self.media_account[sid] = account
        return f"{self.base}/2010-04-01/Accounts/{account}/Recordings/{sid}"

    def may_read(self, account: str | None, auth: str | None) -> bool:
        """Whether ``auth`` opens ``account``'s resources: the main credentials open the main account and its
        subaccounts; a subaccount's own credentials open that subaccount only."""
        if account is None:
            return auth == basic(*self.credentials)
        if (account == ACCOUNT_SID or account in self.subaccounts) and auth == basic(*self.credentials):
            return True
        own = self.subaccounts.get(account)
        return own is not None and auth == basic(*own)

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def auth_of(self, path_part: str) -> list[str | None]:
        with self.lock:
            return [auth for path, auth in self.requests if path_part in path]

    def _list_body(self, call_sid: str, call: Call | None, path: str) -> dict[str, Any]:
        recordings = [dict(r) for r in (call.recordings if call else [])]
        if call is not None and call.processing_first > 0:
            call.processing_first -= 1
            for r in recordings:
                r["status"] = "processing"
        return {
            "end": max(0, len(recordings) - 1), "first_page_uri": f"{path}?PageSize=50&Page=0",
            "next_page_uri": None, "page": 0, "page_size": 50, "previous_page_uri": None,
            "recordings": recordings, "start": 0, "uri": f"{path}?PageSize=50&Page=0",
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                auth = self.headers.get("Authorization")
                with standin.lock:
                    standin.requests.append((path, auth))
                    standin.times.setdefault(path, []).append(time.monotonic())
                account = _ACCOUNT.match(path)
                if not standin.may_read(account.group(1) if account else None, auth):
                    self._json(401, {"code": 20003, "message": "Authenticate", "status": 401,
                                     "more_info": "https://www.twilio.com/docs/errors/20003"})
                    return
                listed = _LIST.fullmatch(path)
                if listed:
                    with standin.lock:
                        call = standin.calls.get(listed.group(2))
                        mine = call if call is not None and call.account == listed.group(1) else None
                        body = standin._list_body(listed.group(2), mine, path)
                    self._json(200, body)
                    return
                called = _CALL.fullmatch(path)
                if called:
                    with standin.lock:
                        call = standin.calls.get(called.group(2))
                    if call is not None and call.account == called.group(1):
                        self._json(200, {"sid": called.group(2), "account_sid": call.account,
                                         "status": "completed"})
                    else:
                        self._not_found()
                    return
                media = _MEDIA.fullmatch(path)
                if media and standin.media_account.get(media.group(2)) == media.group(1) \
                        and media.group(3) != ".json":
                    self._media(media.group(2), media.group(3) or ".wav")
                    return
                self._not_found()

            def _media(self, sid: str, ext: str) -> None:
                with standin.lock:
                    behaviour = standin.media.get(sid)
                    status = None
                    if behaviour is not None and behaviour.not_found_first > 0:
                        behaviour.not_found_first -= 1
                        status = 404
                    elif behaviour is not None and behaviour.fail_first:
                        status = behaviour.fail_first.pop(0)
                if behaviour is None or status == 404:
                    self._not_found()
                    return
                if status is not None:
                    self._json(status, {"code": 20429, "message": "Too Many Requests", "status": status})
                    return
                if behaviour.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", behaviour.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                mp3 = ext == ".mp3"
                body, kind = (behaviour.mp3, "audio/mpeg") if mp3 else (behaviour.wav, "audio/x-wav")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self) -> None:
                self._json(404, {"code": 20404, "message": "The requested resource was not found",
                                 "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler

