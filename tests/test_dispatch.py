"""The download message a job script pushes (tasks/dispatch.py download_message, request.lua): byte for byte the
message Celery itself publishes, on the queue a worker reads, and pushed only when the job gets a slot."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.catalog.queries import Catalog
from tasks.dispatch import (
    DOWNLOAD_QUEUE,
    HANDOFF_QUEUE,
    download_message,
    send_download,
    send_handed,
    task_sent_event,
)
from tasks.recordings import Recordings
from tasks.settings import get_settings, reset_settings
from tasks.slots import keys
from tasks.slots.client import get_redis
from tasks.slots.jobs import _job_keys, finish_job, get_job, new_task_id, request_job
from tasks.slots.scripts import script
from tasks.slots.semaphore import Acquired, BusinessSlots
from tests.conftest import ROOT

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _without_tag(raw: bytes | str) -> tuple[dict[str, Any], str]:
    message = json.loads(raw)
    return message, message["properties"].pop("delivery_tag")


@pytest.mark.parametrize("queue", [DOWNLOAD_QUEUE, HANDOFF_QUEUE])
@pytest.mark.parametrize(("business_id", "call_sid", "task_id"), [
    ("biz1", "CA1", "task-1"),
    ("biz-2", "CA_2.x", "0d2f4c4e-7a3b-4b8e-9c1d-2e5f6a7b8c9d"),  # from the thread's template
    ("biz1", 'CA"1\\é', "task-3"),  # not plain: built by Celery itself, escapes and all
])
def test_the_message_a_script_pushes_is_the_one_celery_publishes(business_id: str, call_sid: str, task_id: str,
                                                                 queue: str, data_dir: Path) -> None:
    client = get_redis()
    send_download(business_id, call_sid, task_id, handoff=queue == HANDOFF_QUEUE)
    (published,) = client.lrange(queue, 0, -1)
    built = download_message(business_id, call_sid, task_id, queue)
    assert built.queue == queue

    theirs, their_tag = _without_tag(published)
    mine, my_tag = _without_tag(built.payload)
    assert mine == theirs
    assert UUID.fullmatch(my_tag) and UUID.fullmatch(their_tag) and my_tag != their_tag  # a tag per message
    assert json.loads(base64.b64decode(mine["body"])) == [[business_id, call_sid], {"v": 1},
                                                         {"callbacks": None, "errbacks": None, "chain": None,
                                                          "chord": None}]
    assert (mine["headers"]["task"], mine["headers"]["id"]) == ("tasks.download", task_id)
    assert download_message(business_id, call_sid, task_id, queue).payload != built.payload  # a new tag each time


def test_handed_jobs_get_celerys_messages_on_the_hand_off_queue_and_their_sent_events(
        data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A release's hand-offs go out in one round trip (send_handed), each message the one ``send_task`` would
    publish on the hand-off queue, each with its task-sent event naming that queue; a worker runs them."""
    client = get_redis()
    handed = [("CA1", "0f3c.1"), ("CA2", "0f3c.2"), ('CA"3', "0f3c.3")]
    for call_sid, task_id in handed:
        send_download("biz1", call_sid, task_id, handoff=True)
    theirs = [_without_tag(raw)[0] for raw in reversed(client.lrange(HANDOFF_QUEUE, 0, -1))]
    client.delete(HANDOFF_QUEUE)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    try:
        with caplog.at_level(logging.INFO, logger="tasks.dispatch"):
            send_handed("biz1", handed, by="limit")
        events = [_next_event(pubsub) for _ in handed]
    finally:
        pubsub.close()
    ours = [_without_tag(raw)[0] for raw in reversed(client.lrange(HANDOFF_QUEUE, 0, -1))]
    assert ours == theirs
    assert client.llen(DOWNLOAD_QUEUE) == 0
    assert [(e["type"], e["uuid"], e["queue"], e["routing_key"]) for e in events] == [
        ("task-sent", task_id, HANDOFF_QUEUE, HANDOFF_QUEUE) for _, task_id in handed]
    assert [r.getMessage() for r in caplog.records if r.name == "tasks.dispatch"] == [
        f"dispatched business_id=biz1 call_sid={c} task_id={t} countdown=None by=limit" for c, t in handed]
    send_handed("biz1", [])  # nothing handed: nothing sent
    assert client.llen(HANDOFF_QUEUE) == len(handed)


