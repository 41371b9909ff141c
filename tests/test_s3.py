"""Media in an S3-compatible bucket (RECPLAY_STORAGE=s3), against moto's server mode on loopback: downloads
upload whole objects; the API streams them with Range (proxy mode) exactly as from the local directory, or
redirects to a presigned URL; a lost object is fetched again; DELETE removes it."""

from __future__ import annotations

import dataclasses
import email.parser
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tasks.catalog.queries import Catalog
from tasks.settings import get_settings, reset_settings
from tests.conftest import Api, assert_quiescent, free_port
from tests.provider import make_wav

AUDIO = make_wav(1.0)
L = len(AUDIO)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(data_dir: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Any, Any]]:
    """An empty bucket and the environment pointing at it; returns (boto3 client, api_for) for the mode."""
    from tasks.media.s3 import reset_clients

    bucket = f"recplay-{uuid.uuid4().hex[:12]}"
    env = {"RECPLAY_STORAGE": "s3", "RECPLAY_S3_BUCKET": bucket, "RECPLAY_S3_ENDPOINT_URL": moto_endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)

    def make(mode: str = "proxy") -> tuple[Any, Callable[[str], Api]]:
        monkeypatch.setenv("RECPLAY_S3_STREAM", mode)
        reset_settings()
        reset_clients()
        from api import create_app

        app_client = create_app({"TESTING": True}).test_client()
        return client, lambda business_id: Api(app_client, business_id)

    return make


def _objects(client: Any) -> dict[str, bytes]:
    bucket = get_settings().s3_bucket
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _view(response: Any) -> dict[str, Any]:
    headers = {name: response.headers.get(name) for name in
               ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified", "Accept-Ranges",
                "Content-Disposition", "Cache-Control")}
    content_type = headers["Content-Type"] or ""
    if content_type.startswith("multipart/byteranges"):
        message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode()
                                                        + response.data)
        parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]
        headers["Content-Type"] = headers["Content-Length"] = None
        return {"status": response.status_code, "headers": headers, "parts": parts}
    return {"status": response.status_code, "headers": headers, "sha256": hashlib.sha256(response.data).hexdigest()}


