"""The burst's load generator counts each answer by its status, however the answer arrives, and a connection
closed before a whole answer as a failure: against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.client import _complete_status, burst

BIG = b"x" * 300_000  # more than one receive


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str | None]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        Handler.seen.append((self.path, self.headers.get("Authorization")))
        call_sid = self.path.split("/")[3]
        if call_sid == "CAdrop":
            self.close_connection = True  # no answer at all
            return
        body = BIG if call_sid == "CAbig" else b'{"status": "queued"}'
        self.send_response(200 if call_sid == "CAbig" else 202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:10])
        self.wfile.flush()
        self.wfile.write(body[10:])  # the head and the body's start in one packet, the rest after


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # every connection of the burst at once (the default backlog is 5)


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_each_answer_is_counted_by_its_status_and_a_dropped_connection_as_a_failure(server):
    wanted = [["b1", f"CA{i}"] for i in range(40)] + [["b2", "CAbig"], ["b2", "CAdrop"]]
    out = burst({"base": server, "tokens": {"b1": "t1", "b2": "t2"}, "requests": wanted})
    assert out["statuses"] == {"202": 40, "200": 1, "-1": 1}
    assert out["last_answer"] >= out["started"]
    assert sorted(Handler.seen) == sorted([(f"/api/recordings/CA{i}/fetch", "Bearer t1") for i in range(40)]
                                          + [("/api/recordings/CAbig/fetch", "Bearer t2"),
                                             ("/api/recordings/CAdrop/fetch", "Bearer t2")])


def test_a_refused_connection_is_a_failure():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens there now
    out = burst({"base": f"http://127.0.0.1:{port}", "tokens": {"b1": "t1"}, "requests": [["b1", "CA1"]] * 3})
    assert out["statuses"] == {"-1": 3}


def test_an_answer_is_whole_only_with_its_content_length_of_body():
    head = b"HTTP/1.1 202 ACCEPTED\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
    body = b'{"status": "queued"}'
    assert _complete_status(head[:30], closed=False) is None
    assert _complete_status(head + body[:19], closed=False) is None
    assert _complete_status(head + body, closed=False) == 202
    assert _complete_status(head + body[:19], closed=True) == -1
    assert _complete_status(b"HTTP/1.1 500 INTERNAL SERVER ERROR\r\n\r\noops", closed=False) is None
    assert _complete_status(b"HTTP/1.1 500 INTERNAL SERVER ERROR\r\n\r\noops", closed=True) == 500
