"""Provider faults, end to end with a real worker: errors are retried with backoff (honouring Retry-After) up to
RECPLAY_MAX_ATTEMPTS, permanent errors fail at once, and a body that is empty, cut short or not audio is never
stored or served."""

from __future__ import annotations

import pytest

from tasks.slots.jobs import get_job
from tests.conftest import assert_quiescent, wait_for
from tests.crashkit import assert_stored_whole, media_files, stored
from tests.provider import Behaviour, make_wav

AUDIO = make_wav(1.0)

pytestmark = pytest.mark.slow


def ends(api, call_sid, timeout=30):
    return api.wait_status(call_sid, {"ready", "failed"}, timeout)


def test_a_provider_failing_twice_with_500_is_retried_and_the_third_download_is_stored(api_for, provider, procs,
                                                                                     settings):
    procs.worker(concurrency=2)
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, fail_first=[500, 500]))
    api.fetch("CA1")

    body = ends(api, "CA1")

    assert body["status"] == "ready", body
    assert body["attempts"] == 3
    assert provider.requests["/biz1/a.wav"] == 3
    assert provider.downloads["/biz1/a.wav"] == 1
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert_quiescent()


def test_a_429_is_retried_no_sooner_than_its_retry_after(api_for, provider, procs, settings):
    procs.worker(concurrency=2)
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, fail_first=[429], retry_after="2"))
    api.fetch("CA1")

    body = ends(api, "CA1")

    assert body["status"] == "ready", body
    first, second = provider.request_times["/biz1/a.wav"]
    assert second - first >= 2.0  # the backoff alone would be 0.2 s
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert_quiescent()


def test_a_404_fails_after_exactly_one_request_and_nothing_is_stored(api_for, provider, procs, settings):
    procs.worker(concurrency=2)
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, fail_first=[404]))
    api.fetch("CA1")

    body = ends(api, "CA1")

    assert body["status"] == "failed", body
    assert body["attempts"] == 1
    assert "404" in body["error"]
    assert provider.requests["/biz1/a.wav"] == 1
    assert api.stream("CA1").status_code == 502
    assert media_files(settings, "biz1") == []
    assert provider.requests["/biz1/a.wav"] == 1  # a failed recording is not fetched again by streaming
    assert_quiescent()


@pytest.mark.parametrize("fault", [
    pytest.param({"empty": True}, id="empty"),
    pytest.param({"truncate_to": 1000}, id="truncated"),
    pytest.param({"content_type": "text/html"}, id="not-audio"),
])
def test_a_bad_body_is_never_stored_or_served(api_for, provider, procs, settings, fault):
    # Given a provider that answers 200 with a body that is empty, shorter than its Content-Length, or not audio
    procs.worker(concurrency=2, env={"RECPLAY_MAX_ATTEMPTS": "2"})
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", Behaviour(body=AUDIO, **fault)))
    api.fetch("CA1")

    # Then the recording fails (a non-audio answer at once, the others after their last attempt)
    body = ends(api, "CA1")
    assert body["status"] == "failed", body
    expected_attempts = 1 if "content_type" in fault else 2
    assert body["attempts"] == expected_attempts
    assert provider.requests["/biz1/a.wav"] == expected_attempts

    # And nothing was kept, not even a temporary file, and nothing is served (the catalog hears of the failure
    # just after the job registry, which the status reads)
    assert media_files(settings, "biz1") == []
    rec = wait_for(lambda: (r := stored(settings, "biz1", "CA1")[0]).state == "failed" and r, 10,
                   "the catalog to record the failure")
    assert rec.file_path is None and stored(settings, "biz1", "CA1")[1] is None
    assert api.stream("CA1").status_code == 502
    assert_quiescent()


def test_a_body_cut_short_is_retried_and_the_whole_one_stored(api_for, provider, procs, rclient, settings):
    procs.worker(concurrency=2, env={"RECPLAY_RETRY_BACKOFF_SECONDS": "2"})
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, truncate_to=1000))
    api.fetch("CA1")
    wait_for(lambda: (job := get_job(rclient, "biz1", "CA1")) and job.status == "queued" and job.attempts == 1,
             20, "the cut-short attempt to be recorded")
    provider.add("/biz1/a.wav", Behaviour(body=AUDIO))

    body = ends(api, "CA1")

    assert body["status"] == "ready", body
    assert body["attempts"] == 2
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert media_files(settings, "biz1") == ["CA1-1.wav", "CA1-1.wav.peaks"]
    assert api.stream("CA1").data == AUDIO
    assert_quiescent()


def test_a_provider_slower_than_the_read_timeout_is_retried(api_for, provider, procs, rclient, settings):
    # Given a 1 s read timeout and a provider that first takes 3 s to answer
    procs.worker(concurrency=2, env={"RECPLAY_READ_TIMEOUT": "1", "RECPLAY_RETRY_BACKOFF_SECONDS": "2"})
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=AUDIO, delay=3.0))
    api.fetch("CA1")
    job = wait_for(lambda: (j := get_job(rclient, "biz1", "CA1")) and j.attempts == 1 and j.status == "queued" and j,
                   20, "the timed-out attempt to be recorded")
    assert "ReadTimeout" in job.error
    provider.add("/biz1/a.wav", Behaviour(body=AUDIO))

    # Then the retry gets the media
    body = ends(api, "CA1")
    assert body["status"] == "ready", body
    assert body["attempts"] == 2
    assert provider.requests["/biz1/a.wav"] == 2
    assert_stored_whole(settings, "biz1", "CA1", AUDIO)
    assert_quiescent()


@pytest.mark.parametrize(("env", "reason"), [
    # Bytes keep coming, but far too slowly: cut off at the end of the first rate window.
    ({"RECPLAY_RATE_WINDOW_SECONDS": "2", "RECPLAY_MIN_BYTES_PER_SECOND": "100000"},
     "under 100000 bytes/s (RECPLAY_MIN_BYTES_PER_SECOND)"),
    # Fast enough, but longer than a download may take.
    ({"RECPLAY_MAX_DOWNLOAD_SECONDS": "2", "RECPLAY_MIN_BYTES_PER_SECOND": "0"},
     "download cut off after 2s (RECPLAY_MAX_DOWNLOAD_SECONDS)"),
])
def test_a_trickling_provider_is_cut_off_and_its_slot_freed_at_once(api_for, provider, procs, settings, env,
                                                                    reason):
    # Given a provider that spreads a 16 KB body over 20 s (800 bytes/s), and a single attempt
    procs.worker(concurrency=2, env={"RECPLAY_MAX_ATTEMPTS": "1", **env})
    api = api_for("biz1")
    api.register("CA1", provider.add("/biz1/a.wav", body=make_wav(1.0), trickle_seconds=20))
    api.fetch("CA1")

    # Then the attempt fails (a retryable error, here on the last attempt) long before the body could end,
    # nothing is stored, and the business holds no slot
    body = ends(api, "CA1", timeout=15)
    assert body["status"] == "failed" and body["error"].endswith(reason), body
    assert provider.downloads["/biz1/a.wav"] == 1
    assert media_files(settings, "biz1") == []
    assert_quiescent()
