"""Sends download messages. The API and the sweeper use it without importing the task code."""

from __future__ import annotations

import logging

from tasks import app

log = logging.getLogger(__name__)

#: The tasks' wire names: messages name their task by these, so they never change when code moves.
DOWNLOAD_TASK = "tasks.download"
SWEEP_TASK = "tasks.sweep"
#: Version of the message's arguments; a worker accepts this one and the one before it (rolling upgrades).
MESSAGE_VERSION = 1


#: The queues, in the order workers consume them (``queue_order_strategy: priority``, celeryconfig.py): sweeps,
#: then hand-offs (a slot waits for them, with a short reservation), then the rest.
SWEEP_QUEUE, HANDOFF_QUEUE, DOWNLOAD_QUEUE = "recplay-sweep", "recplay-handoff", "recplay"


def send_download(business_id: str, call_sid: str, task_id: str, countdown: float | None = None,
                  handoff: bool = False) -> None:
    """Send a download message; ``handoff`` for a job a release or a sweep reserved a slot for."""
    app.send_task(
        DOWNLOAD_TASK,
        args=[business_id, call_sid],
        kwargs={"v": MESSAGE_VERSION},
        task_id=task_id,
        countdown=countdown if countdown else None,
        queue=HANDOFF_QUEUE if handoff else DOWNLOAD_QUEUE,
    )
    log.info("dispatched business_id=%s call_sid=%s task_id=%s countdown=%s",
             business_id, call_sid, task_id, countdown)


def send_handed(business_id: str, handed: list[tuple[str, str]]) -> None:
    """Send the message of every job a release or sweep handed a slot (or a new task id) to."""
    for call_sid, task_id in handed:
        send_download(business_id, call_sid, task_id, handoff=True)
