"""Decode, don't trust: real PyAV decodes of fixtures that PyAV's own encoders write, in the isolated child.

Every fixture is generated here, into tmp_path: a tone of known length, shape and amplitude, so each assertion
checks an exact outcome (a format, a sample count within one codec frame, a peak value, a refusal's message).
The isolation tests have the child run ``tests.decode_children`` to play a crashing, hanging or memory-hungry
decoder.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import re
import signal
import struct
import time
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
import pytest
from av.audio.stream import AudioStream

from tasks.media import decode as decode_mod
from tasks.media import sandbox
from tasks.media.decode import (
    FORMATS,
    MAX_PEAK_PAIRS,
    DecodedMedia,
    DecodeFailed,
    NotAudio,
    Peaks,
    _PeakAccumulator,
    base_samples_per_pixel,
    build_peaks,
    encode_peaks,
    frame_to_float,
    parse_peaks,
    sniff_not_media,
)
from tasks.media.sandbox import decode_audio, run_isolated
from tests import decode_children as children
from tests.provider import make_wav

MAX_SECONDS = 60.0
MAX_MEMORY = 256 << 20


# --- fixtures -------------------------------------------------------------------------------------------------


def tone(seconds: float, rate: int, amplitude: float = 0.5, freq: float = 440.0) -> np.ndarray:
    n = round(seconds * rate)
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def write_wav(path: Path, channels: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV of float samples shaped (channels, n), each sample round(v * 32767)."""
    pcm = np.round(np.clip(channels, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.T.tobytes())
    return path


def have_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def encode(path: Path, container: str, codec: str, samples: np.ndarray, rate: int, *,
           options: dict[str, str] | None = None, codec_options: dict[str, str] | None = None) -> Path:
    """Encode float samples shaped (channels, n) with PyAV, as one timestamped frame the encoder reframes."""
    if not have_encoder(codec):
        pytest.skip(f"this PyAV build has no {codec} encoder")
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    with av.open(str(path), "w", format=container, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, AudioStream)
        stream.codec_context.options = codec_options or {}
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


@dataclass(frozen=True)
class Case:
    """One allowed format as a provider may send it; ``frame`` is the codec's frame length in samples."""

    name: str
    container: str
    codec: str
    rate: int
    frame: int
    channels: tuple[int, ...] = (1, 2)
    options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("mp3", "mp3", "libmp3lame", 8000, frame=576),  # MPEG-2.5 layer III: 576 samples a frame
    Case("wav", "wav", "pcm_s16le", 8000, frame=0),
    Case("ogg", "ogg", "libopus", 48000, frame=960),  # 20 ms
    # PyAV's FFmpeg build has no libvorbis; FFmpeg's own (experimental) Vorbis encoder writes stereo only.
    Case("ogg", "ogg", "vorbis", 8000, frame=1024, channels=(2,), codec_options={"strict": "experimental"}),
    Case("flac", "flac", "flac", 8000, frame=0),
    Case("m4a", "ipod", "aac", 8000, frame=1024),
    Case("m4a", "ipod", "aac", 8000, frame=1024, options={"movflags": "+faststart"}),
]


def case_id(case: Case) -> str:
    return f"{case.codec}-{case.container}{'-faststart' if case.options else ''}"


def make(case: Case, path: Path, seconds: float = 2.0, channels: int | None = None) -> Path:
    samples = np.tile(tone(seconds, case.rate), (channels or case.channels[0], 1))
    return encode(path, case.container, case.codec, samples, case.rate, options=case.options,
                  codec_options=case.codec_options)


def decode(path: Path) -> DecodedMedia:
    return decode_audio(path, max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)


def refusal(path: Path) -> str:
    with pytest.raises(NotAudio) as info:
        decode(path)
    return str(info.value)


