from __future__ import annotations

from tests.conftest import assert_quiescent
from tests.provider import make_wav


def test_one_recording_is_fetched_and_streamed(api_for, provider, procs):
    procs.worker(concurrency=2)
    audio = make_wav(1.0)
    url = provider.add("/biz1/a.wav", body=audio)
    api = api_for("biz1")
    assert api.register("CA1", url).status_code == 201
    assert api.fetch("CA1").status_code == 202
    body = api.wait_status("CA1", {"ready", "failed"}, 20)
    assert body["status"] == "ready", body
    got = api.client.get(body["stream_url"])
    assert got.status_code == 200
    assert got.data == audio
    assert provider.downloads["/biz1/a.wav"] == 1
    assert_quiescent()
