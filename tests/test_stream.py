"""Every Range and conditional case of SPEC, through the real stream endpoint."""

from __future__ import annotations

import re

import pytest

from tests.media import make_ready

DATA = bytes(range(256)) * 40  # 10240 bytes
L = len(DATA)


@pytest.fixture
def api(api_for, data_dir):
    make_ready("biz1", "CA1", DATA)
    return api_for("biz1")


def get(api, **headers):
    return api.stream("CA1", headers=headers)


def etag_of(api):
    return get(api).headers["ETag"]


def assert_representation_headers(response):
    assert response.headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["ETag"])
    assert response.headers["Last-Modified"].endswith(" GMT")
    assert response.headers["Content-Type"].startswith(("audio/mpeg", "multipart/byteranges"))


def test_whole_file_is_200_with_length_and_validators(api):
    r = get(api)
    assert r.status_code == 200
    assert r.data == DATA
    assert r.headers["Content-Length"] == str(L)
    assert r.headers["Content-Type"] == "audio/mpeg"
    assert_representation_headers(r)


def test_first_two_bytes_are_206_with_content_range(api):
    r = get(api, Range="bytes=0-1")
    assert r.status_code == 206
    assert r.data == DATA[:2]
    assert r.headers["Content-Range"] == f"bytes 0-1/{L}"
    assert r.headers["Content-Length"] == "2"
    assert_representation_headers(r)


def test_open_range_from_zero_is_206_of_everything(api):
    r = get(api, Range="bytes=0-")
    assert r.status_code == 206
    assert r.data == DATA
    assert r.headers["Content-Range"] == f"bytes 0-{L - 1}/{L}"


def test_open_range_from_the_middle_is_206_of_the_rest(api):
    r = get(api, Range="bytes=7000-")
    assert r.status_code == 206
    assert r.data == DATA[7000:]
    assert r.headers["Content-Range"] == f"bytes 7000-{L - 1}/{L}"


def test_suffix_range_is_the_last_n_bytes(api):
    r = get(api, Range="bytes=-100")
    assert r.status_code == 206
    assert r.data == DATA[-100:]
    assert r.headers["Content-Range"] == f"bytes {L - 100}-{L - 1}/{L}"


def test_suffix_longer_than_the_file_is_the_whole_file_as_206(api):
    r = get(api, Range=f"bytes=-{L + 5000}")
    assert r.status_code == 206
    assert r.data == DATA
    assert r.headers["Content-Range"] == f"bytes 0-{L - 1}/{L}"


def test_end_past_the_file_is_clamped(api):
    r = get(api, Range=f"bytes=10000-{L * 3}")
    assert r.status_code == 206
    assert r.data == DATA[10000:]
    assert r.headers["Content-Range"] == f"bytes 10000-{L - 1}/{L}"


@pytest.mark.parametrize("spec", [f"bytes={L}-", f"bytes={L + 10}-{L + 20}"])
def test_start_at_or_past_the_end_is_416_with_the_length(api, spec):
    r = get(api, Range=spec)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{L}"
    assert r.data == b""
    assert_representation_headers(r)


def test_several_ranges_are_a_correct_multipart_206(api):
    r = get(api, Range="bytes=0-9, 100-109, -10")
    assert r.status_code == 206
    ctype = r.headers["Content-Type"]
    boundary = re.fullmatch(r'multipart/byteranges; boundary="?([^"]+)"?', ctype).group(1)
    assert r.headers["Content-Length"] == str(len(r.data))
    parts = r.data.split(b"--" + boundary.encode())
    assert parts[-1].strip() == b"--"
    bodies = []
    for part in parts[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Type: audio/mpeg" in head
        first, last = map(int, re.search(rb"Content-Range: bytes (\d+)-(\d+)/" + str(L).encode(), head).groups())
        assert body[:-2] == DATA[first:last + 1]
        bodies.append((first, last))
    assert bodies == [(0, 9), (100, 109), (L - 10, L - 1)]


def test_several_ranges_with_one_unsatisfiable_are_never_416(api):
    r = get(api, Range=f"bytes=0-1, {L + 5}-{L + 9}")
    assert r.status_code == 206
    assert r.data == DATA[:2]


def test_if_range_with_the_current_etag_honours_the_range(api):
    r = get(api, Range="bytes=0-1", **{"If-Range": etag_of(api)})
    assert r.status_code == 206
    assert r.data == DATA[:2]


def test_if_range_with_a_stale_etag_sends_the_whole_file(api):
    r = get(api, Range="bytes=0-1", **{"If-Range": '"0123456789abcdef0123456789abcdef"'})
    assert r.status_code == 200
    assert r.data == DATA


def test_if_range_with_a_weak_validator_sends_the_whole_file(api):
    r = get(api, Range="bytes=0-1", **{"If-Range": "W/" + etag_of(api)})
    assert r.status_code == 200
    assert r.data == DATA


def test_if_none_match_with_the_etag_is_304_with_validators(api):
    r = get(api, **{"If-None-Match": etag_of(api)})
    assert r.status_code == 304
    assert r.data == b""
    assert_representation_headers(r)
    assert r.headers["Content-Type"] == "audio/mpeg"


def test_if_none_match_wins_over_range(api):
    r = get(api, Range="bytes=0-1", **{"If-None-Match": etag_of(api)})
    assert r.status_code == 304


def test_head_has_the_headers_of_get_and_no_body(api):
    r = api.stream("CA1", method="HEAD")
    assert r.status_code == 200
    assert r.data == b""
    assert r.headers["Content-Length"] == str(L)
    assert_representation_headers(r)


def test_head_ignores_range(api):
    r = api.stream("CA1", method="HEAD", headers={"Range": "bytes=0-1"})
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(L)
    assert "Content-Range" not in r.headers
    assert r.data == b""


def test_an_unknown_range_unit_is_ignored(api):
    r = get(api, Range="items=0-1")
    assert r.status_code == 200
    assert r.data == DATA


def test_download_adds_an_attachment_disposition(api):
    r = api.client.get("/api/recordings/CA1/stream?download=1", headers=api.headers)
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="CA1.mp3"'


def test_stream_url_from_the_status_plays_without_the_business_token(api):
    url = api.status("CA1").get_json()["stream_url"]
    r = api.client.get(url, headers={"Range": "bytes=5-9"})
    assert r.status_code == 206
    assert r.data == DATA[5:10]
