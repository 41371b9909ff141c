"""A real worker writes heartbeats, answers pings, and logs every line about a job with its job fields."""

from __future__ import annotations

import json
import logging
import signal

from tasks import app as celery_app
from tasks.logs import JobFieldsFilter, TextFormatter, job_context
from tasks.ops.workers import check_workers, heartbeat_ages
from tests.conftest import run_cli, wait_for
from tests.provider import Behaviour, make_wav


def json_lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_worker_heartbeats_answers_pings_and_logs_json_with_job_fields(api_for, provider, procs, rclient):
    worker = procs.worker(concurrency=2,
                          env={"RECPLAY_LOG_FORMAT": "json", "RECPLAY_WORKER_HEARTBEAT_SECONDS": "1"})
    name = f"{worker.name}@127.0.0.1"

    # Its heartbeat is in Redis and fresh; it answers a ping; `recplay workers` says so.
    wait_for(lambda: name in heartbeat_ages(rclient), 10, "the worker's first heartbeat")
    state = check_workers(celery_app, rclient, [name], timeout=5, with_tasks=True)[name]
    assert state.answered and not state.gone(1.0) and state.running == frozenset()
    assert f"{name:<40} alive" in run_cli("workers").stdout

    # When it downloads a recording (a first attempt that fails with 500, then a second that succeeds)...
    api = api_for("logbiz")
    url = provider.add("/logbiz/CAlog.wav", Behaviour(body=make_wav(0.2), fail_first=[500]))
    assert api.register("CAlog", url).status_code == 201
    assert api.fetch("CAlog").status_code == 202
    assert api.wait_status("CAlog", {"ready", "failed"}, 30)["status"] == "ready"

    # ...every line about the job carries business_id, call_sid, task_id, and the attempt once it is known.
    def logged() -> list[dict] | None:
        lines = [r for r in json_lines(worker.log()) if r.get("call_sid") == "CAlog"]
        return lines if any(r["message"].startswith("Task tasks.download") and "succeeded" in r["message"]
                            and r["attempt"] == 2 for r in lines) else None

    lines = wait_for(logged, 15, "the worker's log of the second attempt")
    assert all(r["business_id"] == "logbiz" and r["task_id"] for r in lines), lines
    ours = [r for r in lines if r["logger"] == "tasks.download"]
    by_message = {(r["message"].split(" ")[0], r["attempt"]) for r in ours}
    assert {("downloading", 1), ("attempt", 1), ("downloading", 2), ("ready", 2)} <= by_message, lines
    received = [r for r in lines if r["message"].endswith("received")]
    assert len(received) == 2 and all(r["attempt"] is None for r in received)
    task_ids = {r["task_id"] for r in lines}
    assert len(task_ids) == 2  # the retry is a new task id; each line names its own
    mentions = [r for r in json_lines(worker.log()) if "CAlog" in r["message"] or r["task_id"] in task_ids]
    assert all(r["call_sid"] == "CAlog" for r in mentions), mentions

    # A killed worker stops answering; a stopped one removes its heartbeat.
    worker.kill(signal.SIGKILL)
    state = check_workers(celery_app, rclient, [name], timeout=1)[name]
    assert not state.answered and state.gone(1.0)
    assert name in heartbeat_ages(rclient)
    clean = procs.worker(concurrency=1)
    clean_name = f"{clean.name}@127.0.0.1"
    wait_for(lambda: clean_name in heartbeat_ages(rclient), 10, "the second worker's heartbeat")
    clean.stop()
    assert clean_name not in heartbeat_ages(rclient)


def test_text_lines_append_the_job_fields_they_lack():
    record_log = logging.getLogger("tests.text")
    handler = logging.StreamHandler()
    handler.addFilter(JobFieldsFilter())
    handler.setFormatter(TextFormatter("%(message)s"))
    lines: list[str] = []
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    record_log.addHandler(handler)
    try:
        with job_context(business_id="b1", call_sid="CA9", task_id="t-1", attempt=3):
            record_log.warning("lease lost business_id=%s call_sid=%s", "b1", "CA9")
            record_log.warning("no fields here")
            record_log.warning("dispatched business_id=%s call_sid=%s task_id=%s", "b1", "CA9", "t-next")
        record_log.warning("dispatched business_id=%s call_sid=%s task_id=%s", "b2", "CA8", "t-2")
        record_log.warning("a line about no job")
    finally:
        record_log.removeHandler(handler)
    assert lines == [
        "lease lost business_id=b1 call_sid=CA9 task_id=t-1 attempt=3",
        "no fields here business_id=b1 call_sid=CA9 task_id=t-1 attempt=3",
        "dispatched business_id=b1 call_sid=CA9 task_id=t-next attempt=3",
        "dispatched business_id=b2 call_sid=CA8 task_id=t-2 attempt=-",
        "a line about no job",
    ]
