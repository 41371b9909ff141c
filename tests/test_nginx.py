"""Debian's nginx in front of the API with deploy/nginx.conf: X-Accel-Redirect streaming, checked against the
API streaming the same recording itself.

Each test runs the API on a real werkzeug server (a thread) with RECPLAY_ACCEL_REDIRECT set, and its own nginx
master process on a free loopback port, started with ``-p prefix -c conf`` from the shipped config (only the
upstream address, the listen address, the media directory and the temp paths are rewritten).
"""

from __future__ import annotations

import dataclasses
import email.parser
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from tasks.access import mint_stream_token
from tasks.catalog.queries import Catalog
from tasks.media.links import PREFIX as PREFIX_MEDIA
from tasks.media.links import media_link
from tasks.media.local import MediaStore
from tasks.recordings import Recordings
from tasks.settings import get_settings
from tasks.slots.client import get_redis
from tasks.slots.events import publish
from tests.conftest import free_port, token_for, wait_for
from tests.nginxconf import render_conf
from tests.provider import make_wav
from tests.sse import EventStream
from tests.twilio_standin import AUTH_TOKEN, sign, status_callback_form

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PREFIX = "/protected-media/"

pytestmark = pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="nginx is not installed")


class Stack:
    """API (accel mode) behind nginx; ``direct`` is the same API streaming files itself."""

    def __init__(self, workdir: Path, settings: Any) -> None:
        from api import create_app

        self.settings = settings
        behind_nginx = dataclasses.replace(settings, accel_redirect=PREFIX, trust_proxy=1,
                                           twilio_auth_token=AUTH_TOKEN)
        accel = create_app({"TESTING": True, "RECPLAY_SETTINGS": behind_nginx})
        self.direct = create_app({"TESTING": True, "RECPLAY_SETTINGS": settings}).test_client()
        self.accel_client = accel.test_client()
        self.port = free_port()
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        self.api_requests: list[str] = []
        self.server = make_server("127.0.0.1", 0, self._counted(accel), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)
        self.thread.start()
        conf = render_conf(workdir, self.server.server_port, self.port, settings.media_dir,
                           settings.media_link_secret_value())
        self.error_log = workdir / "error.log"
        self.nginx = subprocess.Popen(
            [str(NGINX), "-p", str(workdir), "-c", str(conf), "-e", str(self.error_log), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        wait_for(self._answers, 15, "nginx to answer")

    def _counted(self, app: Any) -> Any:
        """The API's WSGI app, noting the path of every request that reaches it."""
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.api_requests.append(environ["PATH_INFO"])
            return app(environ, start_response)

        return counted

    def _answers(self) -> bool:
        if self.nginx.poll() is not None:
            err = self.nginx.stderr.read().decode() if self.nginx.stderr else ""
            raise AssertionError(f"nginx exited: {err}")
        try:
            return self.http.get(self.base + "/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        self.http.close()
        if self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait(10)
        if self.nginx.stderr:
            self.nginx.stderr.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stack(data_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    if NGINX is None:
        pytest.fail("nginx is required in CI (.ci/run installs it)")
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    found = Stack(workdir, get_settings())
    yield found
    found.stop()


def store_ready(settings: Any, business_id: str, call_sid: str, body: bytes, content_type: str) -> str:
    """A ready recording, stored as the download task stores one; returns its relative file path."""
    catalog, store = Catalog(settings), MediaStore(settings.media_dir)
    rec, _ = catalog.register(business_id, call_sid, f"http://127.0.0.1:1/{business_id}/{call_sid}", None)
    partial = store.open_partial(business_id, call_sid)
    partial.write(body)
    written = partial.finish(content_type)
    rel = store.commit(written, business_id, call_sid, rec.id)
    assert catalog.mark_ready(rec.id, size_bytes=written.size_bytes, content_type=content_type,
                              sha256=written.sha256, file_path=rel, attempts=1)
    return rel


AUDIO = make_wav(2.0)  # 32 044 bytes
L = len(AUDIO)
COMPARED = ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified", "Accept-Ranges",
            "Content-Disposition", "Cache-Control", "X-Content-Type-Options", "Content-Security-Policy")
MEDIA_SECURITY = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


def _parts(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, bytes) of each part of a multipart/byteranges body."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    return [(part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
            for part in message.get_payload()]


def _view(status: int, headers: Any, body: bytes) -> dict[str, Any]:
    seen = {name: headers.get(name) for name in COMPARED}
    content_type = seen["Content-Type"] or ""
    if content_type.startswith("multipart/byteranges"):
        seen["Content-Type"], seen["Content-Length"] = "multipart/byteranges", None  # random boundary
        return {"status": status, "headers": seen, "parts": _parts(content_type, body)}
    return {"status": status, "headers": seen, "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body)}


def range_cases(etag: str, last_modified: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, query suffix, headers) of every Range and conditional case of SPEC, and more."""
    return [
        ("GET", "", {}),
        ("GET", "", {"Range": "bytes=0-1"}),
        ("GET", "", {"Range": "bytes=0-"}),
        ("GET", "", {"Range": "bytes=1000-"}),
        ("GET", "", {"Range": "bytes=-500"}),
        ("GET", "", {"Range": f"bytes=-{L + 10}"}),
        ("GET", "", {"Range": f"bytes=30000-{L + 100}"}),
        ("GET", "", {"Range": f"bytes={L}-"}),
        ("GET", "", {"Range": "bytes=0-1,100-199,-10"}),
        ("GET", "", {"Range": "bytes=5-1"}),
        ("GET", "", {"Range": "items=0-1"}),
        ("GET", "", {"Range": "bytes=10-19", "If-Range": etag}),
        ("GET", "", {"Range": "bytes=10-19", "If-Range": f"W/{etag}"}),
        ("GET", "", {"Range": "bytes=10-19", "If-Range": '"another"'}),
        ("GET", "", {"Range": "bytes=10-19", "If-Range": last_modified}),
        ("GET", "", {"Range": "bytes=10-19", "If-Range": "Mon, 01 Jan 2024 00:00:00 GMT"}),
        ("GET", "", {"If-None-Match": etag}),
        ("GET", "", {"If-None-Match": etag, "Range": "bytes=0-1"}),
        ("GET", "", {"If-None-Match": '"another"', "Range": "bytes=0-1"}),
        ("GET", "", {"If-Modified-Since": last_modified}),
        ("GET", "", {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT", "Range": "bytes=3-4"}),
        ("HEAD", "", {}),
        ("HEAD", "", {"Range": "bytes=0-1"}),
        ("GET", "&download=1", {}),
        ("GET", "&download=1", {"Range": "bytes=-2"}),
    ]


def test_nginx_streams_every_range_case_exactly_as_the_api_does(stack):
    rel = store_ready(stack.settings, "biz", "CA1", AUDIO, "audio/wav")
    url = f"/api/recordings/CA1/stream?token={mint_stream_token(stack.settings, 'biz', 'CA1')}"
    direct_full = stack.direct.get(url)
    etag, last_modified = direct_full.headers["ETag"], direct_full.headers["Last-Modified"]
    cases = range_cases(etag, last_modified)
    seen_statuses = []
    for method, extra, headers in cases:
        expected = stack.direct.open(url + extra, method=method, headers=headers)
        got = stack.http.request(method, stack.base + url + extra, headers=headers, timeout=10)
        want = _view(expected.status_code, expected.headers, expected.data)
        have = _view(got.status_code, got.headers, got.content)
        assert have == want, (method, extra, headers, have, want)
        seen_statuses.append(got.status_code)
    assert seen_statuses == [200, 206, 206, 206, 206, 206, 206, 416, 206, 200, 200, 206, 200, 200, 206, 200,
                             304, 304, 206, 304, 206, 200, 200, 200, 206]

    # The absolute facts behind that comparison.
    whole = stack.http.get(stack.base + url, timeout=10)
    assert whole.content == AUDIO
    assert whole.headers["Content-Type"] == "audio/wav"
    two = stack.http.get(stack.base + url, headers={"Range": "bytes=0-1"}, timeout=10)
    assert (two.headers["Content-Range"], two.content) == (f"bytes 0-1/{L}", AUDIO[:2])
    tail = stack.http.get(stack.base + url, headers={"Range": f"bytes=-{L + 10}"}, timeout=10)
    assert (tail.headers["Content-Range"], tail.content) == (f"bytes 0-{L - 1}/{L}", AUDIO)
    past = stack.http.get(stack.base + url, headers={"Range": f"bytes={L}-"}, timeout=10)
    assert (past.status_code, past.headers["Content-Range"]) == (416, f"bytes */{L}")
    download = stack.http.get(stack.base + url + "&download=1", timeout=10)
    assert download.headers["Content-Disposition"] == 'attachment; filename="CA1.wav"'

    # nginx, not the API, sent those bytes: the API's own answer is empty and names the file.
    for headers in ({}, {"Range": "bytes=0-1"}, {"Range": "bytes=10-19", "If-Range": etag}):
        handed = stack.accel_client.get(url, headers=headers)
        assert (handed.status_code, handed.data) == (200, b""), headers
        assert handed.headers["X-Accel-Redirect"] == PREFIX + rel
    # The rare cases stay with the API, where the RFC 9110 choices are made once.
    for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-1,5-6"}),
                            ("GET", {"If-None-Match": etag}), ("GET", {"Range": f"bytes={L}-"}),
                            ("GET", {"Range": "bytes=5-1"})):
        kept = stack.accel_client.open(url, method=method, headers=headers)
        assert "X-Accel-Redirect" not in kept.headers, (method, headers)
    assert "X-Accel-Redirect" not in whole.headers
    assert "[error]" not in stack.error_log.read_text()


#: The cases nginx answers alone (every other one it hands to the API): a GET with no Range or one range-spec,
#: and no precondition. The indexes are those of range_cases().
NGINX_ALONE = {0, 1, 2, 3, 4, 5, 6, 7, 9, 23, 24}


def test_nginx_answers_media_links_as_the_api_does_and_the_hot_path_never_reaches_the_api(stack):
    rel = store_ready(stack.settings, "biz", "CA1", AUDIO, "audio/wav")
    link = media_link(stack.settings, rel)
    direct_full = stack.direct.get(link)
    assert direct_full.status_code == 200
    stack.api_requests.clear()
    etag, last_modified = direct_full.headers["ETag"], direct_full.headers["Last-Modified"]
    # nginx's own validators: the API describes the file exactly as nginx does.
    stat = (stack.settings.media_dir / rel).stat()
    assert etag == f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'
    seen_statuses, reached_api = [], set()
    for index, (method, extra, headers) in enumerate(range_cases(etag, last_modified)):
        expected = stack.direct.open(link + extra, method=method, headers=headers)
        before = len(stack.api_requests)
        got = stack.http.request(method, stack.base + link + extra, headers=headers, timeout=10)
        if len(stack.api_requests) > before:
            reached_api.add(index)
        want = _view(expected.status_code, expected.headers, expected.data)
        have = _view(got.status_code, got.headers, got.content)
        assert have == want, (method, extra, headers, have, want)
        assert {name: got.headers.get(name) for name in MEDIA_SECURITY} == MEDIA_SECURITY
        seen_statuses.append(got.status_code)
    # As the stream endpoint, but for bytes=5-1: one range-spec ending before it starts is a 416 here, as nginx
    # has it (the stream endpoint ignores it: 200).
    assert seen_statuses == [200, 206, 206, 206, 206, 206, 206, 416, 206, 416, 200, 206, 200, 200, 206, 200,
                             304, 304, 206, 304, 206, 200, 200, 200, 206]
    assert reached_api == set(range(25)) - NGINX_ALONE
    assert stack.api_requests == [PREFIX_MEDIA + rel] * len(reached_api)

    whole = stack.http.get(stack.base + link, timeout=10)
    assert (whole.content, whole.headers["Content-Type"]) == (AUDIO, "audio/wav")
    two = stack.http.get(stack.base + link, headers={"Range": "bytes=0-1"}, timeout=10)
    assert (two.status_code, two.headers["Content-Range"], two.content) == (206, f"bytes 0-1/{L}", AUDIO[:2])
    assert two.headers["Accept-Ranges"] == "bytes"
    download = stack.http.get(stack.base + link + "&download=1", timeout=10)
    assert download.headers["Content-Disposition"] == 'attachment; filename="CA1.wav"'
    assert "[error]" not in stack.error_log.read_text()


def test_forged_expired_and_deleted_links_are_refused_by_nginx_as_by_the_api(stack, monkeypatch):
    rel = store_ready(stack.settings, "biz", "CA1", AUDIO, "audio/wav")
    other = store_ready(stack.settings, "other", "CA2", b"ID3" + bytes(range(256)) * 4, "audio/mpeg")
    link = media_link(stack.settings, rel)
    path, _, query = link.partition("?")
    expired = media_link(stack.settings, rel, now=time.time() - stack.settings.stream_token_seconds - 5)
    stack.api_requests.clear()
    signed_elsewhere = PREFIX_MEDIA + other + "?" + query  # CA1's signature on another business's file
    later = query.replace("expires=", "expires=1")  # a later expiry the signature does not cover
    refused = {
        path: "forbidden",
        path + "?expires=" + query.split("&")[0].split("=")[1]: "forbidden",
        path + "?" + later: "forbidden",
        path + "?" + query.replace("sig=", "sig=A"): "forbidden",
        signed_elsewhere: "forbidden",
        expired: "link_expired",
    }
    for url, code in refused.items():
        for answer in (stack.http.get(stack.base + url, timeout=10), stack.direct.get(url)):
            body = answer.json() if hasattr(answer, "json") and callable(answer.json) else answer.get_json()
            assert (answer.status_code, body["error"]["code"]) == (403, code), url
            assert answer.headers["Content-Type"] == "application/json"
            assert {name: answer.headers.get(name) for name in MEDIA_SECURITY} == MEDIA_SECURITY
    assert stack.api_requests == []  # nginx refused them alone

    # Deleting the recording stops its link at once: the file is gone (nginx hands its 404 to the API).
    Recordings(get_redis(), stack.settings, "biz").delete(Catalog(stack.settings).get("biz", "CA1"))
    for answer in (stack.http.get(stack.base + link, headers={"Range": "bytes=0-1"}, timeout=10),
                   stack.direct.get(link)):
        assert answer.status_code == 404
    assert stack.http.get(stack.base + link, timeout=10).json()["error"]["code"] == "not_found"


def test_access_rules_hold_through_nginx_and_the_media_location_is_internal(stack):
    rel = store_ready(stack.settings, "biz", "CA1", AUDIO, "audio/wav")
    store_ready(stack.settings, "other", "CA2", b"ID3" + bytes(range(256)) * 4, "audio/mpeg")
    stream = stack.base + "/api/recordings/CA1/stream"
    own = {"Authorization": f"Bearer {token_for('biz')}"}

    direct_file = stack.http.get(stack.base + PREFIX + rel, timeout=10)
    assert direct_file.status_code == 404
    assert AUDIO[:64] not in direct_file.content

    def code(url: str, headers: dict[str, str] | None = None) -> int:
        return int(stack.http.get(url, headers=headers, timeout=10).status_code)

    assert code(stream) == 401
    assert code(stream, {"Authorization": "Bearer forged.token.here"}) == 401
    assert code(stream + f"?token={token_for('biz')}") == 401  # a business token in the query string
    other_call = mint_stream_token(stack.settings, "biz", "CA-other")
    assert stack.http.get(stream + f"?token={other_call}", timeout=10).status_code == 401
    foreign = stack.http.get(stack.base + "/api/recordings/CA2/stream", headers=own, timeout=10)
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "not_found")
    assert stack.http.get(stack.base + "/api/recordings/..%2F..%2Fetc%2Fpasswd/stream", headers=own,
                          timeout=10).status_code in (400, 404)

    ok = stack.http.get(stream, headers={**own, "Range": "bytes=100-"}, timeout=10)
    assert (ok.status_code, ok.content) == (206, AUDIO[100:])

    # A recording that is not stored yet: the API's own 202, through nginx.
    Catalog(stack.settings).register("biz", "CA-new", "http://127.0.0.1:1/biz/new.wav", None)
    pending = stack.http.get(stack.base + "/api/recordings/CA-new/stream", headers=own, timeout=10)
    assert pending.status_code == 202
    assert pending.headers["Retry-After"] == "2"
    assert pending.json()["status"] in ("queued", "processing")


def test_an_events_stream_through_nginx_gets_each_event_at_once(stack, provider):
    Catalog(stack.settings).register("biz", "CA7", provider.url("/biz/CA7.wav"), None)
    own = {"Authorization": f"Bearer {token_for('biz')}"}
    assert stack.http.post(stack.base + "/api/recordings/CA7/fetch", headers=own, timeout=10).status_code == 202
    stream = EventStream(stack.base + "/api/recordings/CA7/events", own)
    try:
        assert stream.status == 200
        assert stream.wait_events(1, timeout=5)[0]["status"] == "queued"
        assert stream.times[0] - stream.opened < 2.0  # not held in a proxy buffer
        # The next change reaches the client through nginx as soon as it is published.
        publish(get_redis(), "biz", "CA7", "processing", 1, "", 7)
        stream.wait_events(2, timeout=5)
        assert stream.statuses() == ["queued", "processing"]
        assert not stream.closed.is_set()
    finally:
        stream.close()


def test_a_twilio_callback_through_nginx_is_checked_against_the_public_url(stack, provider):
    call = "CA" + "c" * 32
    form = status_callback_form(provider.url(f"/2010-04-01/Accounts/AC1/Recordings/{'RE' + '1' * 32}"), call)
    path = "/webhooks/twilio/biz/recordings"
    public = stack.base + path  # what Twilio requested: nginx's address, not the API's
    internal = f"http://127.0.0.1:{stack.server.server_port}{path}"
    for signed_url, expected in ((internal, 403), (public, 204)):
        answer = stack.http.post(public, data=form, headers={"X-Twilio-Signature": sign(signed_url, form)},
                                 timeout=10)
        assert answer.status_code == expected, signed_url
    rec = Catalog(stack.settings).get("biz", call)
    assert rec is not None and rec.media_url == form["RecordingUrl"]


def test_nginx_never_exposes_the_metrics(stack):
    # The API itself answers /metrics (on the private network)...
    assert b"recplay_redis_up" in stack.direct.get("/metrics").data
    # ...nginx does not, however the path is spelled.
    for path in ("/metrics", "/metrics?format=text", "//metrics", "/%6Detrics", "/./metrics", "/metrics/",
                 "/x/../metrics"):
        answer = stack.http.get(stack.base + path, timeout=10)
        assert answer.status_code == 404, path
        assert b"recplay_" not in answer.content, path


def test_media_sent_by_nginx_carries_the_safe_type_nosniff_and_the_sandbox(stack):
    # Given a recording stored before the fixed media table: the provider's header as its type, a page as its body
    page = b"<!DOCTYPE html><html><body><script>document.title = 'pwned'</script></body></html>"
    rel = store_ready(stack.settings, "biz", "CA1", page, "audio/mpeg, text/html")
    store_ready(stack.settings, "biz", "CA2", AUDIO, "audio/wav")
    for call_sid, content_type, body in (("CA1", "application/octet-stream", page), ("CA2", "audio/wav", AUDIO)):
        token = mint_stream_token(stack.settings, "biz", call_sid)
        url = stack.base + f"/api/recordings/{call_sid}/stream?token={token}"
        for headers, status, sent in (({}, 200, body), ({"Range": "bytes=2-5"}, 206, body[2:6])):
            got = stack.http.get(url, headers=headers, timeout=10)
            assert (got.status_code, got.content) == (status, sent), (call_sid, headers)
            assert got.headers["Content-Type"] == content_type
            assert got.headers["X-Content-Type-Options"] == "nosniff"
            assert got.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    # nginx sent those bytes itself.
    token = mint_stream_token(stack.settings, "biz", "CA1")
    handed = stack.accel_client.get(f"/api/recordings/CA1/stream?token={token}")
    assert handed.headers["X-Accel-Redirect"] == PREFIX + rel
    assert handed.headers["Content-Type"] == "application/octet-stream"
