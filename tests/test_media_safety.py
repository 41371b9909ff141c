"""Hostile media: what a provider sends never decides what a browser is told it is.

- Every answer of the stream endpoint carries the table's content type (tasks/media/types.py),
  ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: default-src 'none'; sandbox``; a row stored
  before the table with ``audio/mpeg, text/html`` or ``text/html`` is served as ``application/octet-stream``.
- A real worker refuses a body that is not audio whatever its header says (HTML labelled ``audio/mpeg``), stores
  the type the bytes announce, never the header, and stops at RECPLAY_MAX_MEDIA_BYTES with or without a
  Content-Length.
"""

from __future__ import annotations

import email.parser
from typing import Any

import pytest

from tasks.catalog.queries import Catalog
from tasks.media.types import FALLBACK, safe_content_type
from tasks.settings import get_settings
from tests.conftest import assert_quiescent
from tests.crashkit import media_files
from tests.media import make_ready
from tests.provider import make_wav
from tests.twilio_standin import mp3_bytes

NOSNIFF = ("X-Content-Type-Options", "nosniff")
SANDBOX = ("Content-Security-Policy", "default-src 'none'; sandbox")
#: A page a browser would run, were it ever rendered on the API's origin.
HTML = (b"<!DOCTYPE html><html><head><title>ok</title></head><body>"
        b"<script>document.title = 'pwned'; fetch('/api/recordings')</script></body></html>")


def assert_guarded(response: Any, content_type: str) -> None:
    assert response.headers.get("Content-Type") == content_type, dict(response.headers)
    assert response.headers.get(NOSNIFF[0]) == NOSNIFF[1]
    assert response.headers.get(SANDBOX[0]) == SANDBOX[1]


def test_the_table_maps_every_stored_type_to_a_safe_one():
    assert [safe_content_type(t) for t in ("audio/mpeg", "AUDIO/MPEG; charset=x", "audio/wav", "audio/ogg",
                                           "audio/flac", "audio/mp4")] == \
        ["audio/mpeg", "audio/mpeg", "audio/wav", "audio/ogg", "audio/flac", "audio/mp4"]
    assert [safe_content_type(t) for t in ("audio/x-wav", "audio/mp3", "audio/x-m4a")] == \
        ["audio/wav", "audio/mpeg", "audio/mp4"]
    hostile = ["audio/mpeg, text/html", "text/html", "text/html; charset=utf-8", "audio/mpeg,text/html",
               "image/svg+xml", "application/xhtml+xml", "text/xml", "audio/x-unknown", "audio/", "", None,
               "audio/mpeg\r\nX-Injected: 1", "multipart/byteranges"]
    assert [safe_content_type(t) for t in hostile] == [FALLBACK] * len(hostile)


@pytest.mark.parametrize("stored", ["audio/mpeg, text/html", "text/html"])
def test_a_recording_stored_with_an_unsafe_type_is_served_as_bytes_on_every_answer(api_for, stored):
    # Given a row stored before the fixed table, with the provider's header as its type and a page as its body
    make_ready("biz", "CA1", HTML, content_type=stored)
    api = api_for("biz")

    status = api.status("CA1").get_json()
    assert status["content_type"] == FALLBACK
    whole = api.client.get(status["stream_url"])
    assert (whole.status_code, whole.data) == (200, HTML)
    assert_guarded(whole, FALLBACK)
    part = api.stream("CA1", {"Range": "bytes=0-9"})
    assert (part.status_code, part.data) == (206, HTML[:10])
    assert_guarded(part, FALLBACK)
    head = api.stream("CA1", method="HEAD")
    assert (head.status_code, head.data) == (200, b"")
    assert_guarded(head, FALLBACK)
    unchanged = api.client.get(status["stream_url"], headers={"If-None-Match": whole.headers["ETag"]})
    assert unchanged.status_code == 304
    assert_guarded(unchanged, FALLBACK)
    download = api.client.get(status["stream_url"] + "&download=1")
    assert download.headers["Content-Disposition"] == 'attachment; filename="CA1.bin"'
    assert_guarded(download, FALLBACK)

    several = api.stream("CA1", {"Range": "bytes=0-1,5-6"})
    assert several.status_code == 206
    assert several.headers[NOSNIFF[0]] == NOSNIFF[1] and several.headers[SANDBOX[0]] == SANDBOX[1]
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {several.headers['Content-Type']}\r\n\r\n".encode() + several.data)
    assert [part["Content-Type"] for part in message.get_payload()] == [FALLBACK, FALLBACK]


