"""Duplicate requests answered from the job registry: no catalog statement once a recording's job (or its stored
file) is known in Redis, counted by a listener on the catalog's engine; ownership checked all the same."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from tasks.catalog.queries import get_engine
from tasks.recordings import fact_of
from tasks.slots import events, keys
from tasks.slots.facts import announce_ready, read_fact, write_fact
from tests.conftest import run_threads
from tests.media import make_ready


@pytest.fixture
def statements(settings):
    """How many SQL statements the catalog's engine runs (``statements[0]``) from here on."""
    engine = get_engine(settings)
    seen = [0]

    def count(*args):
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_duplicate_fetches_and_statuses_of_a_queued_recording_read_no_catalog(app, api_for, provider, rclient,
                                                                             statements):
    api = api_for("biz")
    assert api.register("CA1", provider.url("/biz/CA1.wav")).status_code == 201
    first = api.fetch("CA1")
    assert first.status_code == 202
    task_id = rclient.hget(keys.job("biz", "CA1"), "task_id")
    statements[0] = 0

    def duplicate(i: int):
        client = app.test_client()
        headers = api.headers
        answer = client.post("/api/recordings/CA1/fetch", headers=headers)
        status = client.get("/api/recordings/CA1", headers=headers)
        return answer.status_code, answer.headers["Retry-After"], answer.get_json(), status.get_json()

    answers = run_threads(40, duplicate)
    assert statements[0] == 0
    assert {(code, retry) for code, retry, _, _ in answers} == {(202, "2")}
    assert all(body == first.get_json() for _, _, body, _ in answers)
    assert all(status == first.get_json() for _, _, _, status in answers)
    assert first.get_json()["status"] == "queued"
    # Still the one job and the one message.
    assert rclient.hget(keys.job("biz", "CA1"), "task_id") == task_id
    assert rclient.llen("recplay") == 1  # the broker queue (celeryconfig.task_default_queue)


def test_another_business_never_sees_the_job_of_a_call_sid_it_does_not_own(api_for, provider, rclient,
                                                                          statements):
    owner, other = api_for("biz"), api_for("other")
    owner.register("CA1", provider.url("/biz/CA1.wav"))
    assert owner.fetch("CA1").status_code == 202
    for answer in (other.fetch("CA1"), other.status("CA1")):
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "not_found")
    # Its own recording of the same call_sid is its own job, with its own fact.
    other.register("CA1", provider.url("/other/CA1.wav"))
    assert other.fetch("CA1").status_code == 202
    assert rclient.hget(keys.job("other", "CA1"), "recording_id") != rclient.hget(keys.job("biz", "CA1"),
                                                                                  "recording_id")
    assert rclient.hget(keys.fact("other", "CA1"), "id") == rclient.hget(keys.job("other", "CA1"), "recording_id")


def test_a_ready_recording_is_answered_from_redis_and_a_deleted_one_is_not(api_for, statements):
    api = api_for("biz")
    make_ready("biz", "CA2", b"ID3" + bytes(1000))
    assert api.fetch("CA2").status_code == 200  # the catalog is read once, and the fact kept
    statements[0] = 0
    again = api.fetch("CA2")
    assert statements[0] == 0
    body = again.get_json()
    assert (again.status_code, body["status"], body["size_bytes"]) == (200, "ready", 1003)
    assert api.client.get(body["stream_url"]).data == b"ID3" + bytes(1000)
    assert api.client.delete("/api/recordings/CA2", headers=api.headers).status_code == 204
    assert api.fetch("CA2").status_code == 404


def test_a_new_or_failed_recording_is_the_catalogs_to_answer(api_for, provider, rclient, statements):
    api = api_for("biz")
    api.register("CA3", provider.url("/biz/CA3.wav"))
    statements[0] = 0
    assert api.status("CA3").get_json()["status"] == "new"
    assert statements[0] > 0  # no job: the catalog says `new`
    api.fetch("CA3")
    rclient.hset(keys.job("biz", "CA3"), mapping={"status": "failed", "error": "provider said 404"})
    statements[0] = 0
    body = api.status("CA3").get_json()
    assert (body["status"], body["error"]) == ("failed", "provider said 404")
    assert statements[0] > 0


def test_a_fact_written_after_the_delete_does_not_bring_the_recording_back(api_for, rclient, settings):
    """The race a worker or a status read can lose to DELETE: the row was read (or marked ready) before the
    delete, its fact is written after it. With a store that cannot check for the file on each request (S3),
    a stale fact would answer ``ready`` for a deleted recording."""
    api = api_for("biz")
    rec = make_ready("biz", "CA4", b"ID3" + bytes(100))
    stale = fact_of(rec)
    assert api.client.delete("/api/recordings/CA4", headers=api.headers).status_code == 204
    assert write_fact(rclient, "biz", "CA4", stale) is False
    assert read_fact(rclient.hgetall(keys.fact("biz", "CA4"))) is None
    assert api.status("CA4").status_code == 404
    assert api.fetch("CA4").status_code == 404
    # A new registration of the same call has a new id: its fact is written, the tombstone goes.
    again = make_ready("biz", "CA4", b"ID3" + bytes(200))
    assert again.id != rec.id
    assert write_fact(rclient, "biz", "CA4", fact_of(again)) is True
    assert read_fact(rclient.hgetall(keys.fact("biz", "CA4"))) == fact_of(again)
    assert api.fetch("CA4").get_json()["size_bytes"] == 203


def test_the_ready_announcement_settles_writes_the_fact_and_publishes_in_one_call_but_not_over_a_tombstone(
        api_for, rclient, settings):
    api = api_for("biz")
    rec = make_ready("biz", "CA5", b"ID3" + bytes(100))
    listener = rclient.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.events("biz", "CA5"))
    rclient.zadd(keys.claimed("biz"), {"CA5": 1})
    text = events.message("ready", 1, "", 7, {"file": rec.file_path})
    assert announce_ready(rclient, "biz", "CA5", fact_of(rec), text) is True
    assert rclient.zscore(keys.claimed("biz"), "CA5") is None
    assert read_fact(rclient.hgetall(keys.fact("biz", "CA5"))) == fact_of(rec)
    published = []
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:
        found = listener.get_message(timeout=0.2)  # None for the subscription's own confirmation
        if found:
            published.append(found["data"])
    assert published == [text]

    # Deleted meanwhile: the job is settled and the event sent, but the fact stays buried.
    assert api.client.delete("/api/recordings/CA5", headers=api.headers).status_code == 204
    rclient.zadd(keys.claimed("biz"), {"CA5": 2})
    assert announce_ready(rclient, "biz", "CA5", fact_of(rec), text) is False
    assert rclient.zscore(keys.claimed("biz"), "CA5") is None
    assert read_fact(rclient.hgetall(keys.fact("biz", "CA5"))) is None
    assert api.status("CA5").status_code == 404
    listener.close()
