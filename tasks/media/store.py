"""The media store protocol, and :func:`media_store`, which picks the configured one: a local directory (the
default, :mod:`tasks.media.local`) or an S3-compatible bucket shared by several hosts (``RECPLAY_STORAGE=s3``,
:mod:`tasks.media.s3`).

The HTTP layer asks a store what it can do rather than testing its class: whether it sends a client elsewhere
(:meth:`Store.redirect_url`, a presigned URL) and whether nginx can send the file itself
(:meth:`Store.accel_path`); otherwise it reads the ranges it needs (:meth:`Store.open_ranges`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from tasks.media.local import MediaStore, PartialFile, Written, peaks_name

__all__ = ["RangeSource", "Store", "media_store", "peaks_name"]
from tasks.settings import Settings


class RangeSource(Protocol):
    """A seekable reader of one stored file."""

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset``."""

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current offset."""

    def close(self) -> None:
        """Let go of the file."""


class Store(Protocol):
    """What every media store does."""

    kind: str

    def open_partial(self, business_id: str, call_sid: str) -> PartialFile:
        """A new partial file for a download of this recording."""

    def commit(self, written: Written, business_id: str, call_sid: str, recording_id: int) -> str:
        """Put the verified file in place; returns its name in the store (kept in the catalog)."""

    def exists(self, rel: str | None) -> bool:
        """Whether the store holds ``rel``, as cheaply as the store can tell (S3 trusts the catalog)."""

    def verify(self, rel: str) -> bool:
        """Whether ``rel`` is really there, asking the backend itself."""

    def delete(self, rel: str | None) -> None:
        """Remove ``rel`` and its peaks (nothing when they are gone already)."""

    def put_peaks(self, rel: str, data: bytes) -> None:
        """Keep the waveform peaks of ``rel`` beside it (``peaks_name``), written whole."""

    def get_peaks(self, rel: str) -> bytes | None:
        """The waveform peaks of ``rel``, or None when none were stored."""

    def delete_recording(self, business_id: str, call_sid: str, recording_id: int, keep: str | None = None) -> int:
        """Remove every stored file of one recording, whatever its extension, but ``keep``; returns how many."""

    def open_ranges(self, rel: str, parts: list[tuple[int, int]]) -> RangeSource:
        """A seekable reader of ``rel`` for sending the byte ranges ``parts``; the caller closes it."""

    def redirect_url(self, rel: str, content_type: str, disposition: str | None) -> str | None:
        """A short-lived URL a client may fetch ``rel`` from itself, or None when the API must send it."""

    def accel_path(self, rel: str) -> str | None:
        """The path nginx finds ``rel`` at below its internal location, or None when nginx cannot send it."""

    def local_copy(self, rel: str) -> AbstractContextManager[Path]:
        """The stored file as a local path while the block runs (a bucket's object is fetched to the spool)."""

    def is_writable(self) -> bool:
        """Whether a new file can be stored now (the readiness check)."""


def media_store(settings: Settings) -> Store:
    """The configured store: the local media directory, or the S3 bucket."""
    if settings.storage == "s3":
        # boto3 takes a large part of a second to import: only S3 deployments pay for it.
        from tasks.media.s3 import S3Store

        return S3Store(settings)
    return MediaStore(settings.media_dir)
