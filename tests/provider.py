"""A real HTTP provider stand-in on loopback for the tests.

Each media path (``/<business_id>/<name>``) has a behaviour: its body and content type, a delay before the
answer, a list of statuses to answer first (500, 429 with Retry-After, 404...), an empty or truncated body, a
body without Content-Length, a slow trickle, a redirect, or a gate that holds the response until the test opens
it. The server counts downloads per path
and records, per business, how many downloads were in flight at once.
"""

from __future__ import annotations

import fractions
import functools
import io
import math
import struct
import threading
import time
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def wav_of(frames: bytes, channels: int = 1, rate: int = 8000) -> bytes:
    """A 16-bit PCM WAV of interleaved little-endian ``frames``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def make_wav(seconds: float = 1.0, rate: int = 8000, freq: float = 440.0) -> bytes:
    """A playable mono 16-bit PCM WAV tone."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(frames)
    )
    return wav_of(samples, 1, rate)


@functools.lru_cache(maxsize=64)
def make_mp3(seconds: float = 1.0, rate: int = 8000, freq: float = 440.0) -> bytes:
    """A playable mono MP3 tone, encoded with PyAV's LAME (the worker decodes every download through)."""
    import av
    import numpy as np

    samples = (0.25 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = fractions.Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


@dataclass
class Behaviour:
    body: bytes = b""
    content_type: str = "audio/wav"
    delay: float = 0.0  # seconds before the status line
    fail_first: list[int] = field(default_factory=list)  # statuses answered before the body, one per request
    retry_after: str | None = None  # sent with 429/503 answers
    empty: bool = False  # 200 with Content-Length 0
    truncate_to: int | None = None  # send only this many bytes of a body announced whole
    trickle_seconds: float = 0.0  # spread the body over this long
    gate: threading.Event | None = None  # hold the answer (after the delay) until set
    redirect_to: str | None = None  # answer 302 with this Location instead of the body
    no_length: bool = False  # send the body without Content-Length, ended by closing the connection
    first_bodies: list[tuple[bytes, str]] = field(default_factory=list)  # (body, type) of the first 200s, in turn


class Provider:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        self.requests: dict[str, int] = defaultdict(int)  # every GET of a path
        self.downloads: dict[str, int] = defaultdict(int)  # GETs answered 200 with a body started
        self.in_flight: dict[str, int] = defaultdict(int)  # per business
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.at_gate: dict[int, str] = {}  # client port -> path of each request held at its gate now
        self.dropped: set[int] = set()  # client ports (of killed clients) whose requests are closed unanswered
        self.request_times: dict[str, list[float]] = defaultdict(list)
        self.auth_headers: dict[str, list[str | None]] = defaultdict(list)
        self.host_headers: dict[str, list[str | None]] = defaultdict(list)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="provider", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def start(self) -> Provider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.behaviours.clear()
            for d in (self.requests, self.downloads, self.in_flight, self.max_in_flight, self.request_times,
                      self.auth_headers, self.host_headers):
                d.clear()
            self.dropped.clear()

    def add(self, path: str, behaviour: Behaviour | None = None, **kwargs: object) -> str:
        """Serve ``path``; returns its full URL."""
        self.behaviours[path] = behaviour or Behaviour(**kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def total_downloads(self) -> int:
        with self.lock:
            return sum(self.downloads.values())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                business = path.strip("/").split("/")[0]
                with provider.lock:
                    provider.requests[path] += 1
                    provider.request_times[path].append(time.monotonic())
                    provider.auth_headers[path].append(self.headers.get("Authorization"))
                    provider.host_headers[path].append(self.headers.get("Host"))
                    behaviour = provider.behaviours.get(path)
                    status = None
                    if behaviour and behaviour.fail_first:
                        status = behaviour.fail_first.pop(0)
                    provider.in_flight[business] += 1
                    provider.max_in_flight[business] = max(provider.max_in_flight[business],
                                                           provider.in_flight[business])
                self._in_flight: str | None = business
                try:
                    self._answer(path, behaviour, status)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    self._leave()

            def send_response(self, code: int, message: str | None = None) -> None:
                # A request stops counting as in flight before its client can read a byte of the answer: the client
                # may then release its slot and send its next request before this thread runs again, and the two
                # must not count as in flight at once.
                self._leave()
                super().send_response(code, message)

            def _leave(self) -> None:
                business, self._in_flight = getattr(self, "_in_flight", None), None
                if business is not None:
                    with provider.lock:
                        provider.in_flight[business] -= 1

            def _answer(self, path: str, b: Behaviour | None, status: int | None) -> None:
                if b is None:
                    self._plain(404, b"not found")
                    return
                if b.delay:
                    time.sleep(b.delay)
                if b.gate is not None:
                    self._wait_at_gate(path, b.gate)
                with provider.lock:
                    dropped = self.client_address[1] in provider.dropped
                if dropped:
                    self.close_connection = True  # its client is dead: nobody reads an answer, none is counted
                    return
                if status is not None:
                    headers = {"Retry-After": b.retry_after} if b.retry_after and status in (429, 503) else {}
                    self._plain(status, b"provider error", headers)
                    return
                if b.redirect_to:
                    self._plain(302, b"", {"Location": b.redirect_to})
                    return
                with provider.lock:
                    provider.downloads[path] += 1
                    body, content_type = b.first_bodies.pop(0) if b.first_bodies else (b.body, b.content_type)
                body = b"" if b.empty else body
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                if b.no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if b.truncate_to is not None:
                    self.wfile.write(body[: b.truncate_to])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if b.trickle_seconds and body:
                    pieces = 20
                    step = max(1, math.ceil(len(body) / pieces))
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i:i + step])
                        self.wfile.flush()
                        time.sleep(b.trickle_seconds / pieces)
                else:
                    self.wfile.write(body)

            def _wait_at_gate(self, path: str, gate: threading.Event) -> None:
                port = self.client_address[1]
                with provider.lock:
                    provider.at_gate[port] = path
                try:
                    gate.wait(timeout=120)
                finally:
                    with provider.lock:
                        del provider.at_gate[port]

            def _plain(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler
