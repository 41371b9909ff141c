"""A Server-Sent Events client for the tests: reads one stream in a thread and keeps its events and comments."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit


class EventStream:
    """``GET url`` with ``headers``; ``events`` are the parsed ``data:`` of each event, in arrival order, each
    with the moment it came (``times``); ``comments`` the comment lines; ``closed`` is set when the server
    ends the stream."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 60) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        self.sock = self.conn.sock  # http.client lets go of it once the answer says the connection will close
        self.opened = time.monotonic()
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.comments: list[str] = []
        self.closed = threading.Event()
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        if self.status == 200:
            threading.Thread(target=self._read, name="sse", daemon=True).start()
        else:
            self.body = self.response.read()
            self.closed.set()

    def _read(self) -> None:
        data: list[str] = []
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    with self.changed:
                        self.comments.append(line)
                        self.changed.notify_all()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line == "" and data:
                    with self.changed:
                        self.events.append(json.loads("\n".join(data)))
                        self.times.append(time.monotonic())
                        self.changed.notify_all()
                    data = []
        except BaseException as exc:  # reported by the waits
            self.error = exc
        finally:
            self.closed.set()
            with self.changed:
                self.changed.notify_all()

    def statuses(self) -> list[str]:
        return [e["status"] for e in self.events]

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; events "
                                         f"{self.statuses()}, closed {self.closed.is_set()}, error {self.error!r}")
                self.changed.wait(left)

    def wait_events(self, count: int, timeout: float) -> list[dict[str, Any]]:
        self.wait(lambda s: len(s.events) >= count or s.closed.is_set(), timeout, f"{count} events")
        return self.events

    def wait_closed(self, timeout: float) -> None:
        self.wait(lambda s: s.closed.is_set(), timeout, "the server to end the stream")

    def close(self) -> None:
        """Go away: the connection really closes (the response's reader would keep the socket open)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
