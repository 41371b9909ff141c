"""Sends download messages. The API and the sweeper use it without importing the task code."""

from __future__ import annotations

import base64
import logging
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import kombu.exceptions
from kombu.utils.json import dumps

from tasks import app
from tasks.slots.client import get_redis

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


def prepare() -> None:
    """Load the Celery app's configuration and build the download messages' templates now, in a process about to
    send messages (an API worker as it starts), rather than in the first request that creates a job: in a burst,
    that request's process imported celeryconfig and the broker transport and built the templates while others
    waited (a tenth of one API worker's samples)."""
    for queue in (DOWNLOAD_QUEUE, HANDOFF_QUEUE):
        _template(app.conf.task_send_sent_event, queue)
    if app.conf.task_send_sent_event:
        # Naming the events' channel opens a broker connection: the first new job paid for it (7 % of a burst's
        # API samples). A broker that does not answer now is not waited for: the first new job tries again.
        try:
            _event_envelope(max_retries=0)
        except (kombu.exceptions.OperationalError, OSError) as exc:
            log.warning("the task-sent events' channel is not named yet (the broker did not answer: %s)", exc)


@dataclass(frozen=True)
class QueuedMessage:
    """A download message as kombu's Redis transport writes it (:func:`download_message`)."""

    queue: str  # the list it goes on
    payload: str
    sent_event: dict[str, Any]  # the fields of its ``task-sent`` event (:func:`task_sent_event`)


def download_message(business_id: str, call_sid: str, task_id: str, queue: str = DOWNLOAD_QUEUE) -> QueuedMessage:
    """A download message for ``queue``, pushed to the queue's list by a script in the step that creates the job
    (``request.lua``) or by :func:`send_handed`: the message ``send_download`` publishes, down to its headers
    (``tests/test_dispatch.py`` holds the two together). Only for a message with no countdown and the default
    priority, whose list is the queue's own name.

    It is built for every new job, also for one that then parks and never sends it: from the process's template
    when every id is of the characters JSON and ``repr`` write as they are (ids the API accepts are), else by
    Celery itself. ``reply_to`` names the thread (a gevent worker's every request runs in a greenlet of its own):
    it is filled in like the ids, so one template serves them all.
    """
    tag, reply_to = str(uuid.uuid4()), app.thread_oid
    if not all(_PLAIN.fullmatch(value) for value in (business_id, call_sid, task_id, reply_to)):
        return _built(business_id, call_sid, task_id, tag, queue)
    template = _template(app.conf.task_send_sent_event, queue)

    def filled(text: str) -> str:
        return (text.replace(_TASK, task_id).replace(_BUSINESS, business_id).replace(_CALL, call_sid)
                .replace(_REPLY, reply_to))

    body = base64.b64encode(filled(template.body).encode()).decode()
    payload = filled(template.payload).replace(_BODY, body).replace(_TAG, tag)
    sent_event = {key: filled(value) if isinstance(value, str) else value
                  for key, value in template.sent_event.items()}
    return QueuedMessage(queue, payload, sent_event)


#: Stand-ins for a template's values: plain words, written the same by JSON and repr, found nowhere else in it.
_TASK, _BUSINESS, _CALL, _REPLY, _BODY, _TAG = (f"recplay0template0{name}0f37b9" for name in
                                                ("task", "business", "call", "reply", "body", "tag"))
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


@dataclass(frozen=True)
class _Template:
    body: str
    payload: str
    sent_event: dict[str, Any]


@lru_cache(maxsize=4)
def _template(sent_event: bool, queue: str) -> _Template:
    message = app.amqp.create_task_message(_TASK, DOWNLOAD_TASK, [_BUSINESS, _CALL], {"v": MESSAGE_VERSION},
                                           reply_to=_REPLY, ignore_result=None, create_sent_event=sent_event)
    return _Template(dumps(message.body), _envelope(message, _BODY, _TAG, queue), message.sent_event or {})


def _built(business_id: str, call_sid: str, task_id: str, tag: str, queue: str) -> QueuedMessage:
    message = app.amqp.create_task_message(task_id, DOWNLOAD_TASK, [business_id, call_sid], {"v": MESSAGE_VERSION},
                                           reply_to=app.thread_oid, ignore_result=None,
                                           create_sent_event=app.conf.task_send_sent_event)
    body = base64.b64encode(dumps(message.body).encode()).decode()
    return QueuedMessage(queue, _envelope(message, body, tag, queue), message.sent_event or {})


