"""The media store on a local directory (``RECPLAY_DATA_DIR/media``), and the partial file every store writes
a download into first. A file is written aside, checked, fsynced, then renamed into place, so a reader only
ever sees a whole file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from tasks.media.types import STORED_EXTENSIONS, extension_for


def peaks_name(rel: str) -> str:
    """Where a recording's waveform peaks are kept, in every store: beside it, ``.peaks`` appended."""
    return f"{rel}.peaks"


@dataclass(frozen=True)
class Written:
    """A verified temporary file, ready to be committed."""

    temp_path: Path
    size_bytes: int
    sha256: str
    content_type: str


class PartialFile:
    """A temporary file being written; hashes and counts as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "xb")  # noqa: SIM115 - closed in finish()/discard()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self, content_type: str) -> Written:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return Written(self.path, self.size, self._hash.hexdigest(), content_type)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class MediaStore:
    """Media files under one local directory (``RECPLAY_DATA_DIR/media``)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def _dir(self, business_id: str) -> Path:
        # business_id is a validated identifier: it cannot climb out of the root.
        d = self.root / business_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def open_partial(self, business_id: str, call_sid: str) -> PartialFile:
        return PartialFile(self._dir(business_id) / f".{call_sid}.{uuid.uuid4().hex}.part")

    def commit(self, written: Written, business_id: str, call_sid: str, recording_id: int) -> str:
        """Rename the verified file into place; returns its path relative to the root."""
        final = self._dir(business_id) / f"{call_sid}-{recording_id}.{extension_for(written.content_type)}"
        os.replace(written.temp_path, final)
        try:
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            final.unlink(missing_ok=True)  # not durably in place: the caller records nothing, so keep nothing
            raise
        return str(final.relative_to(self.root))

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str | None) -> bool:
        return bool(rel) and self.path(rel or "").is_file()

    def delete(self, rel: str | None) -> None:
        if rel:
            self.path(rel).unlink(missing_ok=True)
            self.path(peaks_name(rel)).unlink(missing_ok=True)

    def put_peaks(self, rel: str, data: bytes) -> None:
        final = self.path(peaks_name(rel))
        aside = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        aside.write_bytes(data)
        os.replace(aside, final)

    def get_peaks(self, rel: str) -> bytes | None:
        try:
            return self.path(peaks_name(rel)).read_bytes()
        except FileNotFoundError:
            return None

    def delete_recording(self, business_id: str, call_sid: str, recording_id: int, keep: str | None = None) -> int:
        """Remove every file of the recording (``<call_sid>-<id>.<extension>``, under every extension of
        :data:`~tasks.media.types.STORED_EXTENSIONS`) but ``keep`` and its peaks. A few names are tried, so the
        cost does not grow with the business's directory (call_sid is a validated identifier: no separator)."""
        kept = (keep, peaks_name(keep)) if keep is not None else ()
        removed = 0
        # Plain strings and os.unlink: this runs after every download, and most of the names are not there.
        prefix = f"{self.root}{os.sep}"
        for extension in STORED_EXTENSIONS:
            rel = f"{business_id}/{call_sid}-{recording_id}.{extension}"
            for name in (rel, peaks_name(rel)):
                if name in kept:
                    continue
                try:
                    os.unlink(prefix + name)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                removed += 1
        return removed

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        yield self.path(rel)

    def verify(self, rel: str) -> bool:
        """Whether the file is really there (``exists`` already looks at the disk)."""
        return self.exists(rel)

    def open_ranges(self, rel: str, parts: list[tuple[int, int]]) -> BinaryIO:
        """The file, for the API to send ``parts`` of it (the caller closes it)."""
        return open(self.path(rel), "rb")

    def redirect_url(self, rel: str, content_type: str, disposition: str | None) -> str | None:
        """None: a local file is sent by the API (or nginx), never through a redirect."""
        return None

    def accel_path(self, rel: str) -> str | None:
        """The file's path below the store's root, URL-quoted, for nginx's internal location."""
        return quote(rel)

    def is_writable(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False
