"""Decode, don't trust: prove that a downloaded body is audio we can play, and draw its waveform.

A provider's Content-Type, a URL's extension and a container's header are claims. This module believes none of
them: it decodes every frame of the file and derives what the player needs from the decoded samples.

- The format is the one FFmpeg detects, from a fixed set of (container, codec) pairs: mp3, wav (PCM, G.711
  included), ogg (Vorbis or Opus), flac and m4a (AAC). The served Content-Type and file extension come from the
  fixed table ``FORMATS`` keyed by that detected format, never from the provider.
- Anything else is refused with ``NotAudio``, a permanent error: an empty body, text (an HTML page, a JSON or XML
  document), an image, a video, a container without an audio stream, a codec outside the set, a body FFmpeg cannot
  read, a decoding error, zero decoded samples, and a truncated file. Truncation is judged against what the file's
  own header declares, read where FFmpeg cannot be asked: a WAV's ``data`` chunk size (FFmpeg shrinks a WAV's
  duration to the bytes present), a FLAC's STREAMINFO sample count, an MP3's Xing/Info/VBRI frame count (without
  one FFmpeg's duration is an estimate from the bitrate and the file's size, so a truncated MP3 without such a
  header looks like a shorter recording and passes), an M4A's ``moov`` index (a file cut before a trailing ``moov``
  does not open; a faststart file cut inside ``mdat`` fails to decode or decodes short). Sample-exact counts (WAV,
  FLAC) allow no shortfall; MP3 and M4A counts allow 5 % of the duration (0.1 s to 0.5 s) or four codec frames,
  whichever is more (see ``_truncation_slack``). An Ogg stream declares no total, so an Ogg file cut exactly on a
  page boundary passes as a shorter recording.
- The duration is the number of decoded samples over the sample rate. For AAC it may include up to one frame of
  encoder padding (1024 samples) that the container does not trim.
- Peaks (min/max per channel per pixel, audiowaveform's binary .dat version 2, 8-bit) are computed in the same pass
  from the decoded frames, without resampling: see ``encode_peaks`` and ``parse_peaks``.

FFmpeg parses hostile input in C: the worker runs this module's ``decode_in_process`` only in a decoder process
under limits (:mod:`tasks.media.sandbox`), whose failures (a timeout, memory, a crash) raise ``DecodeFailed``, a
transient error: the machine may have been loaded or short of memory, so the caller may retry; a body that
crashes or outgrows the decoder every time exhausts the caller's attempt budget instead of being refused on a
first, possibly unlucky, try.
"""

from __future__ import annotations

import codecs
import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import av
import av.error
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Stream

from tasks.media.types import FORMATS as TYPES

log = logging.getLogger(__name__)


# The formats served, their content types and extensions: one table, owned by tasks/media/types.py.
FORMATS = TYPES


# (FFmpeg demuxer name, canonical codec names) -> format. G.711 (alaw, mulaw) in WAV is a telephony staple that not
# every browser plays (Chrome's canPlayType knows only PCM WAV): it is audio, so it is served, not refused.
_ALLOWED: tuple[tuple[str, frozenset[str], str], ...] = (
    ("mp3", frozenset({"mp3"}), "mp3"),
    ("wav", frozenset({"pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_alaw", "pcm_mulaw"}), "wav"),
    ("ogg", frozenset({"vorbis", "opus"}), "ogg"),
    ("flac", frozenset({"flac"}), "flac"),
    ("mov,mp4,m4a,3gp,3g2,mj2", frozenset({"aac"}), "m4a"),
)

MAX_PEAK_PAIRS = 72_000  # one hour at 50 ms per pixel
PEAKS_VERSION = 2
PEAKS_FLAG_8BIT = 1
MAX_CHANNELS = 8
SAMPLE_RATE_RANGE = (1_000, 768_000)
_PEAKS_HEADER = struct.Struct("<iIiiIi")  # version, flags, sample_rate, samples_per_pixel, length, channels
SNIFF_BYTES = 1024
_TEXT_CONTROLS = frozenset(b"\t\n\v\f\r\x1b")
_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: cover art, not a video
_IMAGE_CODECS = frozenset({"png", "mjpeg", "bmp", "gif", "webp", "tiff", "jpeg2000", "jpegls"})
_WAV_UNKNOWN_SIZES = frozenset({0, 0x7FFF_FFFF, 0xFFFF_FFFF})  # placeholders of writers that could not seek back
_MAGIC: tuple[tuple[int, bytes, str], ...] = (  # (offset, bytes, what) of the media files FFmpeg may fail to open
    (0, b"RIFF", "a RIFF (WAV) file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"ID3", "an MP3 (ID3-tagged) file"),
    (4, b"ftyp", "an MP4/M4A file"),
)
_PIXELS_PER_FLUSH = 64


class NotAudio(Exception):
    """The body is not audio we serve; permanent: downloading the same body again cannot help.

    Attributes:
        what: what the provider sent instead, e.g. "an HTML page".
    """

    permanent = True

    def __init__(self, what: str) -> None:
        super().__init__(f"not audio: the provider sent {what}")
        self.what = what

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what,))


class DecodeFailed(Exception):
    """The decode attempt failed, not (provably) the body; transient: see the module docstring.

    Attributes:
        reason: "timeout", "memory", "signal", "exit" (the child exited without answering) or "error" (an
            unexpected exception in the child, e.g. an I/O error).
        detail: what happened, for people.
    """

    permanent = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"decode failed ({reason}): {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True)
class DecodedMedia:
    """What decoding a file proved about it.

    Attributes:
        format: a key of ``FORMATS``.
        content_type: ``FORMATS[format].content_type``.
        extension: ``FORMATS[format].extension``.
        codec: FFmpeg's canonical codec name, e.g. "opus" or "pcm_s16le".
        duration_seconds: decoded samples per channel over ``sample_rate``.
        sample_count: decoded samples per channel.
        channels: channel count of the decoded audio.
        sample_rate: sample rate of the decoded audio, in Hz.
        peaks: the waveform, audiowaveform .dat version 2, 8-bit (``parse_peaks`` reads it).
    """

    format: str
    content_type: str
    extension: str
    codec: str
    duration_seconds: float
    sample_count: int
    channels: int
    sample_rate: int
    peaks: bytes


@dataclass(frozen=True, eq=False)
class Peaks:
    """A waveform: per pixel and channel, the lowest and highest sample, as int8 (float [-1, 1] times 128, floored).

    Attributes:
        sample_rate: of the audio the peaks were computed from, in Hz.
        samples_per_pixel: audio samples (per channel) that one pixel covers; the last pixel may cover fewer.
        mins: int8 array of shape (channels, length), read-only.
        maxs: int8 array of shape (channels, length), read-only.
    """

    sample_rate: int
    samples_per_pixel: int
    mins: np.ndarray
    maxs: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.mins.shape[0])

    @property
    def length(self) -> int:
        return int(self.mins.shape[1])

    @property
    def seconds_per_pixel(self) -> float:
        return self.samples_per_pixel / self.sample_rate


# --- peaks: the .dat format -------------------------------------------------------------------------------------


def encode_peaks(peaks: Peaks) -> bytes:
    """The audiowaveform binary .dat (version 2, 8-bit) of ``peaks``.

    Layout, little-endian: int32 version=2, uint32 flags=1 (8-bit values), int32 sample_rate, int32
    samples_per_pixel, uint32 length (pixels), int32 channels; then for each pixel, for each channel, int8 min and
    int8 max.
    """
    _check_header(PEAKS_VERSION, PEAKS_FLAG_8BIT, peaks.sample_rate, peaks.samples_per_pixel, peaks.length,
                   peaks.channels)
    if peaks.mins.shape != peaks.maxs.shape:
        raise ValueError(f"peaks mins {peaks.mins.shape} and maxs {peaks.maxs.shape} differ in shape")
    body = np.empty((peaks.length, peaks.channels, 2), dtype=np.int8)
    body[:, :, 0] = peaks.mins.T
    body[:, :, 1] = peaks.maxs.T
    header = _PEAKS_HEADER.pack(PEAKS_VERSION, PEAKS_FLAG_8BIT, peaks.sample_rate, peaks.samples_per_pixel,
                                peaks.length, peaks.channels)
    return header + body.tobytes()