# --- allowed formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_each_allowed_format_decodes_with_its_content_type_duration_and_channels(case: Case, tmp_path: Path) -> None:
    for channels in case.channels:
        # The name says nothing: the format is detected.
        path = make(case, tmp_path / f"recording-{channels}.bin", seconds=2.0, channels=channels)
        media = decode(path)
        assert media.format == case.name
        assert media.content_type == FORMATS[case.name].content_type
        assert media.extension == FORMATS[case.name].extension
        assert media.channels == channels
        assert media.sample_rate == case.rate
        generated = 2 * case.rate
        assert abs(media.sample_count - generated) <= case.frame, (media.sample_count, generated)
        assert media.duration_seconds == media.sample_count / case.rate
        peaks = parse_peaks(media.peaks)
        assert (peaks.sample_rate, peaks.samples_per_pixel, peaks.channels) == (case.rate, case.rate // 20, channels)
        assert peaks.length == math.ceil(media.sample_count / peaks.samples_per_pixel)


def test_the_content_type_table_is_fixed() -> None:
    assert {name: (f.content_type, f.extension) for name, f in FORMATS.items()} == {
        "mp3": ("audio/mpeg", "mp3"), "wav": ("audio/wav", "wav"), "ogg": ("audio/ogg", "ogg"),
        "flac": ("audio/flac", "flac"), "m4a": ("audio/mp4", "m4a")}
    with pytest.raises(TypeError):
        FORMATS["webm"] = FORMATS["ogg"]  # type: ignore[index]


def test_an_mp3_with_cover_art_is_audio_not_video(tmp_path: Path) -> None:
    mp3 = make(CASES[0], tmp_path / "plain.mp3").read_bytes()
    png = _png(tmp_path / "cover.png")
    apic = b"\x00image/png\x00\x03\x00" + png  # latin-1, MIME type, front cover, empty description, picture
    frame = b"APIC" + struct.pack(">I", len(apic)) + b"\x00\x00" + apic
    syncsafe = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    tag = b"ID3\x03\x00\x00" + syncsafe + frame
    path = tmp_path / "tagged.mp3"
    path.write_bytes(tag + mp3)
    with av.open(str(path)) as container:  # FFmpeg does see the picture, as a video stream
        assert [s.codec_context.codec.canonical_name for s in container.streams.video] == ["png"]
    media = decode(path)
    assert (media.format, media.sample_count) == ("mp3", 16000)
    cut = tmp_path / "tagged-cut.mp3"  # the Xing header is still found behind the tag
    cut.write_bytes(tag + mp3[:int(len(mp3) * 0.6)])
    assert "truncated" in refusal(cut)


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "what"), [
    (b"<!doctype html><script>location='/login'</script>", "an HTML page"),
    (b"\xef\xbb\xbf\n  <HTML><head><title>502 Bad Gateway</title></head></HTML>", "an HTML page"),
    (b'{"code": 20404, "message": "The requested resource was not found"}', "a JSON document"),
    (b'[{"sid": "RE123"}]', "a JSON document"),
    (b'<?xml version="1.0"?><TwilioResponse><RestException/></TwilioResponse>', "an XML document"),
    (b"Service Unavailable\r\n", "text"),
    ("Aucun enregistrement trouvé".encode("latin-1"), "text"),
    (b"", "an empty file"),
])
def test_text_labelled_as_audio_is_refused_for_what_it_is(body: bytes, what: str, tmp_path: Path) -> None:
    path = tmp_path / "recording.mp3"
    path.write_bytes(body)
    assert refusal(path) == f"not audio: the provider sent {what}"


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "ogg"], ids=case_id)
def test_a_file_cut_at_60_percent_is_refused(case: Case, tmp_path: Path) -> None:
    whole = make(case, tmp_path / "whole", seconds=10.0)
    cut = tmp_path / "cut"
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * 0.6)])
    message = refusal(cut)
    assert "truncated" in message
    if case.name in ("mp3", "wav"):  # these decode cleanly to the bytes present: only the header tells
        found = re.fullmatch(rf"not audio: the provider sent a truncated {case.name} file \(it decodes to (\d+) of "
                             r"the (\d+) samples its header declares, .*\)", message)
        assert found, message
        decoded, declared = int(found[1]), int(found[2])
        # A WAV declares its samples exactly; an MP3's Info frame count includes the encoder's delay and padding
        # (about two frames) or not, depending on FFmpeg's version.
        assert declared == 80000 if case.name == "wav" else 80000 <= declared <= 80000 + 3 * case.frame
        assert decoded <= 0.6 * declared