def test_a_request_pushes_its_message_only_when_it_reserves_a_slot(data_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECPLAY_MAX_CONCURRENT", "1")
    reset_settings()
    client, settings = get_redis(), get_settings()

    def ask(call_sid: str):  # type: ignore[no-untyped-def]
        task_id = new_task_id()
        message = download_message("biz1", call_sid, task_id)
        result = request_job(client, settings, "biz1", call_sid, media_url="http://h/x", recording_id=1,
                             task_id=task_id, message=(message.queue, message.payload))
        return result, message.payload

    first, pushed = ask("CA1")
    assert (first.outcome, first.sent) == ("enqueued", True)
    assert client.lrange(DOWNLOAD_QUEUE, 0, -1) == [pushed]
    assert json.loads(pushed)["headers"]["id"] == first.task_id

    again, _ = ask("CA1")  # the same job: nothing new
    parked, _ = ask("CA2")  # the business's one slot is taken: it waits in Redis, without a message
    assert (again.outcome, again.sent, parked.outcome, parked.sent) == ("exists", False, "parked", False)
    assert client.lrange(DOWNLOAD_QUEUE, 0, -1) == [pushed]

    plain = request_job(client, settings, "biz2", "CA3", media_url="http://h/x", recording_id=1)
    assert (plain.outcome, plain.sent) == ("enqueued", False)  # no message given: the caller sends it
    # A caller of the script's eight arguments, from before it took a message, gets a job and no push.
    older = script(client, "request")(keys=_job_keys("biz4", "CA5"),
                                      args=["CA5", "t5", "http://h/x", 1, 60000, "fetch", 5, 30000])
    assert older == ["enqueued", "t5", 0]
    assert client.llen(DOWNLOAD_QUEUE) == 1

    with pytest.raises(ValueError, match="task_id"):
        request_job(client, settings, "biz3", "CA4", media_url="http://h/x", recording_id=1,
                    message=(DOWNLOAD_QUEUE, download_message("biz3", "CA4", "t").payload))


def test_a_request_publishes_the_task_sent_event_with_the_message_it_pushes_and_names_the_business(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event goes out in the script's step, only with a pushed message: not for a job that exists or parks.
    The business joins the set of businesses (the sweep's list) in the same step, when it parks too."""
    monkeypatch.setenv("RECPLAY_MAX_CONCURRENT", "1")
    reset_settings()
    client, settings = get_redis(), get_settings()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")

    def ask(business_id: str, call_sid: str) -> tuple[Any, str]:
        task_id = new_task_id()
        message = download_message(business_id, call_sid, task_id)
        result = request_job(client, settings, business_id, call_sid, media_url="http://h/x", recording_id=1,
                             task_id=task_id, message=(message.queue, message.payload),
                             event=task_sent_event(message))
        return result, task_id

    try:
        first, first_task = ask("biz1", "CA1")
        again, _ = ask("biz1", "CA1")
        sent, sent_task = ask("biz2", "CA2")  # biz2's one slot
        client.srem(keys.BUSINESSES, "biz2")
        parked, _ = ask("biz2", "CA3")
        assert [r.outcome for r in (first, again, sent, parked)] == ["enqueued", "exists", "enqueued", "parked"]
        client.publish(*_event_of(download_message("biz9", "CA9", "after")))  # a mark after the script
        events = [_next_event(pubsub)["uuid"] for _ in range(3)]
    finally:
        pubsub.close()
    assert events == [first_task, sent_task, "after"]  # none for the job that existed, nor for the parked one
    assert client.smembers(keys.BUSINESSES) == {"biz1", "biz2"}  # biz2 again: its parked job put it back


def test_a_message_built_in_another_thread_names_that_thread_as_celery_does(data_dir: Path) -> None:
    # reply_to names the sending thread (under gevent, each request's greenlet): the process's one template
    # fills it in per message.
    client = get_redis()
    download_message("biz1", "CA0", "task-0")  # the template exists before the other thread asks
    found: dict[str, Any] = {}

    def in_thread() -> None:
        send_download("biz1", "CA1", "task-1")
        found["built"] = download_message("biz1", "CA1", "task-1")

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(10)
    (published,) = client.lrange(DOWNLOAD_QUEUE, 0, -1)
    theirs, _ = _without_tag(published)
    mine, _ = _without_tag(found["built"].payload)
    assert mine == theirs
    assert mine["properties"]["reply_to"] != json.loads(download_message("biz1", "CA1", "task-1").payload)[
        "properties"]["reply_to"]


def _event_of(message: Any) -> tuple[str, str]:
    event = task_sent_event(message)
    assert event is not None  # task_send_sent_event is on (celeryconfig.py)
    return event


def _next_event(pubsub: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = pubsub.get_message(timeout=1.0)
        if got and got["type"] == "pmessage":
            envelope = json.loads(got["data"])
            return {"channel": got["channel"], "envelope": envelope,
                    **json.loads(base64.b64decode(envelope["body"]))}
    raise AssertionError("no event within 10 s")


@pytest.mark.parametrize("call_sid", ["CA1", 'CA"1'])
def test_a_pushed_message_gets_the_task_sent_event_celery_would_publish(call_sid: str, data_dir: Path) -> None:
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    try:
        send_download("biz1", call_sid, "task-1")
        theirs = _next_event(pubsub)
        get_redis().publish(*_event_of(download_message("biz1", call_sid, "task-1")))
        ours = _next_event(pubsub)
    finally:
        pubsub.close()
    assert ours["channel"] == theirs["channel"] and ours["channel"].endswith("celeryev/task.sent")
    moments = ("timestamp", "clock")  # when it was sent, and the sender's event clock, which moves on each time
    assert ours["clock"] > theirs["clock"]
    envelopes = [_without_tag(json.dumps(e.pop("envelope"))) for e in (ours, theirs)]
    for envelope, tag in envelopes:
        assert UUID.fullmatch(tag)
        del envelope["body"]  # compared decoded, below
    assert envelopes[0][0] == envelopes[1][0]
    assert envelopes[0][1] != envelopes[1][1]
    assert {k: v for k, v in ours.items() if k not in moments} == {k: v for k, v in theirs.items() if k not in moments}
    assert (ours["type"], ours["uuid"], ours["name"], ours["queue"]) == ("task-sent", "task-1", "tasks.download",
                                                                         "recplay")


def test_a_failed_recording_asked_for_again_is_wanted_only_when_a_new_job_exists(data_dir: Path,
                                                                                  provider: Any) -> None:
    """The catalog row follows the job: a stream (or peaks) request that meets the job still failed leaves the row
    failed; a fetch of it makes a new job, pushes its message and marks the row wanted."""
    client, settings = get_redis(), get_settings()
    recs = Recordings(client, settings, "biz1")
    rec, _ = recs.register("CA1", provider.url("/CA1.wav"), None)
    assert recs.request(rec, "fetch").status == "queued"
    job = get_job(client, "biz1", "CA1")
    assert job is not None
    got = BusinessSlots(client, "biz1", settings).acquire("CA1", job.task_id, "w1")
    assert isinstance(got, Acquired)
    assert finish_job(client, settings, "biz1", "CA1", got.fence, "failed", error="provider answered 404")
    Catalog(settings).mark_failed(rec.id, "provider answered 404", 1)
    client.delete(DOWNLOAD_QUEUE)

    failed = recs.get("CA1")
    assert failed is not None and failed.state == "failed"
    assert recs.request(failed, "stream").status == "failed"
    assert recs.get("CA1").state == "failed"  # type: ignore[union-attr]
    assert client.llen(DOWNLOAD_QUEUE) == 0

    again = recs.request(failed, "fetch")
    assert again.status == "queued"
    assert recs.get("CA1").state == "wanted"  # type: ignore[union-attr]
    (pushed,) = client.lrange(DOWNLOAD_QUEUE, 0, -1)
    assert json.loads(pushed)["headers"]["id"] == get_job(client, "biz1", "CA1").task_id  # type: ignore[union-attr]


def test_an_api_process_loads_celerys_configuration_and_the_message_templates_as_it_starts(data_dir: Path) -> None:
    """Not in the first request that creates a job (in a burst, the others wait behind it)."""
    check = ("import sys\n"
             "from api import create_app\n"
             "assert 'celeryconfig' not in sys.modules\n"
             "create_app()\n"
             "from tasks.dispatch import _template\n"
             "assert 'celeryconfig' in sys.modules and 'tasks.worker.broker' in sys.modules\n"
             "assert _template.cache_info().currsize == 2, _template.cache_info()\n"
             "from tasks import dispatch\n"
             "print(dispatch._sent_event_envelope[0])\n")
    env = {"PATH": "/usr/bin:/bin", "RECPLAY_DATA_DIR": str(data_dir), "RECPLAY_DEV": "1", "PYTHONPATH": str(ROOT),
           "REDIS_URL": os.environ["REDIS_URL"]}
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    db = os.environ["REDIS_URL"].rsplit("/", 1)[1]
    # the channel of task-sent events, named on a broker connection of its own
    assert (run.returncode, run.stdout.strip()) == (0, f"/{db}.celeryev/task.sent"), run.stderr[-3000:]


def test_an_api_process_starts_when_the_broker_does_not_answer(data_dir: Path) -> None:
    """It does not wait for the broker to name the events' channel: the first new job will."""
    check = ("from api import create_app\n"
             "create_app()\n"
             "from tasks import dispatch\n"
             "print(dispatch._sent_event_envelope)\n")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nothing listens on
    env = {"PATH": "/usr/bin:/bin", "RECPLAY_DATA_DIR": str(data_dir), "RECPLAY_DEV": "1", "PYTHONPATH": str(ROOT),
           "REDIS_URL": f"redis://127.0.0.1:{closed.getsockname()[1]}/0"}
    try:
        run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    finally:
        closed.close()
    assert (run.returncode, run.stdout.strip()) == (0, "None"), run.stderr[-3000:]
    assert "the task-sent events' channel is not named yet" in run.stderr
