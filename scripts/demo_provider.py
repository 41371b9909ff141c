"""A demo media host for `make run`: serves a few generated, playable WAV recordings on loopback."""

from __future__ import annotations

import io
import math
import struct
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (call_sid, seconds, notes in Hz): short tunes, so the player has something pleasant to play and seek in.
DEMO_RECORDINGS = [
    ("CAdemo0001", 12, [261.6, 329.6, 392.0, 523.3]),
    ("CAdemo0002", 20, [293.7, 370.0, 440.0, 587.3]),
    ("CAdemo0003", 8, [329.6, 415.3, 493.9]),
    ("CAdemo0004", 30, [220.0, 277.2, 329.6, 440.0, 329.6, 277.2]),
    ("CAdemo0005", 15, [196.0, 246.9, 293.7, 392.0]),
]


def tune_wav(seconds: int, notes: list[float], rate: int = 16000) -> bytes:
    frames = bytearray()
    note_len = rate // 2
    for i in range(seconds * rate):
        freq = notes[(i // note_len) % len(notes)]
        t = (i % note_len) / note_len
        envelope = min(1.0, t * 20) * (1.0 - t) ** 0.5
        frames += struct.pack("<h", int(9000 * envelope * math.sin(2 * math.pi * freq * i / rate)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


class DemoProvider:
    def __init__(self) -> None:
        self.media = {f"/demo/{sid}.wav": tune_wav(secs, notes) for sid, secs, notes in DEMO_RECORDINGS}
        media = self.media

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = media.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, call_sid: str) -> str:
        return f"http://127.0.0.1:{self.port}/demo/{call_sid}.wav"
