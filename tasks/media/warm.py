"""Imported by the decoders' forkserver before it forks any (:mod:`tasks.media.sandbox`): decodes a short generated
WAV once, so that the lazy imports and first-call costs of PyAV and numpy are paid once in the server and shared
by every decoder forked from it, instead of in each new decoder's first decode."""

from __future__ import annotations

import io
import tempfile
import wave
from pathlib import Path

import tasks.media.sandbox  # noqa: F401 - what the decoders run, loaded before the first fork
from tasks.media.decode import decode_in_process


def _warm() -> None:
    body = io.BytesIO()
    with wave.open(body, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(8000 * 4 // 10))  # 0.1 s of silence
    with tempfile.TemporaryDirectory(prefix="recplay-warm-") as tmp:
        path = Path(tmp) / "warm.wav"
        path.write_bytes(body.getvalue())
        decode_in_process(path)


_warm()
