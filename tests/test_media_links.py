"""Signed media links answered by the API itself (no nginx in front): every Range case of SPEC, the refusals, and
no catalog read. tests/test_nginx.py checks nginx answers the same links the same way."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import event

from tasks.access import mint_stream_token
from tasks.catalog.queries import get_engine
from tasks.errors import ConfigError
from tasks.media.links import MEDIA_TYPES, media_link, parse_key, signature
from tasks.media.types import FORMATS
from tasks.recordings import Recordings
from tasks.settings import get_settings, load_settings
from tasks.slots.client import get_redis
from tests.conftest import ROOT
from tests.media import make_ready

DATA = bytes(range(256)) * 40  # 10240 bytes
L = len(DATA)
SECURITY = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


@pytest.fixture
def ready(api_for, data_dir):
    rec = make_ready("biz1", "CA1", DATA)
    api = api_for("biz1")
    link = api.status("CA1").get_json()["stream_url"]
    return api, link, rec


class Statements:
    """Counts the SQL statements the catalog's engine runs."""

    def __init__(self, engine):
        self.engine, self.count = engine, 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args):
        self.count += 1

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_a_ready_recordings_stream_url_is_a_signed_link_to_its_file(ready, settings):
    _, link, rec = ready
    path, _, query = link.partition("?")
    assert path == f"/media/{rec.file_path}" == "/media/biz1/CA1-1.mp3"
    expires, sig = re.fullmatch(r"expires=([0-9]+)&sig=([A-Za-z0-9_-]{22})", query).groups()
    assert abs(int(expires) - time.time() - settings.stream_token_seconds) <= 2
    assert sig == signature(settings.media_link_secret_value(), path, int(expires))


def test_every_range_case_of_spec_through_a_link_and_no_catalog_read(ready, settings):
    api, link, rec = ready
    statements = Statements(get_engine(settings))
    try:
        whole = api.client.get(link)
        etag, last_modified = whole.headers["ETag"], whole.headers["Last-Modified"]
        stat = (settings.media_dir / rec.file_path).stat()
        assert etag == f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'  # nginx's ETag of the same file
        cases = [
            ({}, 200, None, DATA),
            ({"Range": "bytes=0-1"}, 206, f"bytes 0-1/{L}", DATA[:2]),
            ({"Range": "bytes=0-"}, 206, f"bytes 0-{L - 1}/{L}", DATA),
            ({"Range": "bytes=7000-"}, 206, f"bytes 7000-{L - 1}/{L}", DATA[7000:]),
            ({"Range": "bytes=-100"}, 206, f"bytes {L - 100}-{L - 1}/{L}", DATA[-100:]),
            ({"Range": f"bytes=-{L + 5000}"}, 206, f"bytes 0-{L - 1}/{L}", DATA),
            ({"Range": f"bytes=10000-{L * 3}"}, 206, f"bytes 10000-{L - 1}/{L}", DATA[10000:]),
            ({"Range": f"bytes={L}-"}, 416, f"bytes */{L}", b""),
            ({"Range": f"bytes=0-1, {L + 5}-{L + 9}"}, 206, f"bytes 0-1/{L}", DATA[:2]),
            ({"Range": "bytes=0-1", "If-Range": etag}, 206, f"bytes 0-1/{L}", DATA[:2]),
            ({"Range": "bytes=0-1", "If-Range": '"0-0"'}, 200, None, DATA),
            ({"Range": "bytes=0-1", "If-Range": "W/" + etag}, 200, None, DATA),
            ({"Range": "bytes=0-1", "If-Range": last_modified}, 206, f"bytes 0-1/{L}", DATA[:2]),
            ({"If-None-Match": etag}, 304, None, b""),
            ({"If-None-Match": etag, "Range": "bytes=0-1"}, 304, None, b""),
            ({"Range": "items=0-1"}, 200, None, DATA),
            ({"Range": "bytes=5-1"}, 416, f"bytes */{L}", b""),  # as nginx: one backwards range-spec
            ({"Range": "bytes=0-1,5-1"}, 200, None, DATA),  # an invalid spec among several: ignored
        ]
        for headers, status, content_range, body in cases:
            r = api.client.get(link, headers=headers)
            assert (r.status_code, r.headers.get("Content-Range"), r.data) == (status, content_range, body), headers
            assert r.headers["Accept-Ranges"] == "bytes"
            assert (r.headers["ETag"], r.headers["Last-Modified"]) == (etag, last_modified)
            assert r.headers["Content-Type"] == "audio/mpeg"
            assert r.headers["Cache-Control"] == "private, max-age=3600"
            assert {name: r.headers[name] for name in SECURITY} == SECURITY
        multi = api.client.get(link, headers={"Range": "bytes=0-9, 100-109, -10"})
        assert multi.status_code == 206
        assert multi.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
        assert multi.data.count(b"Content-Range: bytes ") == 3
        head = api.client.head(link, headers={"Range": "bytes=0-1"})
        assert (head.status_code, head.data, head.headers["Content-Length"]) == (200, b"", str(L))
        download = api.client.get(link + "&download=1")
        assert download.headers["Content-Disposition"] == 'attachment; filename="CA1.mp3"'
        assert statements.count == 0
    finally:
        statements.close()


def test_a_link_in_another_query_form_is_answered_alike_by_the_view(ready):
    """Links as handed out are answered without Flask (api.media.FastLinks); any other form of the same link
    goes through the Flask view, built on the same function."""
    api, link, _ = ready
    path, _, query = link.partition("?")
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))
    reordered = f"{path}?sig={sig}&expires={expires}"
    for headers in ({}, {"Range": "bytes=0-1"}, {"Range": "bytes=0-1,5-1"}, {"Range": f"bytes={L}-"}):
        usual, other = api.client.get(link, headers=headers), api.client.get(reordered, headers=headers)
        assert (other.status_code, other.data) == (usual.status_code, usual.data), headers
        assert dict(other.headers) == dict(usual.headers), headers
    head = api.client.head(reordered + "&download=1")
    assert dict(head.headers) == dict(api.client.head(link + "&download=1").headers)


def test_the_old_stream_url_with_a_stream_token_keeps_working(ready):
    api, _, _ = ready
    token = mint_stream_token(get_settings(), "biz1", "CA1")
    r = api.client.get(f"/api/recordings/CA1/stream?token={token}", headers={"Range": "bytes=5-9"})
    assert (r.status_code, r.data) == (206, DATA[5:10])
    assert {name: r.headers[name] for name in SECURITY} == SECURITY


def test_forged_expired_and_foreign_links_are_403_and_a_deleted_recordings_link_404s(ready, settings):
    api, link, rec = ready
    other = make_ready("biz2", "CA9", DATA)
    path, _, query = link.partition("?")
    expires = query.split("&")[0].split("=")[1]
    stale = media_link(settings, rec.file_path, now=time.time() - settings.stream_token_seconds - 1)
    refused = {
        path: "forbidden",
        f"{path}?expires={expires}": "forbidden",
        f"{path}?expires={int(expires) + 1}&sig={query.split('sig=')[1]}": "forbidden",
        f"{path}?expires={expires}&sig=AAAAAAAAAAAAAAAAAAAAAA": "forbidden",
        f"{path}?expires=-1&sig={query.split('sig=')[1]}": "forbidden",
        f"/media/{other.file_path}?{query}": "forbidden",  # this link's signature on another business's file
        stale: "link_expired",
    }
    for url, code in refused.items():
        r = api.client.get(url)
        assert (r.status_code, r.get_json()["error"]["code"]) == (403, code), url
        assert {name: r.headers[name] for name in SECURITY} == SECURITY
    # A business token does not open a media path either: only the link's own signature does.
    assert api.client.get(path, headers=api.headers).status_code == 403
    for bad in ("/media/biz1/..%2Fbiz2%2FCA9-2.mp3", "/media/biz1/CA1.mp3", "/media/biz1/CA1-1.mp3/x"):
        assert api.client.get(f"{bad}?{query}").status_code in (403, 404), bad

    Recordings(get_redis(), settings, "biz1").delete(rec)
    gone = api.client.get(link, headers={"Range": "bytes=0-1"})
    assert (gone.status_code, gone.get_json()["error"]["code"]) == (404, "not_found")


def test_links_name_only_what_the_local_store_writes():
    assert parse_key("biz/CA-1-23.wav").call_sid == "CA-1"
    assert parse_key("biz/CA-1-23.wav").recording_id == 23
    for bad in ("biz/CA1.wav", "../x/CA1-1.wav", "biz/CA1-1.WAV", "biz/sub/CA1-1.wav", "biz/CA1-1.wav/"):
        assert parse_key(bad) is None, bad
    with pytest.raises(ValueError):
        media_link(load_settings(), "biz/../../etc/passwd")


def test_every_stored_extension_has_one_type_and_nginx_declares_the_same_table():
    assert {media.extension: media.content_type for media in FORMATS.values()} == MEDIA_TYPES
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    tables = [{ext: kind for kind, ext in (line.strip().rstrip(";").split() for line in block.strip().splitlines())}
              for block in re.findall(r"types \{([^}]*)\}", conf) if block.strip()]
    # The media location and its 416 answer each declare it; the JSON answers declare none.
    assert tables == [MEDIA_TYPES, MEDIA_TYPES]


def test_the_link_secret_is_checked_and_otherwise_derived_from_the_signing_key(monkeypatch):
    monkeypatch.setenv("RECPLAY_MEDIA_LINK_SECRET", "short")
    with pytest.raises(ConfigError, match="RECPLAY_MEDIA_LINK_SECRET"):
        load_settings()
    monkeypatch.setenv("RECPLAY_MEDIA_LINK_SECRET", 'a"b' * 20)
    with pytest.raises(ConfigError, match="RECPLAY_MEDIA_LINK_SECRET"):
        load_settings()
    monkeypatch.setenv("RECPLAY_MEDIA_LINK_SECRET", "x" * 32)
    assert load_settings().media_link_secret_value() == "x" * 32
    monkeypatch.delenv("RECPLAY_MEDIA_LINK_SECRET")
    derived = load_settings().media_link_secret_value()
    assert re.fullmatch(r"[0-9a-f]{64}", derived)
    monkeypatch.setenv("RECPLAY_SECRET_KEY", "another-secret-key-0123456789abcdef")
    assert load_settings().media_link_secret_value() != derived
