"""gunicorn's logger, with recplay's access line written directly (``logger_class`` in deploy/gunicorn.conf.py).

gunicorn's own ``Logger.access`` builds, for every request, a table of every atom, request header, response header
and environ variable, whatever the format uses: a third of the API's CPU for a media link answered by gunicorn
alone. With :data:`ACCESS_FORMAT` (the shipped one), this writes the same line from the five fields it names, but
for what a client could forge a line with: control characters, quotes and backslashes in the method and path are
escaped as ``\\xHH``. Any other ``access_log_format`` is gunicorn's to write, as before. The line goes straight to
gunicorn's own handler (stdout or the access log file) rather than through a LogRecord and a formatter, unless
logging is set up otherwise (syslog, a logging config).

A module of its own, beside the package: gunicorn's master imports the logger class, and importing anything
from ``api`` would import the whole app there.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from typing import Any

from gunicorn import glogging

#: Client, method and path (without the query string: stream tokens travel in it), status, body bytes, and
#: milliseconds. deploy/gunicorn.conf.py sets the same.
ACCESS_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

#: What a client may not write into the line as it is: control characters (a %0A in a path would start a forged
#: line), the quote and the backslash (a path would leave its quotes, or forge an escape). Written as \xHH.
_UNSAFE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0xA0))}


def _safe(value: str) -> str:
    """``value`` with what could forge or break an access line escaped (gunicorn's own atoms write it as it is)."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return value.translate(_UNSAFE)


class AccessLog(glogging.Logger):
    """gunicorn's Logger; the access line of :data:`ACCESS_FORMAT` costs five lookups instead of a table."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        if self.cfg.access_log_format != ACCESS_FORMAT:
            super().access(resp, req, environ, request_time)
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        try:
            # As gunicorn's atoms h, m, U, s, B and M (a response not yet sent is "None" there too).
            millis = request_time.seconds * 1000 + request_time.microseconds // 1000
            line = (f'{environ.get("REMOTE_ADDR") or "-"} "{_safe(environ.get("REQUEST_METHOD") or "-")} '
                    f'{_safe(environ.get("PATH_INFO") or "-")}" {status or "-"} {sent} {millis}ms')
            handler = self._plain_handler()
            if handler is None:
                self.access_log.info("%s", line)
                return
            # What logging would do for this handler, without a LogRecord, a caller lookup and a formatter
            # per request: the line, whole, under the handler's lock, then flushed.
            handler.acquire()
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            finally:
                handler.release()
        except Exception:
            self.error(traceback.format_exc())

    def _plain_handler(self) -> logging.StreamHandler[Any] | None:
        """The access log's one handler when it is gunicorn's own (a stream or a file, the bare message, no
        filter, nothing passed on to other loggers); None when anything else is set up (syslog, a logging
        config, a level that drops the line), which gets the line through logging as usual."""
        log = self.access_log
        handlers = log.handlers
        if len(handlers) != 1 or log.propagate or log.filters or not log.isEnabledFor(logging.INFO):
            return None
        handler = handlers[0]
        if type(handler) not in (logging.StreamHandler, logging.FileHandler) or handler.filters:
            return None
        formatter = handler.formatter
        if formatter is None or formatter._fmt != self.access_fmt or handler.level > logging.INFO:
            return None
        return handler