def test_a_wav_whose_data_chunk_reaches_past_the_end_by_one_sample_is_refused(tmp_path: Path) -> None:
    whole = write_wav(tmp_path / "whole.wav", tone(1.0, 8000)[None, :], 8000).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[:-2])
    assert refusal(cut) == ("not audio: the provider sent a truncated wav file "
                            "(it decodes to 7999 of the 8000 samples its header declares, 1.00 s of 1.00 s)")


@pytest.mark.parametrize("erase", ["the Info tag", "its frames flag"])
def test_an_mp3_without_a_frame_count_is_judged_by_its_decode_alone(erase: str, tmp_path: Path) -> None:
    # Without a frame count FFmpeg estimates the duration from the bitrate and the file's size, so nothing declares
    # a length: the cut file passes as a shorter recording.
    whole = make(CASES[0], tmp_path / "whole.mp3", seconds=10.0).read_bytes()
    assert whole.count(b"Info") == 1
    at = whole.index(b"Info")
    flags = struct.unpack(">I", whole[at + 4:at + 8])[0]
    assert flags & 1
    if erase == "the Info tag":
        stripped = whole[:at] + bytes(4) + whole[at + 4:]
    else:
        stripped = whole[:at + 4] + struct.pack(">I", flags & ~1) + whole[at + 8:]
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(stripped[:int(len(stripped) * 0.6)])
    assert 5.5 < decode(cut).duration_seconds < 6.5


def test_a_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("aac", rate=8000, layout="mono")
        for i in range(5):
            picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), format="rgb24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
        sound = av.AudioFrame.from_ndarray(tone(0.5, 8000)[None, :], format="fltp", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = 8000, 0, Fraction(1, 8000)
        for packet in [*video.encode(None), *audio.encode(sound), *audio.encode(None)]:
            out.mux(packet)
    assert refusal(path) == ("not audio: the provider sent a video "
                             "(mpeg4 video with aac audio in mov,mp4,m4a,3gp,3g2,mj2)")


@pytest.mark.skipif(not have_encoder("libx264"), reason="this PyAV build has no libx264 encoder")
def test_a_silent_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), format="rgb24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    assert refusal(path) == "not audio: the provider sent a video without sound (h264 in mov,mp4,m4a,3gp,3g2,mj2)"


def _png(path: Path) -> bytes:
    with av.open(str(path), "w", format="image2pipe") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        picture.pts = 0
        for packet in [*stream.encode(picture), *stream.encode(None)]:
            out.mux(packet)
    return path.read_bytes()


def test_an_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "recording.wav"
    path.write_bytes(_png(tmp_path / "image.png"))
    assert refusal(path) == "not audio: the provider sent an image (png)"


def test_audio_outside_the_allowed_formats_is_refused(tmp_path: Path) -> None:
    path = encode(tmp_path / "call.mka", "matroska", "libopus", tone(1.0, 48000)[None, :], 48000)
    assert refusal(path) == ("not audio: the provider sent opus audio in a matroska,webm container, "
                             "which is none of mp3, wav, ogg, flac, m4a")


def test_a_wav_of_no_samples_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros((1, 0), np.float32), 8000)
    assert refusal(path) == "not audio: the provider sent a wav file that decodes to no audio samples"


def test_binary_junk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp3"
    path.write_bytes(bytes(range(256)) * 64)
    assert refusal(path).startswith("not audio: the provider sent data FFmpeg cannot read as media (")


def test_audio_headers_are_not_taken_for_text(tmp_path: Path) -> None:
    for case in CASES:
        head = make(case, tmp_path / f"{case_id(case)}.bin", seconds=0.5).read_bytes()[:1024]
        assert sniff_not_media(head) is None, case_id(case)
    assert sniff_not_media(make_wav(0.1)) is None


@pytest.mark.parametrize("codec", ["pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_mulaw",
                                   "pcm_alaw"])
def test_wav_of_each_served_pcm_codec_decodes_to_the_same_waveform(codec: str, tmp_path: Path) -> None:
    path = encode(tmp_path / "call.wav", "wav", codec, np.tile(tone(1.0, 8000), (2, 1)), 8000)
    media = decode(path)
    assert (media.format, media.codec, media.channels, media.sample_count) == ("wav", codec, 2, 8000)
    peaks = parse_peaks(media.peaks)
    slack = 4 if codec in ("pcm_mulaw", "pcm_alaw") else 2  # G.711's step near half scale is 1/32: 4 in int8
    assert np.all(np.abs(peaks.maxs.astype(int) - 64) <= slack), peaks.maxs
    assert np.all(np.abs(peaks.mins.astype(int) + 64) <= slack), peaks.mins


def _riff(*chunks: tuple[bytes, bytes], size: int | None = None, cut: int = 0) -> bytes:
    """A RIFF/WAVE file of ``chunks`` (tag, payload) in that order; ``size`` overrides the data chunk's size."""
    body = b"WAVE"
    for tag, payload in chunks:
        declared = size if tag == b"data" and size is not None else len(payload)
        body += tag + struct.pack("<I", declared) + payload + b"\0" * (len(payload) % 2)
    whole = b"RIFF" + struct.pack("<I", len(body)) + body
    return whole[:len(whole) - cut]


def _fmt(codec: int, channels: int, rate: int, bits: int) -> tuple[bytes, bytes]:
    align = channels * bits // 8
    return b"fmt ", struct.pack("<HHIIHH", codec, channels, rate, rate * align, align, bits)


_NOISE = np.random.default_rng(7).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
_PCM16, _ALAW = _fmt(1, 1, 8000, 16), _fmt(6, 1, 8000, 8)
_LIST = (b"LIST", b"INFO" + b"x" * 100_000)
WAV_LAYOUTS = {
    "fmt, data": _riff(_PCM16, (b"data", _NOISE[:16_000])),
    "2 MiB past one probe": _riff(_PCM16, (b"data", _NOISE[:2 << 20])),
    "stereo 24-bit": _riff(_fmt(1, 2, 48000, 24), (b"data", _NOISE[:600_000])),
    "G.711 A-law": _riff(_ALAW, (b"data", _NOISE[:400_000])),
    "a large LIST first": _riff(_LIST, _PCM16, (b"data", _NOISE[:200_000])),
    "a large LIST between": _riff(_PCM16, _LIST, (b"data", _NOISE[:200_000])),
    "a chunk after the data": _riff(_PCM16, (b"data", _NOISE[:200_000]), _LIST),
    "data before fmt": _riff((b"data", _NOISE[:200_000]), _PCM16),
    "data size 0": _riff(_PCM16, (b"data", _NOISE[:200_000]), size=0),
    "data size unknown": _riff(_PCM16, (b"data", _NOISE[:200_000]), size=0xFFFF_FFFF),
    "data size short": _riff(_PCM16, (b"data", _NOISE[:200_000]), size=1000),
    "cut by one sample": _riff(_PCM16, (b"data", _NOISE[:200_000]), cut=2),
    "cut by half": _riff(_PCM16, (b"data", _NOISE[:200_000]), cut=100_000),
    "no samples": _riff(_PCM16, (b"data", b"")),
    "nine channels": _riff(_fmt(1, 9, 8000, 16), (b"data", _NOISE[:180_000])),
}


@pytest.mark.parametrize("layout", WAV_LAYOUTS)
def test_a_wav_gets_the_same_verdict_with_one_packet_of_probing_as_with_ffmpegs_default(
        layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAV options stop stream probing after one packet (a 10 MiB WAV's decode went from 105 to 10 ms): the
    samples, peaks and refusals must be those of FFmpeg's default probing of 5 MB."""
    path = tmp_path / "call.wav"
    path.write_bytes(WAV_LAYOUTS[layout])
    assert decode_mod._demuxer_options(path.read_bytes()[:1024])["probesize"] == "65536"

    def verdict() -> tuple[str, object]:
        try:
            return "decoded", decode_mod.decode_in_process(path)
        except NotAudio as exc:
            return "refused", str(exc)

    ours = verdict()
    monkeypatch.setattr(decode_mod, "_demuxer_options", lambda head: {"max_size": "65536"})
    assert verdict() == ours
    expected_kind = {"cut by one sample": "refused", "cut by half": "refused", "no samples": "refused",
                     "nine channels": "refused", "data before fmt": "decoded"}.get(layout, "decoded")
    assert ours[0] == expected_kind, ours


@pytest.mark.parametrize("fmt", ["u8", "u8p", "s16", "s16p", "s32", "s32p", "flt", "fltp", "dbl", "dblp"])
def test_frames_of_every_sample_format_and_layout_become_the_same_floats(fmt: str) -> None:
    left = np.array([-1.0, -0.5, 0.0, 0.25, 0.5], np.float64)
    right = -left / 2
    kind = fmt.rstrip("p")
    scale = {"u8": 128, "s16": 32768, "s32": 2**31}.get(kind)
    dtype = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}[kind]
    planar = np.stack([left, right])
    if scale:
        planar = planar * scale + (128 if kind == "u8" else 0)
    raw = planar.astype(dtype) if fmt.endswith("p") else planar.T.reshape(1, -1).astype(dtype)
    frame = av.AudioFrame.from_ndarray(raw, format=fmt, layout="stereo")
    floats = frame_to_float(frame, 2)
    assert floats.dtype == np.float32 and floats.flags.c_contiguous
    assert floats.tolist() == [left.tolist(), right.tolist()]


# --- peaks -----------------------------------------------------------------------------------------------------


def test_stereo_peaks_show_a_half_scale_tone_left_and_exact_silence_right(tmp_path: Path) -> None:
    rate = 8000
    left = tone(3.0, rate, amplitude=0.5)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)]), rate)
    peaks = parse_peaks(decode(path).peaks)
    assert (peaks.channels, peaks.samples_per_pixel, peaks.length) == (2, 400, 60)
    lo, hi = peaks.mins[0], peaks.maxs[0]
    assert np.all((hi >= 62) & (hi <= 66)), hi  # 0.5 * 127 ~ 64: within 2
    assert np.all((lo >= -66) & (lo <= -62)), lo
    assert not peaks.mins[1].any() and not peaks.maxs[1].any()


def test_the_silent_middle_of_tone_silence_tone_is_zero_in_exactly_its_pixels(tmp_path: Path) -> None:
    rate = 8000  # 400 samples a pixel: 2 s of tone are pixels 0..39, the silence 40..79, the tone again 80..119
    samples = np.concatenate([tone(2.0, rate), np.zeros(2 * rate, np.float32), tone(2.0, rate)])
    peaks = parse_peaks(decode(write_wav(tmp_path / "gap.wav", samples[None, :], rate)).peaks)
    assert peaks.length == 120
    silent = np.flatnonzero((peaks.mins[0] == 0) & (peaks.maxs[0] == 0))
    assert silent.tolist() == list(range(40, 80))