def _envelope(message: Any, body: str, tag: str, queue: str) -> str:
    """The message as kombu's Redis transport writes it to the queue's list."""
    properties = {**message.properties, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                  "delivery_info": {"exchange": "", "routing_key": queue}, "delivery_tag": tag}
    return str(dumps({"body": body, "content-encoding": "utf-8", "content-type": "application/json",
                      "headers": message.headers, "properties": properties}))


def task_sent_event(message: QueuedMessage) -> tuple[str, str] | None:
    """The ``task-sent`` event of a message a script pushes, as (channel, payload) for a Redis ``PUBLISH``: what
    ``send_task`` publishes for the messages it sends (``task_send_sent_event``, celeryconfig.py), so Flower lists
    the task from the moment it is queued. Built here and published in the round trip that pushes the message
    (``request.lua``, :func:`send_handed`), where kombu's producer took a round trip and a connection check of its
    own for each. None when events are off."""
    if not message.sent_event:
        return None
    dispatcher = app.amqp._event_dispatcher
    fields = {**message.sent_event, "queue": message.queue, "exchange": "", "routing_key": message.queue}
    event = dispatcher._prepare_event("task-sent", fields)  # the sender's fields, its clock moved on, the time
    channel, envelope = _event_envelope()
    body = base64.b64encode(dumps(event).encode()).decode()
    return channel, envelope.replace(_BODY, body, 1).replace(_TAG, str(uuid.uuid4()), 1)


_sent_event_envelope: tuple[str, str] | None = None


def _event_envelope(max_retries: int | None = None) -> tuple[str, str]:
    """The channel of ``task-sent`` events and their envelope as kombu's Redis transport publishes them, with
    stand-ins for the body and the delivery tag. Built once a process; ``max_retries`` bounds the broker
    connection's retries (kombu's default: retry for the connect timeout)."""
    global _sent_event_envelope
    if _sent_event_envelope is None:
        dispatcher = app.amqp._event_dispatcher
        exchange, routing_key = dispatcher.exchange.name, "task.sent"
        properties = {"delivery_mode": dispatcher.delivery_mode, "delivery_info": {"exchange": exchange,
                      "routing_key": routing_key}, "priority": 0, "body_encoding": "base64", "delivery_tag": _TAG}
        envelope = dumps({"body": _BODY, "content-encoding": "utf-8", "content-type": "application/json",
                          "headers": dispatcher.headers, "properties": properties})
        options = {} if max_retries is None else {"max_retries": max_retries}
        with app.connection_for_write(transport_options=options) as connection:
            channel = connection.default_channel._get_publish_topic(exchange, routing_key)
        _sent_event_envelope = (str(channel), str(envelope))
    return _sent_event_envelope


#: What handed a slot on, as a ``dispatched`` log line names it: a finished job's release, the sweeper, an operator's
#: purge or raised limit, a deleted recording's job, an interrupted attempt that gave its slot up.
HandedBy = Literal["release", "sweep", "purge", "limit", "delete", "give-up"]


def send_handed(business_id: str, handed: list[tuple[str, str]], by: HandedBy = "release") -> None:
    """Send the message of every job a release or sweep handed a slot (or a new task id) to: pushed to the
    hand-off queue's list as kombu's Redis transport would (:func:`download_message`), each followed by its
    ``task-sent`` event (:func:`task_sent_event`), all in one round trip. The broker is REDIS_URL's Redis
    (celeryconfig.py), which the job state's client talks to. ``by`` names what handed the slots in each job's
    ``dispatched`` log line (:data:`HandedBy`)."""
    if not handed:
        return
    pipe = get_redis().pipeline(transaction=False)
    for call_sid, task_id in handed:
        message = download_message(business_id, call_sid, task_id, HANDOFF_QUEUE)
        pipe.lpush(message.queue, message.payload)
        event = task_sent_event(message)
        if event is not None:
            pipe.publish(*event)
    pipe.execute()
    for call_sid, task_id in handed:
        log.info("dispatched business_id=%s call_sid=%s task_id=%s countdown=None by=%s", business_id, call_sid,
                 task_id, by)