def parse_peaks(data: bytes) -> Peaks:
    """Read a .dat that ``encode_peaks`` wrote, checking every header field against the data.

    Raises:
        ValueError: the data is shorter than the header, a field is out of range (version, flags, sample rate,
            samples per pixel, length, channels), or the body is not exactly ``length * channels * 2`` bytes.
    """
    if len(data) < _PEAKS_HEADER.size:
        raise ValueError(f"peaks data is {len(data)} bytes, shorter than the {_PEAKS_HEADER.size}-byte header")
    version, flags, sample_rate, spp, length, channels = _PEAKS_HEADER.unpack_from(data)
    _check_header(version, flags, sample_rate, spp, length, channels)
    expected = _PEAKS_HEADER.size + length * channels * 2
    if len(data) != expected:
        raise ValueError(f"peaks header declares {length} pixels of {channels} channel(s), {expected} bytes in all, "
                         f"but the data is {len(data)} bytes")
    body = np.frombuffer(data, dtype=np.int8, offset=_PEAKS_HEADER.size).reshape(length, channels, 2)
    return Peaks(sample_rate, spp, _read_only(body[:, :, 0].T), _read_only(body[:, :, 1].T))


def _check_header(version: int, flags: int, sample_rate: int, spp: int, length: int, channels: int) -> None:
    if version != PEAKS_VERSION:
        raise ValueError(f"peaks version {version}, expected {PEAKS_VERSION}")
    if flags != PEAKS_FLAG_8BIT:
        raise ValueError(f"peaks flags {flags:#x}, expected {PEAKS_FLAG_8BIT:#x} (8-bit values, nothing else)")
    if not SAMPLE_RATE_RANGE[0] <= sample_rate <= SAMPLE_RATE_RANGE[1]:
        low, high = SAMPLE_RATE_RANGE
        raise ValueError(f"peaks sample rate {sample_rate} Hz is outside {low}..{high}")
    if spp < 1:
        raise ValueError(f"peaks samples per pixel {spp}, expected at least 1")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"peaks channel count {channels}, expected 1..{MAX_CHANNELS}")
    if length > MAX_PEAK_PAIRS:
        raise ValueError(f"peaks length {length} pixels, more than the {MAX_PEAK_PAIRS} this service writes")


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def base_samples_per_pixel(sample_rate: int) -> int:
    """Samples per 50 ms pixel: the resolution of any recording up to an hour."""
    return max(1, sample_rate // 20)


class _PeakAccumulator:
    """Min/max per channel per base pixel (50 ms), from decoded float frames fed in order."""

    def __init__(self, channels: int, samples_per_pixel: int) -> None:
        self.channels = channels
        self.spp = samples_per_pixel
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._mins: list[np.ndarray] = []
        self._maxs: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> None:
        """Feed float32 samples of shape (channels, n)."""
        self._pending.append(samples)
        self._pending_count += samples.shape[1]
        if self._pending_count >= self.spp * _PIXELS_PER_FLUSH:
            self._flush(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Float mins and maxs of shape (channels, pixels); the last pixel covers what is left."""
        self._flush(final=True)
        if not self._mins:
            empty = np.zeros((self.channels, 0), dtype=np.float32)
            return empty, empty
        return np.concatenate(self._mins, axis=1), np.concatenate(self._maxs, axis=1)

    def _flush(self, *, final: bool) -> None:
        if not self._pending_count:
            return
        buf = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        whole = (buf.shape[1] // self.spp) * self.spp
        if whole:
            pixels = buf[:, :whole].reshape(self.channels, -1, self.spp)
            self._mins.append(pixels.min(axis=2))
            self._maxs.append(pixels.max(axis=2))
        rest = buf[:, whole:]
        if final and rest.shape[1]:
            self._mins.append(rest.min(axis=1, keepdims=True))
            self._maxs.append(rest.max(axis=1, keepdims=True))
            rest = rest[:, :0]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_count = rest.shape[1]


def _coarsen(mins: np.ndarray, maxs: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge each run of ``factor`` pixels into one (min of mins, max of maxs); the last run may be shorter."""
    if factor == 1:
        return mins, maxs
    channels, length = mins.shape
    padded = math.ceil(length / factor) * factor
    lo = np.pad(mins, ((0, 0), (0, padded - length)), constant_values=np.inf)
    hi = np.pad(maxs, ((0, 0), (0, padded - length)), constant_values=-np.inf)
    return (lo.reshape(channels, -1, factor).min(axis=2), hi.reshape(channels, -1, factor).max(axis=2))


def _quantize(values: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int8 as floor(v * 128), clipped to [-128, 127]: for 16-bit input that is audiowaveform's
    ``sample >> 8``. A NaN (a float WAV may hold any bit pattern) becomes 0."""
    return np.clip(np.floor(np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=-1.0) * 128.0), -128, 127).astype(np.int8)


def build_peaks(mins: np.ndarray, maxs: np.ndarray, *, sample_rate: int, base_spp: int) -> Peaks:
    """Peaks from float min/max per base pixel, coarsened so that there are at most ``MAX_PEAK_PAIRS`` pixels."""
    factor = max(1, math.ceil(mins.shape[1] / MAX_PEAK_PAIRS))
    lo, hi = _coarsen(mins, maxs, factor)
    return Peaks(sample_rate, base_spp * factor, _read_only(_quantize(lo)), _read_only(_quantize(hi)))


# --- what the file says about itself -----------------------------------------------------------------------------


def sniff_not_media(head: bytes) -> str | None:
    """What the first bytes of a body are when they are plainly not media (for ``NotAudio``), else None.

    Every audio container starts with binary header bytes (NUL or other control bytes within its first 16 bytes),
    so a head without control bytes is text; an HTML page, an XML or JSON document is told from other text by its
    first characters.
    """
    if not head:
        return "an empty file"
    text = _text_of(head[:SNIFF_BYTES])
    if text is None:
        return None
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")) or any(tag in start for tag in ("<html", "<head", "<body",
                                                                                        "<script")):
        return "an HTML page"
    if start.startswith("<"):
        return "an XML document"
    if start.startswith(("{", "[")):
        return "a JSON document"
    return "text"


def _text_of(head: bytes) -> str | None:
    """``head`` as text if it is text (UTF-8 or any 8-bit charset, or UTF-16 after its byte-order mark), else None."""
    text: str | None = None
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            units = head[len(bom):]
            try:
                text = units[:len(units) // 2 * 2].decode(encoding)
            except UnicodeDecodeError:
                return None
            break
    else:
        text = head.removeprefix(codecs.BOM_UTF8).decode("latin-1")
    if any((ord(c) < 0x20 and ord(c) not in _TEXT_CONTROLS) or c == "\x7f" for c in text):
        return None
    return text


def _skip_id3v2(f: BinaryIO) -> int:
    """Offset of the first byte after an ID3v2 tag at the start of ``f`` (0 when there is none)."""
    f.seek(0)
    header = f.read(10)
    if len(header) < 10 or not header.startswith(b"ID3"):
        return 0
    size = 0
    for b in header[6:10]:
        size = (size << 7) | (b & 0x7F)
    footer = 10 if header[5] & 0x10 else 0
    return 10 + size + footer


def _wav_declared_frames(f: BinaryIO, file_size: int) -> int | None:
    """Sample frames a RIFF/WAVE ``data`` chunk declares, None when it declares no usable size."""
    f.seek(0)
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        return None  # RF64 and RIFX keep their sizes elsewhere: not judged
    block_align = 0
    offset = 12
    for _ in range(64):  # a WAV has a handful of chunks; more is junk, judged by the decode alone
        f.seek(offset)
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            fmt = f.read(16)
            block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
        elif cid == b"data":
            if size in _WAV_UNKNOWN_SIZES or block_align == 0:
                return None
            return size // block_align
        offset += 8 + size + (size & 1)
        if offset >= file_size:
            return None
    return None


def _flac_declared_samples(f: BinaryIO) -> int | None:
    """Total samples a FLAC STREAMINFO declares, None when unknown (0) or absent."""
    start = _skip_id3v2(f)
    f.seek(start)
    head = f.read(4 + 4 + 34)
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    fields = int.from_bytes(head[8 + 10:8 + 18], "big")  # sample rate 20, channels 3, bits 5, total samples 36
    total = fields & ((1 << 36) - 1)
    return total or None


def _mp3_has_frame_count(f: BinaryIO) -> bool:
    """Whether the first MPEG audio frame carries a frame count: a VBRI header, or a Xing/Info header whose flags
    say it holds one. Without it FFmpeg estimates the duration from the first frame's bitrate, which for a VBR file
    that opens quietly can be far longer than the audio: no claim to judge truncation by."""
    start = _skip_id3v2(f)
    f.seek(start)
    window = f.read(4096)
    sync = next((i for i in range(len(window) - 1) if window[i] == 0xFF and window[i + 1] & 0xE0 == 0xE0), None)
    if sync is None:
        return False
    frame = window[sync + 4:sync + 4 + 48]  # the tags sit 9 to 36 bytes after the 4-byte frame header
    if b"VBRI" in frame:
        return True
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag)
        if at >= 0 and len(frame) >= at + 12:
            flags, frames = struct.unpack(">II", frame[at + 4:at + 12])
            return bool(flags & 1) and frames > 0
    return False


def _declared_samples(fmt: str, f: BinaryIO, file_size: int, stream: AudioStream,
                      sample_rate: int) -> tuple[int, bool] | None:
    """Samples per channel the file's header declares, and whether that count is sample-exact; None if unknown."""
    if fmt == "wav":
        frames = _wav_declared_frames(f, file_size)
        return None if frames is None else (frames, True)
    if fmt == "flac":
        total = _flac_declared_samples(f)
        return None if total is None else (total, True)
    if fmt == "mp3" and not _mp3_has_frame_count(f):
        return None
    if fmt in ("mp3", "m4a") and stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base) * sample_rate), False
    return None


def _truncation_slack(declared: int, exact: bool, sample_rate: int, frame_samples: int) -> int:
    """Samples a decode may fall short of a header's count before the file counts as truncated.

    An MP3's or M4A's count may or may not leave out the encoder's delay and padding (FFmpeg 7 reports an MP3's
    Xing frames times 576 or 1152, FFmpeg 8 trims them as the decoder does): up to about three codec frames that a
    complete file never decodes. Hence at least four frames, besides 5 % of the duration between 0.1 s and 0.5 s.
    """
    if exact:
        return 0
    by_time = round(min(0.5, max(0.1, 0.05 * declared / sample_rate)) * sample_rate)
    return max(by_time, 4 * frame_samples)


# --- the decode itself (runs in the child) ----------------------------------------------------------------------


def _format_of(container: InputContainer) -> tuple[AudioStream, str, str]:
    """The audio stream to decode, its format (a key of FORMATS) and codec.

    Raises:
        NotAudio: no audio stream, a video stream (cover art aside), or a (container, codec) outside the set.
    """
    demuxer = container.format.name
    videos = [s for s in container.streams.video if not int(s.disposition.value) & _ATTACHED_PIC]
    if not container.streams.audio:
        raise NotAudio(_describe_without_audio(demuxer, videos))
    stream = container.streams.audio[0]
    codec = _codec_name(stream)
    if videos:
        raise NotAudio(f"a video ({_codec_name(videos[0])} video with {codec} audio in {demuxer})")
    for allowed_demuxer, codecs_, fmt in _ALLOWED:
        if demuxer == allowed_demuxer and codec in codecs_:
            return stream, fmt, codec
    raise NotAudio(f"{codec} audio in a {demuxer} container, which is none of {', '.join(FORMATS)}")


def _describe_without_audio(demuxer: str, videos: Sequence[Stream]) -> str:
    if not videos:
        return f"a {demuxer} container with no audio stream"
    first = _codec_name(videos[0])
    if demuxer.endswith("_pipe") or demuxer == "image2" or all(_codec_name(s) in _IMAGE_CODECS for s in videos):
        return f"an image ({first})"
    return f"a video without sound ({first} in {demuxer})"


def _codec_name(stream: Stream) -> str:
    return str(stream.codec_context.codec.canonical_name)


_SAMPLE_FORMATS: Mapping[str, tuple[type[np.generic], float, float]] = MappingProxyType({
    # FFmpeg sample format (planar or packed) -> (numpy type, offset, scale) such that float = (raw - offset) * scale
    "u8": (np.uint8, 128.0, 1 / 128),
    "s16": (np.int16, 0.0, 1 / 32768),
    "s32": (np.int32, 0.0, 1 / 2**31),
    "s64": (np.int64, 0.0, 1 / 2**63),
    "flt": (np.float32, 0.0, 1.0),
    "dbl": (np.float64, 0.0, 1.0),
})


def frame_to_float(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """A decoded frame's samples as C-contiguous float32 of shape (channels, samples), whatever its sample format.

    Reads the planes' buffers directly (``to_ndarray`` does the same, at about ten times the cost per frame, which
    matters with tens of thousands of frames an hour). A plane's buffer may be longer than its samples (alignment
    padding), hence the counts.
    """
    dtype, offset, scale = _SAMPLE_FORMATS[frame.format.name.rstrip("p")]
    n = frame.samples
    out = np.empty((channels, n), np.float32)
    if frame.format.is_planar:
        for row, plane in zip(out, frame.planes[:channels], strict=True):
            np.copyto(row, np.frombuffer(memoryview(plane), dtype, count=n), casting="unsafe")
    else:
        packed = np.frombuffer(memoryview(frame.planes[0]), dtype, count=n * channels)
        np.copyto(out, packed.reshape(n, channels).T, casting="unsafe")
    if offset:
        out -= offset
    if scale != 1.0:
        out *= scale
    return out


def decode_in_process(path: Path) -> DecodedMedia:
    """Decode ``path`` through in this process, with no isolation: what the child of ``decode_audio`` runs.

    Raises:
        NotAudio: see the module docstring.
        MemoryError: FFmpeg or numpy could not allocate.
        OSError: the file could not be read.
    """
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    what = sniff_not_media(head)
    if what is not None:
        raise NotAudio(what)
    try:
        container = av.open(str(path), options=_demuxer_options(head))
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise NotAudio(_describe_unreadable(head, exc)) from exc
    with container:
        stream, fmt, codec = _format_of(container)
        stream.codec_context.thread_count = 1  # threads would each reserve stack and arena under RLIMIT_AS
        audio = _decode_frames(container, stream, fmt)
        with path.open("rb") as f:
            declared = _declared_samples(fmt, f, path.stat().st_size, stream, audio.sample_rate)
    _refuse_if_truncated(fmt, audio, declared)
    return DecodedMedia(format=fmt, content_type=FORMATS[fmt].content_type, extension=FORMATS[fmt].extension,
                        codec=codec, duration_seconds=audio.count / audio.sample_rate, sample_count=audio.count,
                        channels=audio.channels, sample_rate=audio.sample_rate, peaks=encode_peaks(audio.peaks))


@dataclass(frozen=True)
class _Audio:
    """What one pass over the frames found: shape, samples per channel, the longest frame, the peaks."""

    channels: int
    sample_rate: int
    count: int
    longest_frame: int
    peaks: Peaks


def _refuse_if_truncated(fmt: str, audio: _Audio, declared: tuple[int, bool] | None) -> None:
    if declared is None:
        return
    total, exact = declared
    if audio.count < total - _truncation_slack(total, exact, audio.sample_rate, audio.longest_frame):
        rate = audio.sample_rate
        raise NotAudio(f"a truncated {fmt} file (it decodes to {audio.count} of the {total} samples its header "
                       f"declares, {audio.count / rate:.2f} s of {total / rate:.2f} s)")


def _demuxer_options(head: bytes) -> dict[str, str]:
    """FFmpeg's options for the file whose first bytes are ``head``.

    FFmpeg's WAV demuxer reads 4 KiB packets by default: 64 KiB ones cut the per-frame overhead 16-fold. With them,
    probing for stream information reads and buffers packets up to its default 5 MB before the decode starts (95 ms
    of the 105 ms a 10 MiB WAV took), though a WAV's ``fmt `` chunk has already said everything it looks for: one
    packet's worth is enough, and every WAV decodes to the same samples, peaks and verdict either way.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return {"max_size": "65536", "probesize": "65536"}
    return {}


def _decode_frames(container: InputContainer, stream: AudioStream, fmt: str) -> _Audio:
    """Decode every frame of ``stream``, feeding the peaks as it goes."""
    acc: _PeakAccumulator | None = None
    channels = sample_rate = count = longest = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                n_channels = frame.layout.nb_channels
                if acc is None:
                    channels, sample_rate = n_channels, frame.sample_rate
                    _check_audio_shape(fmt, channels, sample_rate)
                    acc = _PeakAccumulator(channels, base_samples_per_pixel(sample_rate))
                elif (n_channels, frame.sample_rate) != (channels, sample_rate):
                    raise NotAudio(f"a {fmt} file whose audio changes from {channels} channel(s) at {sample_rate} Hz "
                                   f"to {n_channels} at {frame.sample_rate} Hz mid-stream")
                acc.add(frame_to_float(frame, channels))
                count += frame.samples
                longest = max(longest, frame.samples)
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise NotAudio(f"a damaged or truncated {fmt} file (decoding failed after {count} samples: "
                       f"{_ffmpeg_message(exc)})") from exc
    if acc is None or count == 0:
        raise NotAudio(f"a {fmt} file that decodes to no audio samples")
    mins, maxs = acc.finish()
    return _Audio(channels, sample_rate, count, longest,
                  build_peaks(mins, maxs, sample_rate=sample_rate, base_spp=acc.spp))


def _check_audio_shape(fmt: str, channels: int, sample_rate: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise NotAudio(f"a {fmt} file with {channels} channels (at most {MAX_CHANNELS} are served)")
    if not SAMPLE_RATE_RANGE[0] <= sample_rate <= SAMPLE_RATE_RANGE[1]:
        raise NotAudio(f"a {fmt} file sampled at {sample_rate} Hz")


def _describe_unreadable(head: bytes, exc: av.error.FFmpegError) -> str:
    """What a body FFmpeg cannot open is: a damaged file of a known kind by its magic bytes, else just data."""
    kind = next((name for offset, magic, name in _MAGIC if head[offset:offset + len(magic)] == magic), None)
    if kind is None:
        return f"data FFmpeg cannot read as media ({_ffmpeg_message(exc)})"
    return f"{kind} that cannot be opened, truncated or damaged ({_ffmpeg_message(exc)})"


def _ffmpeg_message(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc)