def test_a_recording_over_an_hour_gets_coarser_pixels_not_more(tmp_path: Path) -> None:
    rate = 1000  # the lowest rate served keeps an hour small: 50 samples a 50 ms pixel
    seconds = 3601
    samples = np.tile(np.array([0.25, -0.25], np.float32), seconds * rate // 2)
    media = decode(write_wav(tmp_path / "long.wav", samples[None, :], rate))
    peaks = parse_peaks(media.peaks)
    assert media.sample_count == seconds * rate
    assert peaks.samples_per_pixel == 100  # 72,020 pixels of 50 would be too many
    assert peaks.length == 36_010
    assert set(peaks.maxs[0].tolist()) == {32} and set(peaks.mins[0].tolist()) == {-32}


def test_an_hour_of_stereo_peaks_is_under_400_kib() -> None:
    base = base_samples_per_pixel(8000)
    pixels = 3600 * 8000 // base
    floats = np.zeros((2, pixels), np.float32)
    data = encode_peaks(build_peaks(floats, floats, sample_rate=8000, base_spp=base))
    assert pixels == MAX_PEAK_PAIRS
    assert len(data) == 24 + MAX_PEAK_PAIRS * 2 * 2 == 288_024
    assert len(data) < 400 * 1024


def test_pixels_of_any_frame_split_match_a_whole_array_reference() -> None:
    rng = np.random.default_rng(7)
    samples = rng.uniform(-1, 1, size=(2, 40_123)).astype(np.float32)
    acc = _PeakAccumulator(2, 400)
    cuts = np.sort(rng.choice(np.arange(1, samples.shape[1]), size=300, replace=False))
    for chunk in np.split(samples, cuts, axis=1):
        acc.add(chunk)
    mins, maxs = acc.finish()
    padded = np.pad(samples, ((0, 0), (0, 101 * 400 - samples.shape[1])), mode="edge")
    assert np.array_equal(mins, padded.reshape(2, 101, 400).min(axis=2))
    assert np.array_equal(maxs, padded.reshape(2, 101, 400).max(axis=2))


def test_coarsening_merges_whole_runs_and_keeps_the_partial_last_one() -> None:
    hour = np.zeros((1, MAX_PEAK_PAIRS), np.float32)
    assert build_peaks(hour, hour, sample_rate=8000, base_spp=400).samples_per_pixel == 400
    many = np.zeros((1, MAX_PEAK_PAIRS * 2 + 1), np.float32)
    many[0, -1] = -1.0
    coarse = build_peaks(many, -many, sample_rate=8000, base_spp=400)
    assert (coarse.samples_per_pixel, coarse.length) == (1200, MAX_PEAK_PAIRS * 2 // 3 + 1)
    assert coarse.mins[0, -1] == -128 and coarse.maxs[0, -1] == 127 and not coarse.mins[0, :-1].any()


def test_float_to_int8_floors_v_times_128_and_clips() -> None:
    values = np.array([[-1.5, -1.0, -0.5, -1 / 256, 0.0, 1 / 256, 0.5, 0.999, 1.0, 2.0]], np.float32)
    peaks = build_peaks(values, values, sample_rate=8000, base_spp=400)
    assert peaks.mins[0].tolist() == [-128, -128, -64, -1, 0, 0, 64, 127, 127, 127]
    odd = np.array([[np.nan, np.inf, -np.inf]], np.float32)
    assert build_peaks(odd, odd, sample_rate=8000, base_spp=400).maxs[0].tolist() == [0, 127, -128]


def test_peaks_round_trip_through_the_dat_format() -> None:
    mins = np.array([[-5, -128, 0], [-1, -2, -3]], np.int8)
    maxs = np.array([[5, 127, 0], [1, 2, 3]], np.int8)
    data = encode_peaks(Peaks(8000, 400, mins, maxs))
    assert data[:24] == struct.pack("<iIiiIi", 2, 1, 8000, 400, 3, 2)
    assert data[24:] == bytes(np.array([-5, 5, -1, 1, -128, 127, -2, 2, 0, 0, -3, 3], np.int8).tobytes())
    back = parse_peaks(data)
    assert (back.sample_rate, back.samples_per_pixel, back.channels, back.length) == (8000, 400, 2, 3)
    assert np.array_equal(back.mins, mins) and np.array_equal(back.maxs, maxs)
    assert back.seconds_per_pixel == 0.05
    with pytest.raises(ValueError):
        back.mins[0, 0] = 1


def _dat(version: int = 2, flags: int = 1, rate: int = 8000, spp: int = 400, length: int = 2, channels: int = 1,
         body: int | None = None) -> bytes:
    size = length * channels * 2 if body is None else body
    return struct.pack("<iIiiIi", version, flags, rate, spp, length, channels) + bytes(size)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "peaks data is 0 bytes, shorter than the 24-byte header"),
    (_dat()[:23], "peaks data is 23 bytes, shorter than the 24-byte header"),
    (_dat(version=1), "peaks version 1, expected 2"),
    (_dat(flags=0), "peaks flags 0x0, expected 0x1 (8-bit values, nothing else)"),
    (_dat(channels=0, body=0), "peaks channel count 0, expected 1..8"),
    (_dat(channels=9), "peaks channel count 9, expected 1..8"),
    (_dat(rate=0), "peaks sample rate 0 Hz is outside 1000..768000"),
    (_dat(rate=-8000), "peaks sample rate -8000 Hz is outside 1000..768000"),
    (_dat(spp=0), "peaks samples per pixel 0, expected at least 1"),
    (_dat(length=MAX_PEAK_PAIRS + 1, body=0), "peaks length 72001 pixels, more than the 72000 this service writes"),
    (_dat(length=0xFFFF_FFFF, body=0), "peaks length 4294967295 pixels, more than the 72000 this service writes"),
    (_dat(body=3), "peaks header declares 2 pixels of 1 channel(s), 28 bytes in all, but the data is 27 bytes"),
    (_dat(body=5), "peaks header declares 2 pixels of 1 channel(s), 28 bytes in all, but the data is 29 bytes"),
])
def test_parse_peaks_refuses_malformed_data(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_peaks(data)
    assert str(info.value) == message


# --- isolation ---------------------------------------------------------------------------------------------------


def test_a_decode_past_its_time_budget_is_killed_and_the_caller_goes_on(tmp_path: Path) -> None:
    long_wav = write_wav(tmp_path / "long.wav", np.tile(tone(1.0, 8000), 600)[None, :], 8000)  # 10 minutes
    started = time.monotonic()
    with pytest.raises(DecodeFailed) as info:
        decode_audio(long_wav, max_seconds=0.001, max_memory_bytes=256 << 20)
    assert time.monotonic() - started < 5
    assert info.value.reason == "timeout"
    assert str(info.value) == "decode failed (timeout): the decoder ran past its 0.001 s budget and was killed"
    assert decode(write_wav(tmp_path / "short.wav", tone(0.5, 8000)[None, :], 8000)).sample_count == 4000


def test_a_hung_child_is_killed_at_its_deadline_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(DecodeFailed) as info:
        run_isolated(children.hang, (str(pid_file),), max_seconds=2.0, max_memory_bytes=64 << 20)
    assert info.value.reason == "timeout"
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    assert not psutil.pid_exists(pid)


@pytest.mark.parametrize(("signum", "detail"), [
    (signal.SIGKILL, "the decoder died by SIGKILL (a memory or time limit, the OOM killer or an operator)"),
    (signal.SIGSEGV, "the decoder died by SIGSEGV"),
    (signal.SIGXCPU, "the decoder died by SIGXCPU (its CPU time limit)"),
])
def test_a_child_killed_by_a_signal_fails_the_attempt(signum: int, detail: str, tmp_path: Path) -> None:
    with pytest.raises(DecodeFailed) as info:
        run_isolated(children.kill_self, (signum,), max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)
    assert (info.value.reason, info.value.detail) == ("signal", detail)
    assert decode(write_wav(tmp_path / "after.wav", tone(0.5, 8000)[None, :], 8000)).sample_count == 4000


def test_a_child_over_its_memory_limit_fails_the_attempt() -> None:
    with pytest.raises(DecodeFailed) as info:
        run_isolated(children.allocate, (1 << 30,), max_seconds=30, max_memory_bytes=64 << 20)
    assert info.value.reason == "memory"
    assert run_isolated(children.allocate, (16 << 20,), max_seconds=30, max_memory_bytes=64 << 20) == 16 << 20


def test_a_child_that_exits_without_answering_fails_the_attempt() -> None:
    with pytest.raises(DecodeFailed) as info:
        run_isolated(children.exit_quietly, (0,), max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)
    assert (info.value.reason, info.value.detail) == ("exit", "the decoder exited with code 0 without an answer")


def test_an_unexpected_error_in_the_child_fails_the_attempt() -> None:
    with pytest.raises(DecodeFailed) as info:
        run_isolated(children.fail, (), max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)
    assert (info.value.reason, info.value.detail) == ("error", "RuntimeError: a decoder bug")


def test_errors_survive_pickling_as_celery_results_do() -> None:
    not_audio = pickle.loads(pickle.dumps(NotAudio("an HTML page")))
    assert (str(not_audio), not_audio.what, not_audio.permanent) == (
        "not audio: the provider sent an HTML page", "an HTML page", True)
    failed = pickle.loads(pickle.dumps(DecodeFailed("timeout", "too slow")))
    assert (str(failed), failed.reason, failed.permanent) == ("decode failed (timeout): too slow", "timeout", False)


def test_budgets_must_be_positive(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", tone(0.1, 8000)[None, :], 8000)
    with pytest.raises(ValueError):
        decode_audio(path, max_seconds=0, max_memory_bytes=1 << 20)
    with pytest.raises(ValueError):
        decode_audio(path, max_seconds=1, max_memory_bytes=0)


# --- decoders reused ---------------------------------------------------------------------------------------------


def _idle_pids() -> list[int]:
    return [d.pid for d in sandbox._pool.idle]


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_decoder_is_reused_and_retired_after_a_refusal(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", tone(0.2, 8000)[None, :], 8000)
    sandbox._pool.close()
    decode(wav)
    [first] = _idle_pids()
    assert first != os.getpid() and psutil.pid_exists(first)
    decode(wav)
    assert _idle_pids() == [first]  # the same process decoded again
    # A body the decoder refuses (not caught by the sniffing before it) retires the decoder that read it.
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\xff\xfb\x90\x00" + os.urandom(4000))
    with pytest.raises(NotAudio):
        decode(garbage)
    assert _idle_pids() == []
    assert _gone(first)
    decode(wav)
    assert _idle_pids() not in ([], [first])


def test_a_decoder_is_retired_after_its_last_use_and_a_dead_one_is_replaced(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    wav = write_wav(tmp_path / "a.wav", tone(0.2, 8000)[None, :], 8000)
    sandbox._pool.close()
    monkeypatch.setattr(sandbox, "MAX_USES", 2)
    decode(wav)
    [first] = _idle_pids()
    decode(wav)  # its second and last use
    assert _idle_pids() == []
    assert _gone(first)
    decode(wav)
    [second] = _idle_pids()
    assert second != first
    os.kill(second, signal.SIGKILL)  # an idle decoder dies (the OOM killer, an operator)
    assert decode(wav).sample_count == 1600  # a new one decodes; the dead one's end is not this decode's
    [third] = _idle_pids()
    assert third not in (first, second)


def test_decoders_taken_at_once_are_distinct_and_idle_ones_are_kept_up_to_the_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox._pool.close()
    monkeypatch.setattr(sandbox, "MAX_IDLE", 3)
    taken = [sandbox._pool.take(MAX_MEMORY) for _ in range(5)]  # five decodes at once
    assert len({d.pid for d in taken}) == 5
    for decoder in taken:
        sandbox._pool.give_back(decoder)
    kept = _idle_pids()
    assert len(kept) == 3 and set(kept) <= {d.pid for d in taken}
    assert sum(_gone(d.pid) for d in taken) == 2  # the two least recently used


def _decode_in_daemon(path: str, answers: Any) -> None:
    media = decode_audio(Path(path), max_seconds=MAX_SECONDS, max_memory_bytes=MAX_MEMORY)
    answers.put((media.format, media.sample_count, [d.pid for d in sandbox._pool.idle]))


def test_a_daemonic_process_decodes_in_a_decoder_interpreter_of_its_own(tmp_path: Path) -> None:
    """A Celery prefork pool child is daemonic: multiprocessing refuses it children, so its decoder is a new
    interpreter (``python -m tasks.media.sandbox``), answering the same way."""
    wav = write_wav(tmp_path / "a.wav", tone(0.2, 8000)[None, :], 8000)
    ctx = multiprocessing.get_context("fork")
    answers = ctx.Queue()
    proc = ctx.Process(target=_decode_in_daemon, args=(str(wav), answers), daemon=True)
    proc.start()
    fmt, samples, pids = answers.get(timeout=60)
    proc.join(30)
    assert (fmt, samples, proc.exitcode) == ("wav", 1600, 0)
    assert len(pids) == 1 and pids[0] not in (proc.pid, os.getpid())
