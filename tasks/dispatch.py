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


def send_download(business_id: str, call_sid: str, task_id: str, countdown: float | None = None) -> None:
    app.send_task(
        DOWNLOAD_TASK,
        args=[business_id, call_sid],
        kwargs={"v": MESSAGE_VERSION},
        task_id=task_id,
        countdown=countdown if countdown else None,
    )
    log.info("dispatched business_id=%s call_sid=%s task_id=%s countdown=%s",
             business_id, call_sid, task_id, countdown)


def send_handed(business_id: str, handed: list[tuple[str, str]]) -> None:
    """Send the message of every job a release or sweep handed a slot (or a new task id) to."""
    for call_sid, task_id in handed:
        send_download(business_id, call_sid, task_id)