def test_every_other_answer_of_the_stream_endpoint_is_guarded_too(api_for, provider):
    api = api_for("biz")
    api.register("CA2", provider.add("/biz/b.wav", body=make_wav(0.1)))
    pending = api.stream("CA2")
    assert pending.status_code == 202
    assert_guarded(pending, "application/json")
    refused = api.client.get("/api/recordings/CA2/stream")
    assert refused.status_code == 401
    assert_guarded(refused, "application/json")


def test_a_safe_type_is_served_as_stored(api_for):
    make_ready("biz", "CA1", b"ID3" + bytes(100), content_type="audio/mpeg")
    assert_guarded(api_for("biz").stream("CA1"), "audio/mpeg")


# ---- what a real worker stores -----------------------------------------------------------------------------

def _ends(api: Any, call_sid: str) -> dict[str, Any]:
    return api.wait_status(call_sid, {"ready", "failed"}, 30)


def test_a_worker_refuses_what_is_not_audio_and_stores_the_type_the_bytes_announce(api_for, provider, procs,
                                                                                  settings):
    procs.worker(concurrency=4)
    api = api_for("biz")
    wav, mp3 = make_wav(0.2), mp3_bytes(3000)
    cases = {
        # call_sid: (body, header the provider sends, expected status, stored type)
        "CAhtml": (HTML, "audio/mpeg", "failed", None),
        "CAmixed": (HTML, "audio/mpeg, text/html", "failed", None),
        "CAoctet": (HTML, "application/octet-stream", "failed", None),
        "CAmp3mixed": (mp3, "audio/mpeg, text/html", "ready", "audio/mpeg"),
        "CAwavasmp3": (wav, "audio/mpeg", "ready", "audio/wav"),
        "CAwavoctet": (wav, "binary/octet-stream", "ready", "audio/wav"),
    }
    for call_sid, (body, header, _, _) in cases.items():
        assert api.register(call_sid, provider.add(f"/biz/{call_sid}", body=body, content_type=header)) \
            .status_code == 201
        api.fetch(call_sid)
    for call_sid, (body, _, expected, stored) in cases.items():
        found = _ends(api, call_sid)
        assert found["status"] == expected, (call_sid, found)
        if expected == "failed":
            assert found["error"] == "not audio: the provider sent an HTML page"
            assert found["attempts"] == 1  # permanent: never tried again
            continue
        assert found["content_type"] == stored, call_sid
        rec = Catalog(settings).get("biz", call_sid)
        assert rec is not None and rec.content_type == stored
        assert api.client.get(found["stream_url"]).data == body
    # Nothing of the refused bodies is kept, whole or partial.
    kept = [Catalog(settings).get("biz", c).file_path.split("/")[-1]  # type: ignore[union-attr]
            for c, case in cases.items() if case[2] == "ready"]
    assert sorted(media_files(settings, "biz")) == sorted([*kept, *(f"{name}.peaks" for name in kept)])
    assert_quiescent()


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-content-length"])
def test_the_size_cap_holds_with_and_without_content_length(api_for, provider, procs, settings, with_length):
    cap = 4096
    procs.worker(concurrency=2, env={"RECPLAY_MAX_MEDIA_BYTES": str(cap)})
    api = api_for("biz")
    at_cap = make_wav((cap - 44) / 2 / 8000 + 1e-6)  # a real WAV (every download is decoded), exactly the cap
    assert len(at_cap) == cap
    over = at_cap + b"\x00"
    far_over = at_cap + bytes(1024 * 1024)
    for call_sid, body in (("CAat", at_cap), ("CAover", over), ("CAfar", far_over)):
        api.register(call_sid, provider.add(f"/biz/{call_sid}.wav", body=body, no_length=not with_length))
        api.fetch(call_sid)
    assert _ends(api, "CAat")["status"] == "ready"
    for call_sid in ("CAover", "CAfar"):
        found = _ends(api, call_sid)
        assert (found["status"], found["error"], found["attempts"]) == \
            ("failed", "media larger than RECPLAY_MAX_MEDIA_BYTES", 1)
    rec = Catalog(get_settings()).get("biz", "CAat")
    assert rec is not None and rec.size_bytes == cap
    name = rec.file_path.split("/")[-1]  # type: ignore[union-attr]
    assert media_files(settings, "biz") == [name, f"{name}.peaks"]
    assert_quiescent()