def test_a_download_lands_in_the_bucket_and_streams_with_range_as_from_local_files(s3, provider, procs):
    client, api_for = s3("proxy")
    procs.worker(concurrency=2)
    api = api_for("biz")
    api.register("CA1", provider.add("/biz/a.wav", body=AUDIO))
    api.fetch("CA1")
    body = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert body["status"] == "ready", body

    rec = Catalog(get_settings()).get("biz", "CA1")
    assert rec is not None and rec.file_path == f"biz/CA1-{rec.id}.wav"
    objects = _objects(client)
    assert set(objects) == {rec.file_path, f"{rec.file_path}.peaks"}  # the media, and its waveform peaks beside it
    assert objects[rec.file_path] == AUDIO
    head = client.head_object(Bucket=get_settings().s3_bucket, Key=rec.file_path)
    assert head["ContentType"] == "audio/wav"
    assert head["Metadata"]["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    settings = get_settings()
    assert not (settings.media_dir / rec.file_path).exists()
    assert [p for p in (settings.data_dir / "spool").rglob("*") if p.is_file()] == []

    # The same recording from the local directory: what the API answered before S3.
    (settings.media_dir / rec.file_path).parent.mkdir(parents=True)
    (settings.media_dir / rec.file_path).write_bytes(AUDIO)
    from api import create_app

    local = create_app({"TESTING": True,
                        "RECPLAY_SETTINGS": dataclasses.replace(settings, storage="local")}).test_client()
    etag = api.stream("CA1").headers["ETag"]
    cases = [{}, {"Range": "bytes=0-1"}, {"Range": "bytes=-500"}, {"Range": f"bytes=-{L + 5}"},
             {"Range": f"bytes=100-{L + 100}"}, {"Range": f"bytes={L}-"}, {"Range": "bytes=0-9,20-29,-5"},
             {"Range": "bytes=5-9", "If-Range": etag}, {"Range": "bytes=5-9", "If-Range": f"W/{etag}"},
             {"If-None-Match": etag}]
    for headers in cases:
        from_s3 = api.stream("CA1", headers)
        from_disk = local.get("/api/recordings/CA1/stream", headers={**api.headers, **headers})
        assert _view(from_s3) == _view(from_disk), headers
    assert api.stream("CA1", {"Range": "bytes=0-1"}).data == AUDIO[:2]
    assert api.stream("CA1", method="HEAD").data == b""
    assert provider.downloads["/biz/a.wav"] == 1

    # An object lost from the bucket is fetched again, once.
    client.delete_object(Bucket=settings.s3_bucket, Key=rec.file_path)
    lost = api.stream("CA1")
    assert lost.status_code == 202
    again = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert again["status"] == "ready"
    assert api.stream("CA1").data == AUDIO
    assert provider.downloads["/biz/a.wav"] == 2

    assert api.client.delete("/api/recordings/CA1", headers=api.headers).status_code == 204
    assert _objects(client) == {}
    assert_quiescent()


def test_redirect_mode_sends_the_player_to_a_presigned_url_that_honours_range(s3):
    client, api_for = s3("redirect")
    settings = get_settings()
    api = api_for("biz")
    rec, _ = Catalog(settings).register("biz", "CA1", "http://127.0.0.1:1/biz/a.wav", None)
    key = f"biz/CA1-{rec.id}.wav"
    client.put_object(Bucket=settings.s3_bucket, Key=key, Body=AUDIO, ContentType="audio/wav")
    Catalog(settings).mark_ready(rec.id, size_bytes=L, content_type="audio/wav",
                                 sha256=hashlib.sha256(AUDIO).hexdigest(), file_path=key, attempts=1)

    redirect = api.stream("CA1", {"Range": "bytes=0-1"})
    assert redirect.status_code == 302
    assert redirect.headers["Cache-Control"] == "no-store"
    location = redirect.headers["Location"]
    assert location.startswith(f"{settings.s3_endpoint_url}/{settings.s3_bucket}/{key}?")
    assert "X-Amz-Signature=" in location
    whole = requests.get(location, timeout=10)
    assert (whole.status_code, whole.content, whole.headers["Content-Type"]) == (200, AUDIO, "audio/wav")
    part = requests.get(location, headers={"Range": "bytes=10-19"}, timeout=10)
    assert (part.status_code, part.content) == (206, AUDIO[10:20])
    download = api.client.get("/api/recordings/CA1/stream?download=1", headers=api.headers)
    assert requests.get(download.headers["Location"], timeout=10).headers["Content-Disposition"] == \
        'attachment; filename="CA1.wav"'
    # What needs no bytes is answered by the API itself, without a bucket round trip.
    head = api.stream("CA1", method="HEAD")
    assert (head.status_code, head.headers["Content-Length"]) == (200, str(L))
    assert api.stream("CA1", {"If-None-Match": head.headers["ETag"]}).status_code == 304


def test_readiness_checks_the_bucket(s3, monkeypatch):
    _, api_for = s3("proxy")
    api = api_for("biz")
    ready = api.client.get("/readyz")
    assert (ready.status_code, ready.get_json()["checks"]["media_store"]) == (200, {"ok": True})
    monkeypatch.setenv("RECPLAY_S3_BUCKET", "recplay-no-such-bucket")
    _, api_for = s3("proxy")
    missing = api_for("biz").client.get("/readyz")
    assert missing.status_code == 503
    assert missing.get_json()["checks"]["media_store"]["ok"] is False


def test_a_presigned_url_names_the_safe_type_whatever_the_object_was_stored_with(s3):
    # Given objects uploaded before the fixed media table, with the provider's header as their type
    client, api_for = s3("redirect")
    settings = get_settings()
    api = api_for("biz")
    page = b"<!DOCTYPE html><html><body><script>document.title = 'pwned'</script></body></html>"
    for call_sid, stored, body, served in (("CA1", "audio/mpeg, text/html", page, "application/octet-stream"),
                                           ("CA2", "text/html", page, "application/octet-stream"),
                                           ("CA3", "audio/mpeg", b"ID3" + bytes(64), "audio/mpeg")):
        rec, _ = Catalog(settings).register("biz", call_sid, "http://127.0.0.1:1/biz/a.mp3", None)
        key = f"biz/{call_sid}-{rec.id}.bin"
        client.put_object(Bucket=settings.s3_bucket, Key=key, Body=body, ContentType="text/html")
        Catalog(settings).mark_ready(rec.id, size_bytes=len(body), content_type=stored,
                                     sha256=hashlib.sha256(body).hexdigest(), file_path=key, attempts=1)
        # When a player follows the redirect
        redirect = api.stream(call_sid)
        assert redirect.status_code == 302
        assert redirect.headers["X-Content-Type-Options"] == "nosniff"
        got = requests.get(redirect.headers["Location"], timeout=10)
        # Then the bucket answers with the table's type, not the object's
        assert (got.status_code, got.content) == (200, body)
        assert got.headers["Content-Type"] == served, call_sid
