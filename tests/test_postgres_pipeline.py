"""The whole pipeline on PostgreSQL: API and a real worker process share the catalog on the real server."""

from __future__ import annotations

from tests.conftest import assert_quiescent, run_threads
from tests.provider import make_wav


def test_a_recording_is_fetched_and_streamed_with_the_catalog_on_postgresql(pg_url, api_for, provider, procs):
    procs.worker(concurrency=2)
    audio = make_wav(0.5)
    url = provider.add("/pgbiz/a.wav", body=audio)
    api = api_for("pgbiz")
    assert api.register("CA1", url).status_code == 201
    assert api.fetch("CA1").status_code == 202
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready", body
    got = api.client.get(body["stream_url"], headers={"Range": "bytes=0-99"})
    assert got.status_code == 206
    assert got.data == audio[:100]
    assert provider.downloads["/pgbiz/a.wav"] == 1
    assert_quiescent()


def test_concurrent_registrations_through_the_api_on_postgresql_answer_one_201(pg_url, api_for, provider):
    url = provider.add("/pgbiz/b.wav", body=make_wav(0.1))
    api = api_for("pgbiz")
    codes = run_threads(12, lambda i: api.register("CA-same", url).status_code)
    assert sorted(codes) == [200] * 11 + [201]
    listed = api.client.get("/api/recordings", headers=api.headers).get_json()["items"]
    assert [item["call_sid"] for item in listed] == ["CA-same"]
