"""Structured logs: every line about a job carries business_id, call_sid, task_id and attempt.

The fields come, the first found winning, from the ``extra`` of the call, from ``key=value`` pairs the message
names itself (the house style: ``log.info("ready business_id=%s call_sid=%s", ...)``), from Celery's own task
lines (their ``data``), or from the job context of the running task (set by the ``task_prerun`` signal and
:func:`bind`, kept in a context variable so each worker thread has its own). Calls stay lazy ``%s`` logging.

:func:`setup_logging` is the one setup: the worker calls it from Celery's ``after_setup_logger`` signal
(:mod:`tasks.worker.hooks`), the API from ``create_app``. ``RECPLAY_LOG_FORMAT=json`` prints one JSON object
a line; the default text format appends the job fields a line lacks as ``key=value``.
"""

from __future__ import annotations

import ast
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.dispatch import DOWNLOAD_TASK
from tasks.settings import get_settings

JOB_FIELDS = ("business_id", "call_sid", "task_id", "attempt")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_job: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("recplay_job", default=None)
_IN_MESSAGE = re.compile(r"\b(business_id|call_sid|task_id|attempt)=([A-Za-z0-9_.-]+)")


@contextmanager
def job_context(**fields: object) -> Iterator[None]:
    """Log lines inside the block carry these job fields."""
    token = _job.set({k: str(v) for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _job.reset(token)


def bind(**fields: object) -> None:
    """Add fields to the current job context (the attempt number is known once a slot is taken)."""
    current = dict(_job.get() or {})
    current.update({k: str(v) for k, v in fields.items() if v is not None})
    _job.set(current)


def enter_job(**fields: object) -> None:
    """The running task's job fields, from here until :func:`leave_job` (a task_prerun hook sets them)."""
    _job.set({k: str(v) for k, v in fields.items() if v is not None})


def leave_job() -> None:
    _job.set(None)


def current_job() -> dict[str, str]:
    return dict(_job.get() or {})


def _from_celery_line(record: logging.LogRecord) -> dict[str, str]:
    # Celery's "Task ... received / succeeded" lines pass their context as ``extra={"data": ...}``.
    data = getattr(record, "data", None)
    if not isinstance(data, dict) or data.get("name") != DOWNLOAD_TASK:
        return {}
    found = {"task_id": str(data.get("id", ""))}
    try:
        args = ast.literal_eval(str(data.get("args", "")))
    except (ValueError, SyntaxError):
        return found
    if isinstance(args, list | tuple) and len(args) >= 2:
        found.update(business_id=str(args[0]), call_sid=str(args[1]))
    return found


class JobFieldsFilter(logging.Filter):
    """Stamps ``business_id``, ``call_sid``, ``task_id`` and ``attempt`` on every record ("" when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The running task's context, then Celery's own task lines, then what the message itself names.
        fields: dict[str, str] = dict(_job.get() or {})
        fields.update(_from_celery_line(record))
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logging module's to report
            message = str(record.msg)
        fields.update((k, v) for k, v in _IN_MESSAGE.findall(message))
        for name in JOB_FIELDS:
            explicit = record.__dict__.get(name)
            if explicit not in (None, ""):
                fields[name] = str(explicit)
            setattr(record, name, fields.get(name, ""))
        record.recplay_job = any(fields.get(n) for n in JOB_FIELDS)
        return True


class TextFormatter(logging.Formatter):
    """The given format, then the job fields the message does not already name, as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not getattr(record, "recplay_job", False):
            return line
        message = record.getMessage()
        missing = [f"{n}={getattr(record, n, '') or '-'}" for n in JOB_FIELDS if f"{n}=" not in message]
        if not missing:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(missing)}{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the job fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "thread": record.threadName,
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, "")
            body[name] = (int(value) if name == "attempt" and value.isdigit() else value) or None
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def _formatter(log_format: str, text_format: str | None) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter(text_format or TEXT_FORMAT)


def setup_logging(
    logger: logging.Logger | None = None, *, level: str | None = None, log_format: str | None = None,
    text_format: str | None = None,
) -> list[logging.Handler]:
    """Give log handlers the job fields and the chosen format; returns the handlers set up.

    Args:
        logger: a logger whose handlers are all set up (Celery passes the root logger it configured). Without
            it, the root logger gets a stderr handler of recplay's own, unless something else (a host
            application, a test runner) configured logging already: then it is left as it is.
        level: a level name for a handler added here; ``RECPLAY_LOG_LEVEL`` by default.
        log_format: ``text`` or ``json``; ``RECPLAY_LOG_FORMAT`` by default.
        text_format: the %-format of text lines (Celery passes its worker format).
    """
    settings = get_settings()
    if logger is not None:
        handlers = list(logger.handlers)
    else:
        root = logging.getLogger()
        handlers = [h for h in root.handlers if getattr(h, "recplay", False)]
        if not root.handlers:
            own = logging.StreamHandler(sys.stderr)
            own.recplay = True  # type: ignore[attr-defined]
            root.addHandler(own)
            root.setLevel(level or settings.log_level)
            handlers = [own]
    formatter = _formatter(log_format or settings.log_format, text_format)
    for handler in handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, JobFieldsFilter) for f in handler.filters):
            handler.addFilter(JobFieldsFilter())
    return handlers
