"""Decode + peaks cost: seconds of work per hour of audio, the per-call overhead, and the size of an hour's peaks.

Generates, in a temporary directory, a one-hour 8 kHz mono MP3 (PyAV's libmp3lame) and a one-hour 8 kHz stereo
16-bit WAV, then times ``decode_audio`` (in a decoder process, as the workers call it) on each, and on a 10 s WAV
against ``decode_in_process`` (the same decode in this process) for the fixed cost of isolation: the request and
answer through the decoder's pipes (a decoder is reused, :mod:`tasks.media.sandbox`). The first call starts the
forkserver and the decoder and is reported apart.

Run: ``python -m bench.decode_peaks [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.scenario import Goal, Metric, Scenario, Values, at_most
from tasks.media.decode import DecodedMedia, Peaks, decode_in_process, encode_peaks
from tasks.media.sandbox import decode_audio

RATE = 8000
HOUR = 3600
MAX_SECONDS = 600.0
MAX_MEMORY = 256 << 20
CALLS = 20


def tone(seconds: float, channels: int) -> np.ndarray:
    """A 440 Hz tone at half scale with a slow swell, shaped (channels, n)."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = 0.5 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * t / 60))
    return np.tile(x.astype(np.float32), (channels, 1))


def write_wav(path: Path, seconds: float, channels: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for start in range(0, round(seconds), 600):  # ten minutes at a time keeps memory flat
            chunk = tone(min(600, seconds - start), channels)
            w.writeframes(np.round(chunk * 32767).astype("<i2").T.tobytes())
    return path


def write_mp3(path: Path, seconds: float) -> Path:
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=RATE, layout="mono")
        for start in range(0, round(seconds), 600):
            frame = av.AudioFrame.from_ndarray(tone(min(600, seconds - start), 1), format="fltp", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start * RATE
            frame.time_base = Fraction(1, RATE)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def timed(path: Path) -> tuple[float, DecodedMedia]:
    started = time.perf_counter()
    media = decode_audio(path, max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)
    return time.perf_counter() - started, media


def timed_in_process(path: Path) -> float:
    started = time.perf_counter()
    decode_in_process(path)
    return time.perf_counter() - started


def best_of(runs: int, path: Path) -> tuple[float, DecodedMedia]:
    results = [timed(path) for _ in range(runs)]
    return min(r[0] for r in results), results[-1][1]


def report(label: str, seconds: float, media: DecodedMedia) -> None:
    per_hour = seconds / media.duration_seconds * HOUR
    print(f"{label}: {media.format} {media.channels} ch {media.duration_seconds:.1f} s decoded in {seconds:.2f} s "
          f"= {per_hour:.2f} s per hour of audio; peaks {len(media.peaks)} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs per file")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="decode-bench-") as tmp:
        root = Path(tmp)
        files: dict[str, Callable[[], Path]] = {
            "10 s wav": lambda: write_wav(root / "short.wav", 10, 1),
            "1 h mono mp3": lambda: write_mp3(root / "hour.mp3", HOUR),
            "1 h stereo wav": lambda: write_wav(root / "hour.wav", HOUR, 2),
        }
        paths = {label: make() for label, make in files.items()}
        first, _ = timed(paths["10 s wav"])
        print(f"first call (starts the forkserver): {first:.3f} s")
        isolated = [timed(paths["10 s wav"])[0] for _ in range(CALLS)]
        in_process = [timed_in_process(paths["10 s wav"]) for _ in range(CALLS)]
        overhead = statistics.median(isolated) - statistics.median(in_process)
        print(f"10 s wav: {statistics.median(isolated) * 1000:.1f} ms a call isolated, "
              f"{statistics.median(in_process) * 1000:.1f} ms in process (medians of {CALLS}): "
              f"isolation costs {overhead * 1000:.1f} ms a call")
        for label in ("1 h mono mp3", "1 h stereo wav"):
            seconds, media = best_of(opts.runs, paths[label])
            report(f"{label} ({paths[label].stat().st_size / 1e6:.1f} MB)", seconds, media)


def run(smoke: bool) -> Values:
    """One measurement for bench.run: seconds of decode + peaks per hour of audio, and an hour's peaks size."""
    seconds_of_audio = 360 if smoke else HOUR
    with tempfile.TemporaryDirectory(prefix="decode-bench-") as tmp:
        root = Path(tmp)
        mp3 = write_mp3(root / "call.mp3", seconds_of_audio)
        wav = write_wav(root / "call.wav", seconds_of_audio, 2)
        timed(write_wav(root / "short.wav", 10, 1))  # starts the forkserver: not measured
        values: Values = {}
        for key, path in (("mp3", mp3), ("wav", wav)):
            seconds, media = best_of(1 if smoke else 3, path)
            values[f"{key}_per_hour"] = seconds / media.duration_seconds * HOUR
            values[f"{key}_peaks_bytes"] = len(media.peaks)
        values["stereo_hour_peaks_kib"] = len(wav_peaks_of_an_hour()) / 1024
    return values


def wav_peaks_of_an_hour() -> bytes:
    """The peaks of an hour of two channels, at full resolution: what the peaks endpoint answers at most."""
    mins = np.zeros((2, 72_000), dtype=np.int8)
    return encode_peaks(Peaks(RATE, RATE // 20, mins, mins))


SCENARIO = Scenario(
    key="decode_peaks",
    title="8. Decode and peaks",
    setup="A one-hour 8 kHz mono MP3 and a one-hour 8 kHz stereo WAV, each decoded through by the worker's "
          "isolated decoder (tasks/media/decode.py) with its peaks; best of 3. Seconds of work per hour of audio.",
    smoke_setup="Six minutes of each, one run.",
    metrics=[Metric("mp3_per_hour", "decode + peaks, mono MP3", "s per hour of audio"),
             Metric("wav_per_hour", "decode + peaks, stereo WAV", "s per hour of audio"),
             Metric("mp3_peaks_bytes", "peaks of the MP3", "bytes"),
             Metric("wav_peaks_bytes", "peaks of the WAV", "bytes"),
             Metric("stereo_hour_peaks_kib", "peaks answer for an hour of two channels", "KiB")],
    goals=[Goal("decode + peaks of an hour of MP3 < 60 s (well under its download)", at_most("mp3_per_hour", 60)),
           Goal("an hour of two channels' peaks < 400 KiB", at_most("stereo_hour_peaks_kib", 400))],
    run=run,
)


if __name__ == "__main__":
    main()
