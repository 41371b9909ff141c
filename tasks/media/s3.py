"""The media store in an S3-compatible bucket, shared by every host (``RECPLAY_STORAGE=s3``).

A download is written to a local partial file (hashed, counted and checked as for the local store), then
uploaded in one PUT: an object appears whole or not at all. Objects are named
``[RECPLAY_S3_PREFIX/]<business_id>/<call_sid>-<recording id>.<ext>``; the catalog holds the key.

Credentials, region and the rest come from boto3's usual chain (AWS_ACCESS_KEY_ID..., instance roles);
``RECPLAY_S3_ENDPOINT_URL`` points at another S3-compatible service (MinIO, Ceph, R2...).

``exists`` trusts the catalog (a ready recording has a key) so that listing recordings costs no request to the
bucket; the stream endpoint finds out when an object is really gone (:meth:`S3Store.stat`) and the recording is
fetched again.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tasks.errors import ConfigError
from tasks.media.local import PartialFile, Written, peaks_name
from tasks.media.types import extension_for, safe_content_type
from tasks.settings import Settings

_clients: dict[tuple[str | None, str | None], Any] = {}
_clients_lock = threading.Lock()
CHUNK = 64 * 1024


def s3_client(settings: Settings) -> Any:
    """One boto3 client per process and endpoint (clients are thread-safe)."""
    key = (settings.s3_endpoint_url, settings.s3_region)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                signature_version="s3v4",
                retries={"max_attempts": 5, "mode": "standard"},
                # Path-style URLs work with every S3-compatible service behind a custom endpoint.
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
                max_pool_connections=50,
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)
            _clients[key] = client
        return client


def reset_clients() -> None:
    with _clients_lock:
        _clients.clear()


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str


class S3Store:
    """The :class:`tasks.media.store.Store` protocol over a bucket."""

    kind = "s3"

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ConfigError("RECPLAY_STORAGE=s3 needs RECPLAY_S3_BUCKET")
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = f"{settings.s3_prefix}/" if settings.s3_prefix else ""
        self.client = s3_client(settings)
        self.spool = (settings.data_dir / "spool").absolute()

    def open_partial(self, business_id: str, call_sid: str) -> PartialFile:
        directory = self.spool / business_id
        directory.mkdir(parents=True, exist_ok=True)
        return PartialFile(directory / f".{call_sid}.{uuid.uuid4().hex}.part")

    def commit(self, written: Written, business_id: str, call_sid: str, recording_id: int) -> str:
        """Upload the verified file; returns its key. The local partial is removed either way."""
        key = f"{self.prefix}{business_id}/{call_sid}-{recording_id}.{extension_for(written.content_type)}"
        try:
            self.client.upload_file(
                str(written.temp_path), self.bucket, key,
                ExtraArgs={"ContentType": safe_content_type(written.content_type),
                           "Metadata": {"sha256": written.sha256}},
            )
        finally:
            Path(written.temp_path).unlink(missing_ok=True)
        return key

    def exists(self, rel: str | None) -> bool:
        return bool(rel)

    def stat(self, rel: str) -> ObjectInfo | None:
        """The object's size and type, or None when it is gone."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=rel)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(int(head["ContentLength"]), str(head.get("ContentType", "")))

    def verify(self, rel: str) -> bool:
        return self.stat(rel) is not None

    def delete(self, rel: str | None) -> None:
        if rel:
            self.client.delete_object(Bucket=self.bucket, Key=rel)
            self.client.delete_object(Bucket=self.bucket, Key=peaks_name(rel))

    def put_peaks(self, rel: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=peaks_name(rel), Body=data,
                               ContentType="application/octet-stream")

    def get_peaks(self, rel: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=peaks_name(rel))["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete_recording(self, business_id: str, call_sid: str, recording_id: int, keep: str | None = None) -> int:
        """Remove every object of the recording (``<call_sid>-<id>.<any extension>``) but ``keep`` and its peaks."""
        listed = self.client.list_objects_v2(Bucket=self.bucket,
                                             Prefix=f"{self.prefix}{business_id}/{call_sid}-{recording_id}.")
        kept = (keep, peaks_name(keep)) if keep is not None else ()
        keys = [o["Key"] for o in listed.get("Contents", []) if o["Key"] not in kept]
        for key in keys:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return len(keys)

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f".copy.{uuid.uuid4().hex}"
        try:
            self.client.download_file(self.bucket, rel, str(path))
            yield path
        finally:
            path.unlink(missing_ok=True)

    def redirect_url(self, rel: str, content_type: str, disposition: str | None) -> str | None:
        """A presigned URL (the bucket answers Range itself), unless RECPLAY_S3_STREAM=proxy."""
        if self.settings.s3_stream != "redirect":
            return None
        return self.presigned_url(rel, content_type, disposition)

    def accel_path(self, rel: str) -> str | None:
        return None

    def presigned_url(self, rel: str, content_type: str, disposition: str | None) -> str:
        """A presigned GET of ``rel`` whose answer says the table's content type, whatever the object was
        stored with (S3 has no override for X-Content-Type-Options or Content-Security-Policy: the bucket's own
        origin and the safe type are the defence there, see docs/security.md)."""
        params: dict[str, str] = {"Bucket": self.bucket, "Key": rel,
                                  "ResponseContentType": safe_content_type(content_type),
                                  "ResponseCacheControl": "private, max-age=300"}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return str(self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=self.settings.s3_presign_seconds))

    def open_ranges(self, rel: str, parts: list[tuple[int, int]]) -> RangeReader:
        return RangeReader(self.client, self.bucket, rel, parts)

    def is_writable(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except (ClientError, BotoCoreError):
            return False


class RangeReader:
    """A read-only, seekable view of an object for :func:`api.ranges.iter_body`: each planned part is one
    ranged GET, streamed."""

    def __init__(self, client: Any, bucket: str, key: str, parts: list[tuple[int, int]]) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.ends = {first: last for first, last in parts}
        self.body: Any = None
        self.chunks: Iterator[bytes] | None = None
        self.buffer = b""

    def seek(self, offset: int, whence: int = 0) -> int:
        self._close_body()
        last = self.ends.get(offset)
        span = f"bytes={offset}-{last}" if last is not None else f"bytes={offset}-"
        self.body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=span)["Body"]
        self.chunks = self.body.iter_chunks(CHUNK)
        return offset

    def read(self, size: int = -1) -> bytes:
        while self.chunks is not None and (size < 0 or len(self.buffer) < size):
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _close_body(self) -> None:
        if self.body is not None:
            self.body.close()
        self.body, self.chunks, self.buffer = None, None, b""

    def close(self) -> None:
        self._close_body()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
