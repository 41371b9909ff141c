"""Rolling upgrades: download messages carry a version; a worker runs its own and the previous one, and drops
a newer one without losing the job (the sweeper dispatches it again, in the worker's version)."""

from __future__ import annotations

from tasks import app
from tasks.catalog.queries import Catalog
from tasks.dispatch import DOWNLOAD_TASK, MESSAGE_VERSION
from tasks.ops.sweeper import sweep
from tasks.settings import get_settings, reset_settings
from tasks.slots.client import get_redis
from tasks.slots.jobs import request_job
from tests.conftest import assert_quiescent, wait_for
from tests.provider import make_wav

AUDIO = make_wav(0.2)


def _queued_job(provider, n: int) -> tuple[str, str]:
    """A registered recording with its job queued, as the API leaves it, and no message sent yet."""
    settings = get_settings()
    call_sid = f"CA{n}"
    url = provider.add(f"/biz/{n}.wav", body=AUDIO)
    rec, _ = Catalog(settings).register("biz", call_sid, url, None)
    Catalog(settings).mark_wanted(rec.id)
    result = request_job(get_redis(), settings, "biz", call_sid, media_url=url, recording_id=rec.id)
    assert result.outcome == "enqueued" and result.task_id
    return call_sid, result.task_id


def test_a_worker_runs_messages_of_its_version_and_of_the_one_before(api_for, provider, procs):
    procs.worker(concurrency=2)
    api = api_for("biz")
    sent = {
        # (args, kwargs) as each generation of producers sends them
        "current": ([], {"v": MESSAGE_VERSION}),
        "previous": ([], {"v": MESSAGE_VERSION - 1}),
        "previous, positional": ([MESSAGE_VERSION - 1], {}),
    }
    calls = {}
    for n, (name, (extra_args, kwargs)) in enumerate(sent.items()):
        call_sid, task_id = _queued_job(provider, n)
        app.send_task(DOWNLOAD_TASK, args=["biz", call_sid, *extra_args], kwargs=kwargs, task_id=task_id)
        calls[name] = call_sid
    for name, call_sid in calls.items():
        assert api.wait_status(call_sid, {"ready", "failed"}, 30)["status"] == "ready", name
    assert [provider.downloads[f"/biz/{n}.wav"] for n in range(3)] == [1, 1, 1]
    assert_quiescent()


def test_a_newer_message_is_dropped_and_its_job_dispatched_again_by_the_sweeper(api_for, provider, procs,
                                                                               monkeypatch):
    monkeypatch.setenv("RECPLAY_RESERVATION_SECONDS", "1")  # the slot reserved for the dropped message runs out
    reset_settings()
    worker = procs.worker(concurrency=1)
    api = api_for("biz")
    call_sid, task_id = _queued_job(provider, 7)
    app.send_task(DOWNLOAD_TASK, args=["biz", call_sid], kwargs={"v": MESSAGE_VERSION + 1}, task_id=task_id)
    wait_for(lambda: "unknown message version" in worker.log(), 20, "the worker to drop the newer message")
    assert provider.requests["/biz/7.wav"] == 0
    assert api.state(call_sid) == "queued"

    def redispatched() -> bool:
        return bool(sweep(get_redis(), get_settings()).dispatched)

    wait_for(redispatched, 10, "the sweeper to dispatch the overdue job again", interval=0.2)
    assert api.wait_status(call_sid, {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.downloads["/biz/7.wav"] == 1
    assert_quiescent()
