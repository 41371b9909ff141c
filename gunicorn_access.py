"""gunicorn's logger, with recplay's access line written directly (``logger_class`` in deploy/gunicorn.conf.py).

gunicorn's own ``Logger.access`` builds, for every request, a table of every atom, request header, response header
and environ variable, whatever the format uses: a third of the API's CPU for a media link answered by gunicorn
alone. With :data:`ACCESS_FORMAT` (the shipped one), this writes the same line from the five fields it names; any
other ``access_log_format`` is gunicorn's to write, as before.

A module of its own, beside the package: gunicorn's master imports the logger class, and importing anything
from ``api`` would import the whole app there.
"""

from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

from gunicorn import glogging

#: Client, method and path (without the query string: stream tokens travel in it), status, body bytes, and
#: milliseconds. deploy/gunicorn.conf.py sets the same.
ACCESS_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


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
            self.access_log.info('%s "%s %s" %s %s %sms', environ.get("REMOTE_ADDR") or "-",
                                 environ.get("REQUEST_METHOD") or "-", environ.get("PATH_INFO") or "-",
                                 status or "-", sent,
                                 request_time.seconds * 1000 + request_time.microseconds // 1000)
        except Exception:
            self.error(traceback.format_exc())
