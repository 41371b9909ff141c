"""Waveform peaks: computed in the worker's decode pass, kept beside the media, and for recordings stored before
that, computed by ``recplay backfill-peaks`` under the business's slots from the stored file (no download)."""

from __future__ import annotations

import math
import struct

from tasks.catalog.queries import Catalog
from tasks.media.decode import parse_peaks
from tasks.media.store import media_store
from tests.conftest import assert_quiescent, run_cli, wait_for
from tests.media import make_ready
from tests.provider import make_wav, wav_of

RATE = 8000


def two_channel_wav(seconds: float, silent_right: bool = True) -> bytes:
    """A 440 Hz tone at half scale on the left, silence (or the same tone) on the right."""
    frames = b"".join(
        struct.pack("<hh", left, 0 if silent_right else left)
        for left in (int(16383 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(int(seconds * RATE))))
    return wav_of(frames, 2, RATE)


def test_a_download_keeps_its_peaks_beside_it_matching_the_signal(api_for, provider, procs, settings):
    # Given a two-channel call: a tone on the agent's side, silence on the caller's
    procs.worker(concurrency=2)
    api = api_for("biz")
    api.register("CA1", provider.add("/biz/1.wav", body=two_channel_wav(2.0)), channels=["agent", "caller"])
    api.fetch("CA1")
    assert api.wait_status("CA1", {"ready", "failed"}, 30)["status"] == "ready"

    # Then its peaks are stored with it: 40 pixels of 50 ms, the left at half scale, the right exactly silent
    rec = Catalog(settings).get("biz", "CA1")
    assert rec is not None and rec.channels == 2 and rec.duration_seconds == 2.0
    peaks = parse_peaks(media_store(settings).get_peaks(rec.file_path))
    assert (peaks.channels, peaks.length, peaks.samples_per_pixel) == (2, 40, RATE // 20)
    assert [int(v) for v in peaks.maxs[0]] == [63] * 40 and [int(v) for v in peaks.mins[0]] == [-64] * 40
    assert not peaks.maxs[1].any() and not peaks.mins[1].any()
    assert_quiescent()


def test_backfill_computes_the_peaks_of_recordings_stored_before_without_downloading_them(procs, settings,
                                                                                         provider):
    # Given two ready recordings stored before downloads were decoded (no channel count, no peaks)
    for call_sid in ("OLD1", "OLD2"):
        make_ready("legacy", call_sid, make_wav(1.0), content_type="audio/wav")
    assert [r.call_sid for r in Catalog(settings).without_peaks(10)] == ["OLD1", "OLD2"]
    procs.worker(concurrency=2)

    # When the operator backfills them
    out = run_cli("backfill-peaks", "--business", "legacy").stdout
    assert "Asked for the peaks of 2 recordings" in out

    # Then each gets its peaks from the stored file, nothing is downloaded, and a second run has nothing to do
    wait_for(lambda: Catalog(settings).without_peaks(10) == [], 30, "the peaks of both recordings")
    for call_sid in ("OLD1", "OLD2"):
        rec = Catalog(settings).get("legacy", call_sid)
        assert rec is not None and rec.channels == 1 and rec.state == "ready"
        assert parse_peaks(media_store(settings).get_peaks(rec.file_path)).length == 20
    assert provider.total_downloads() == 0
    assert "Nothing to do" in run_cli("backfill-peaks").stdout
    assert_quiescent()


def test_the_peaks_endpoint_answers_with_the_stream_s_access_rules_and_refuses_malformed_requests(
        api_for, app, provider, procs, settings):
    procs.worker(concurrency=2)
    api, other = api_for("biz"), api_for("intruder")
    api.register("CA1", provider.add("/biz/1.wav", body=two_channel_wav(1.0)))
    api.fetch("CA1")
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready" and body["peaks_url"].startswith("/api/recordings/CA1/peaks?token=")
    client = app.test_client()
    stored = media_store(settings).get_peaks(Catalog(settings).get("biz", "CA1").file_path)

    # The status's link (no header), and a bearer token, both get the stored peaks, with a strong ETag.
    by_link = client.get(body["peaks_url"])
    assert (by_link.status_code, by_link.data, by_link.mimetype) == (200, stored, "application/octet-stream")
    assert by_link.headers["X-Content-Type-Options"] == "nosniff"
    assert api.client.get("/api/recordings/CA1/peaks", headers=api.headers).data == stored
    etag = by_link.headers["ETag"]
    again = client.get(body["peaks_url"], headers={"If-None-Match": etag})
    assert (again.status_code, again.data, again.headers["ETag"]) == (304, b"", etag)

    # Refused cleanly: a bad id, a stray parameter, no token, another recording's token, another business.
    token = body["peaks_url"].split("token=")[1]
    refusals = {
        "/api/recordings/bad.id/peaks": (400, "invalid_id"),
        f"/api/recordings/CA1/peaks?token={token}&format=json": (400, "invalid_query"),
        "/api/recordings/CA1/peaks": (401, "unauthorized"),
        f"/api/recordings/CA2/peaks?token={token}": (401, "unauthorized"),
    }
    for url, (code, error) in refusals.items():
        answer = client.get(url)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (code, error), url
    foreign = other.client.get("/api/recordings/CA1/peaks", headers=other.headers)
    assert (foreign.status_code, foreign.get_json()["error"]["code"]) == (404, "not_found")


def test_a_recording_stored_before_decoding_gets_its_peaks_on_its_next_play(api_for, procs, settings):
    make_ready("biz", "OLD", make_wav(1.0), content_type="audio/wav")
    procs.worker(concurrency=2)
    api = api_for("biz")
    assert api.status("OLD").get_json()["peaks_url"] is None
    first = api.client.get("/api/recordings/OLD/peaks", headers=api.headers)
    assert (first.status_code, first.headers["Retry-After"]) == (202, "2")
    wait_for(lambda: api.status("OLD").get_json()["peaks_url"] is not None, 30, "the peaks to be computed")
    assert parse_peaks(api.client.get("/api/recordings/OLD/peaks", headers=api.headers).data).channels == 1
