"""Range and conditional requests, checked against a real file of known bytes."""

from __future__ import annotations

import email.message
import email.parser
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.ranges import MAX_RANGES, Plan, Representation, iter_body, plan_response

DATA = bytes(range(256)) * 40
L = len(DATA)  # 10240
ETAG = '"3f2a9c"'
LAST_MODIFIED = datetime(2024, 5, 17, 9, 30, 12, tzinfo=UTC)
LAST_MODIFIED_TEXT = "Fri, 17 May 2024 09:30:12 GMT"
REP = Representation(length=L, etag=ETAG, last_modified=LAST_MODIFIED, content_type="audio/mpeg")
EMPTY = Representation(length=0, etag='"e"', last_modified=LAST_MODIFIED, content_type="audio/wav")
VALIDATORS = {"Accept-Ranges": "bytes", "ETag": ETAG, "Last-Modified": LAST_MODIFIED_TEXT}
HUGE = "9" * 5000  # longer than int() accepts from a string by default

# No deadline (machines vary) and no example database (a failure prints its example; runs stay independent).
stateless = settings(database=None, deadline=None)


@pytest.fixture(scope="module")
def media_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "recording.mp3"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def media(media_path: Path) -> Iterator[BinaryIO]:
    with media_path.open("rb") as fileobj:
        yield fileobj


def plan(
    range_header: str | None = None,
    *,
    method: str = "GET",
    rep: Representation = REP,
    if_range: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    boundary: str | None = None,
) -> Plan:
    return plan_response(
        method,
        rep,
        range_header=range_header,
        if_range=if_range,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        boundary=boundary,
    )


def headers_of(answer: Plan) -> dict[str, str]:
    names = [name.lower() for name, _ in answer.headers]
    assert len(names) == len(set(names)), f"duplicate headers: {answer.headers}"
    return dict(answer.headers)


def body_of(answer: Plan, fileobj: BinaryIO, rep: Representation = REP, chunk_size: int = 65536) -> bytes:
    return b"".join(iter_body(answer, rep, fileobj, chunk_size))


def parse_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges body, asserting its framing is exact."""
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter + b"\r\n")
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n")
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 6)]
    parts = []
    for chunk in inner.split(b"\r\n" + delimiter + b"\r\n"):
        head, blank, data = chunk.partition(b"\r\n\r\n")
        assert blank
        fields = dict(line.split(": ", 1) for line in head.decode("ascii").split("\r\n"))
        parts.append((fields, data))
    return parts


def expected_single(first: int, last: int) -> dict[str, str]:
    return {
        **VALIDATORS,
        "Content-Type": "audio/mpeg",
        "Content-Length": str(last - first + 1),
        "Content-Range": f"bytes {first}-{last}/{L}",
    }


WHOLE = {**VALIDATORS, "Content-Type": "audio/mpeg", "Content-Length": str(L)}
UNSATISFIABLE = {
    **VALIDATORS,
    "Content-Type": "audio/mpeg",
    "Content-Length": "0",
    "Content-Range": f"bytes */{L}",
}
NOT_MODIFIED = {**VALIDATORS, "Content-Type": "audio/mpeg"}


# --- whole file and single ranges -------------------------------------------------------------------------


def test_request_without_range_returns_whole_file_as_200(media: BinaryIO) -> None:
    answer = plan()
    assert (answer.status, answer.parts, answer.boundary, answer.send_body) == (200, [(0, L - 1)], None, True)
    assert headers_of(answer) == WHOLE
    assert body_of(answer, media) == DATA


def test_first_two_bytes_return_206_with_content_range(media: BinaryIO) -> None:
    answer = plan("bytes=0-1")
    assert (answer.status, answer.parts, answer.boundary) == (206, [(0, 1)], None)
    assert headers_of(answer) == expected_single(0, 1)
    assert headers_of(answer)["Content-Range"] == "bytes 0-1/10240"
    assert body_of(answer, media) == b"\x00\x01"


def test_open_range_from_zero_returns_whole_file_as_206(media: BinaryIO) -> None:
    answer = plan("bytes=0-")
    assert answer.status == 206
    assert headers_of(answer) == expected_single(0, L - 1)
    assert body_of(answer, media) == DATA


def test_open_range_from_the_middle_returns_the_rest_as_206(media: BinaryIO) -> None:
    answer = plan("bytes=1000-")
    assert answer.status == 206
    assert headers_of(answer) == expected_single(1000, L - 1)
    assert body_of(answer, media) == DATA[1000:]


def test_closed_range_in_the_middle_returns_those_bytes_as_206(media: BinaryIO) -> None:
    answer = plan("bytes=300-555")
    assert headers_of(answer) == expected_single(300, 555)
    assert body_of(answer, media) == DATA[300:556]


def test_last_byte_alone_returns_206(media: BinaryIO) -> None:
    answer = plan(f"bytes={L - 1}-{L - 1}")
    assert headers_of(answer) == expected_single(L - 1, L - 1)
    assert body_of(answer, media) == DATA[-1:]


def test_suffix_range_returns_the_last_n_bytes_as_206(media: BinaryIO) -> None:
    answer = plan("bytes=-500")
    assert answer.status == 206
    assert headers_of(answer) == expected_single(L - 500, L - 1)
    assert body_of(answer, media) == DATA[-500:]


@pytest.mark.parametrize("suffix", [L, L + 1, 10**12, HUGE])
def test_suffix_longer_than_file_returns_whole_file_as_206(media: BinaryIO, suffix: int | str) -> None:
    answer = plan(f"bytes=-{suffix}")
    assert answer.status == 206
    assert headers_of(answer) == expected_single(0, L - 1)
    assert body_of(answer, media) == DATA


@pytest.mark.parametrize("last", [L, L + 1, 10**30, HUGE])
def test_end_past_the_file_is_clamped_to_the_last_byte(media: BinaryIO, last: int | str) -> None:
    answer = plan(f"bytes=10000-{last}")
    assert answer.status == 206
    assert headers_of(answer) == expected_single(10000, L - 1)
    assert body_of(answer, media) == DATA[10000:]


def test_leading_zeros_in_positions_are_read_as_decimal(media: BinaryIO) -> None:
    answer = plan("bytes=" + "0" * 6000 + "8-010")
    assert headers_of(answer) == expected_single(8, 10)
    assert body_of(answer, media) == DATA[8:11]


@pytest.mark.parametrize(
    "range_header",
    [f"bytes={L}-", f"bytes={L}-{L + 5}", f"bytes={L + 1}-", "bytes=99999999999-", f"bytes={HUGE}-"],
)
def test_start_at_or_past_the_end_returns_416_with_unsatisfied_content_range(
    media: BinaryIO, range_header: str
) -> None:
    answer = plan(range_header)
    assert (answer.status, answer.parts, answer.boundary, answer.send_body) == (416, [], None, True)
    assert headers_of(answer) == UNSATISFIABLE
    assert body_of(answer, media) == b""


def test_suffix_of_zero_bytes_alone_returns_416() -> None:
    answer = plan("bytes=-0")
    assert answer.status == 416
    assert headers_of(answer) == UNSATISFIABLE


def test_reversed_huge_positions_make_the_header_invalid_and_return_200() -> None:
    first = "1" + "0" * 60
    last = "9" * 60  # one less than first, and both far past any int64
    assert plan(f"bytes={first}-{last}").status == 200
    assert plan(f"bytes={first}-{first}").status == 416


# --- several ranges ---------------------------------------------------------------------------------------


def test_two_disjoint_ranges_return_multipart_206_framed_exactly(media: BinaryIO) -> None:
    answer = plan("bytes=0-1,4-5", boundary="BOUNDARY")
    assert (answer.status, answer.parts, answer.boundary) == (206, [(0, 1), (4, 5)], "BOUNDARY")
    body = body_of(answer, media)
    assert body == (
        b"--BOUNDARY\r\nContent-Type: audio/mpeg\r\nContent-Range: bytes 0-1/10240\r\n\r\n\x00\x01\r\n"
        b"--BOUNDARY\r\nContent-Type: audio/mpeg\r\nContent-Range: bytes 4-5/10240\r\n\r\n\x04\x05\r\n"
        b"--BOUNDARY--\r\n"
    )
    assert headers_of(answer) == {
        **VALIDATORS,
        "Content-Type": "multipart/byteranges; boundary=BOUNDARY",
        "Content-Length": str(len(body)),
    }


def test_multipart_parts_carry_the_media_type_and_exact_bytes(media: BinaryIO) -> None:
    answer = plan("bytes=10-19,-5,2000-2999")
    assert answer.status == 206
    assert answer.boundary is not None
    parts = parse_multipart(body_of(answer, media), answer.boundary)
    assert parts == [
        ({"Content-Type": "audio/mpeg", "Content-Range": f"bytes 10-19/{L}"}, DATA[10:20]),
        ({"Content-Type": "audio/mpeg", "Content-Range": f"bytes {L - 5}-{L - 1}/{L}"}, DATA[-5:]),
        ({"Content-Type": "audio/mpeg", "Content-Range": f"bytes 2000-2999/{L}"}, DATA[2000:3000]),
    ]


def test_multipart_body_reads_back_with_the_standard_email_parser(media: BinaryIO) -> None:
    answer = plan("bytes=0-99,200-299")
    body = body_of(answer, media)
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {headers_of(answer)['Content-Type']}\r\n\r\n".encode() + body
    )
    assert message.is_multipart()
    payload = message.get_payload()
    assert isinstance(payload, list)
    parts = [part for part in payload if isinstance(part, email.message.Message)]
    assert [part["Content-Range"] for part in parts] == [f"bytes 0-99/{L}", f"bytes 200-299/{L}"]
    assert [part.get_payload(decode=True) for part in parts] == [DATA[0:100], DATA[200:300]]


def test_overlapping_ranges_are_coalesced_into_a_single_part_206(media: BinaryIO) -> None:
    answer = plan("bytes=0-99,50-149")
    assert (answer.status, answer.boundary) == (206, None)
    assert headers_of(answer) == expected_single(0, 149)
    assert body_of(answer, media) == DATA[:150]


def test_adjacent_ranges_are_coalesced_into_a_single_part_206(media: BinaryIO) -> None:
    answer = plan("bytes=0-9,10-19")
    assert headers_of(answer) == expected_single(0, 19)
    assert body_of(answer, media) == DATA[:20]


def test_repeated_whole_file_ranges_return_a_single_206() -> None:
    answer = plan("bytes=0-,0-,-99999,0-")
    assert headers_of(answer) == expected_single(0, L - 1)


def test_coalescing_keeps_separate_ranges_apart(media: BinaryIO) -> None:
    answer = plan("bytes=0-9,100-109,5-14")
    assert answer.parts == [(0, 14), (100, 109)]
    assert answer.boundary is not None
    assert [data for _, data in parse_multipart(body_of(answer, media), answer.boundary)] == [
        DATA[0:15],
        DATA[100:110],
    ]


def test_parts_follow_the_order_the_client_asked_for(media: BinaryIO) -> None:
    answer = plan("bytes=500-599,0-99,90-120")
    assert answer.parts == [(500, 599), (0, 120)]
    assert answer.boundary is not None
    parts = parse_multipart(body_of(answer, media), answer.boundary)
    assert [fields["Content-Range"] for fields, _ in parts] == [f"bytes 500-599/{L}", f"bytes 0-120/{L}"]
    assert [data for _, data in parts] == [DATA[500:600], DATA[0:121]]


def test_unsatisfiable_range_in_a_set_is_dropped_leaving_a_single_206(media: BinaryIO) -> None:
    answer = plan(f"bytes=0-1,{L}-{L + 1},-0")
    assert headers_of(answer) == expected_single(0, 1)
    assert body_of(answer, media) == DATA[:2]


def test_unsatisfiable_ranges_in_a_set_are_dropped_from_the_multipart(media: BinaryIO) -> None:
    answer = plan(f"bytes=0-1,{L + 100}-,5-6")
    assert answer.parts == [(0, 1), (5, 6)]
    assert answer.boundary is not None
    assert [data for _, data in parse_multipart(body_of(answer, media), answer.boundary)] == [
        DATA[0:2],
        DATA[5:7],
    ]


def test_set_of_only_unsatisfiable_ranges_returns_416() -> None:
    answer = plan(f"bytes={L}-,-0,{HUGE}-")
    assert answer.status == 416
    assert headers_of(answer) == UNSATISFIABLE


def test_up_to_sixteen_ranges_are_served_as_multipart(media: BinaryIO) -> None:
    ranges = [(i * 100, i * 100 + 9) for i in range(MAX_RANGES)]
    answer = plan("bytes=" + ",".join(f"{a}-{b}" for a, b in ranges))
    assert (answer.status, answer.parts) == (206, ranges)
    assert answer.boundary is not None
    parts = parse_multipart(body_of(answer, media), answer.boundary)
    assert [data for _, data in parts] == [DATA[a : b + 1] for a, b in ranges]


def test_more_than_sixteen_ranges_are_ignored_with_200(media: BinaryIO) -> None:
    answer = plan("bytes=" + ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(MAX_RANGES + 1)))
    assert answer.status == 200
    assert headers_of(answer) == WHOLE
    assert body_of(answer, media) == DATA


def test_generated_boundary_is_random_hex_named_in_the_content_type() -> None:
    first, second = plan("bytes=0-1,4-5"), plan("bytes=0-1,4-5")
    assert first.boundary is not None
    assert re.fullmatch(r"[0-9a-f]{32}", first.boundary)
    assert first.boundary != second.boundary
    assert headers_of(first)["Content-Type"] == f"multipart/byteranges; boundary={first.boundary}"


def test_boundary_with_characters_outside_a_token_is_quoted(media: BinaryIO) -> None:
    answer = plan("bytes=0-1,4-5", boundary="part: one=(a)")
    assert headers_of(answer)["Content-Type"] == 'multipart/byteranges; boundary="part: one=(a)"'
    assert [data for _, data in parse_multipart(body_of(answer, media), "part: one=(a)")] == [
        DATA[0:2],
        DATA[4:6],
    ]


@pytest.mark.parametrize("boundary", ["", "x" * 71, "trailing space ", 'quote"', "semi;colon", "caf\u00e9"])
def test_boundary_that_rfc_2046_forbids_is_refused(boundary: str) -> None:
    with pytest.raises(ValueError, match="boundary"):
        plan("bytes=0-1,4-5", boundary=boundary)


def test_boundary_is_only_set_for_multipart_answers() -> None:
    assert plan("bytes=0-1", boundary="BOUNDARY").boundary is None
    assert plan(None, boundary="BOUNDARY").boundary is None


# --- Range syntax -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("range_header", ["items=0-1", "pages=-1", "bit=0-", "lines=abc"])
def test_unknown_range_unit_is_ignored_with_200(media: BinaryIO, range_header: str) -> None:
    answer = plan(range_header)
    assert headers_of(answer) == WHOLE
    assert body_of(answer, media) == DATA


@pytest.mark.parametrize("range_header", ["Bytes=0-1", "BYTES=0-1", "bYtEs=0-1"])
def test_range_unit_is_matched_case_insensitively(range_header: str) -> None:
    assert headers_of(plan(range_header)) == expected_single(0, 1)


@pytest.mark.parametrize(
    "range_header",
    [
        "",
        " ",
        "bytes",
        "bytes=",
        "=0-1",
        "bytes = 0-1",
        "bytes =0-1",
        "bytes= 0-1",
        "bytes=5-1",
        "bytes=abc",
        "bytes=-",
        "bytes=--1",
        "bytes=-1-2",
        "bytes=1-2-3",
        "bytes=0 -1",
        "bytes=0- 1",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=1_000-2000",
        "bytes=\uff11-2",  # fullwidth digit one
        "bytes=\u00b2-3",  # superscript two
        "bytes=,",
        "bytes=0-1;4-5",
        "bytes=0-1 4-5",
        "bytes=0-1,5-1",
        "bytes=0-1,abc",
        "bytes=0-1,bytes=4-5",
        "bytes=0.5-1",
    ],
)
def test_syntactically_invalid_range_header_is_ignored_with_200(media: BinaryIO, range_header: str) -> None:
    answer = plan(range_header)
    assert headers_of(answer) == WHOLE
    assert body_of(answer, media) == DATA


@pytest.mark.parametrize(
    "range_header", ["bytes=0-1, 4-5", "bytes=0-1 ,4-5", "bytes=0-1 \t,\t 4-5", "bytes=0-1,4-5"]
)
def test_optional_whitespace_around_commas_is_accepted(range_header: str) -> None:
    assert plan(range_header).parts == [(0, 1), (4, 5)]


@pytest.mark.parametrize(
    "range_header", ["bytes=0-1,,4-5", "bytes=,0-1,4-5", "bytes=0-1,4-5,", "bytes=, ,0-1, ,4-5"]
)
def test_empty_list_elements_are_skipped(range_header: str) -> None:
    assert plan(range_header).parts == [(0, 1), (4, 5)]


def test_whitespace_around_the_whole_field_value_is_ignored() -> None:
    assert headers_of(plan(" \tbytes=0-1 ")) == expected_single(0, 1)


# --- If-Range ---------------------------------------------------------------------------------------------


def test_if_range_with_the_current_etag_honours_the_range(media: BinaryIO) -> None:
    answer = plan("bytes=0-1", if_range=ETAG)
    assert headers_of(answer) == expected_single(0, 1)
    assert body_of(answer, media) == DATA[:2]


@pytest.mark.parametrize("if_range", ['"other"', f"W/{ETAG}", '""', ETAG.upper(), f"{ETAG}, {ETAG}"])
def test_if_range_with_another_or_weak_etag_returns_whole_file_as_200(media: BinaryIO, if_range: str) -> None:
    answer = plan("bytes=0-1", if_range=if_range)
    assert headers_of(answer) == WHOLE
    assert body_of(answer, media) == DATA


@pytest.mark.parametrize(
    "if_range",
    [
        LAST_MODIFIED_TEXT,
        "Friday, 17-May-24 09:30:12 GMT",
        "Fri May 17 09:30:12 2024",
        f" {LAST_MODIFIED_TEXT} ",
    ],
)
def test_if_range_with_exactly_the_last_modified_date_honours_the_range(if_range: str) -> None:
    assert headers_of(plan("bytes=0-1", if_range=if_range)) == expected_single(0, 1)


@pytest.mark.parametrize(
    "if_range",
    [
        "Fri, 17 May 2024 09:30:11 GMT",
        "Fri, 17 May 2024 09:30:13 GMT",
        "Fri, 17 May 1924 09:30:12 GMT",
        "Fri, 17 May 2024 09:30:12 UTC",
        "Fri, 17 May 2024 09:30:12 +0000",
        "fri, 17 may 2024 09:30:12 gmt",
        "2024-05-17T09:30:12Z",
    ],
)
def test_if_range_with_any_other_date_returns_whole_file_as_200(if_range: str) -> None:
    assert headers_of(plan("bytes=0-1", if_range=if_range)) == WHOLE


@pytest.mark.parametrize("if_range", ["", "garbage", '"unterminated', "W/", "*"])
def test_if_range_with_garbage_returns_whole_file_as_200(if_range: str) -> None:
    assert headers_of(plan("bytes=0-1", if_range=if_range)) == WHOLE


def test_if_range_date_matches_a_last_modified_with_fractions_of_a_second() -> None:
    rep = Representation(L, ETAG, LAST_MODIFIED + timedelta(microseconds=999_999), "audio/mpeg")
    assert plan("bytes=0-1", rep=rep, if_range=LAST_MODIFIED_TEXT).status == 206


def test_failed_if_range_turns_an_unsatisfiable_range_into_200() -> None:
    assert headers_of(plan(f"bytes={L}-", if_range='"other"')) == WHOLE


def test_if_range_without_range_is_ignored() -> None:
    assert headers_of(plan(None, if_range='"other"')) == WHOLE
    assert headers_of(plan(None, if_range=ETAG)) == WHOLE


# --- If-None-Match and If-Modified-Since ------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    [
        ETAG,
        f"W/{ETAG}",
        "*",
        f'"a", "b", {ETAG}',
        f'"a",{ETAG}',
        f' {ETAG} , "b"',
        f'W/"a", W/{ETAG}',
        f",{ETAG},",
    ],
)
def test_if_none_match_with_the_current_etag_returns_304(media: BinaryIO, if_none_match: str) -> None:
    answer = plan(if_none_match=if_none_match)
    assert (answer.status, answer.parts, answer.boundary, answer.send_body) == (304, [], None, False)
    assert headers_of(answer) == NOT_MODIFIED
    assert body_of(answer, media) == b""


@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other"', '"a", "b"', '"3F2A9C"', '"3f2a9"'])
def test_if_none_match_with_other_etags_returns_200(if_none_match: str) -> None:
    assert headers_of(plan(if_none_match=if_none_match)) == WHOLE


@pytest.mark.parametrize("range_header", ["bytes=0-1", "bytes=0-1,4-5", f"bytes={L}-", "items=0-1"])
def test_if_none_match_takes_precedence_over_range(range_header: str) -> None:
    answer = plan(range_header, if_none_match=ETAG, if_range=ETAG)
    assert answer.status == 304
    assert headers_of(answer) == NOT_MODIFIED


def test_if_none_match_that_does_not_match_leaves_the_range_honoured() -> None:
    assert headers_of(plan("bytes=0-1", if_none_match='"other"')) == expected_single(0, 1)


def test_head_with_a_matching_if_none_match_returns_304() -> None:
    answer = plan(method="HEAD", if_none_match=ETAG)
    assert (answer.status, answer.send_body) == (304, False)
    assert headers_of(answer) == NOT_MODIFIED


def test_etag_containing_a_comma_is_matched_whole() -> None:
    rep = Representation(L, '"a,b"', LAST_MODIFIED, "audio/mpeg")
    assert plan(rep=rep, if_none_match='"a,b"').status == 304
    assert plan(rep=rep, if_none_match='"x", "a,b"').status == 304
    assert plan(rep=rep, if_none_match='"a", "b"').status == 200


@pytest.mark.parametrize(
    "if_none_match", ["", "garbage", ETAG[1:], f"*, {ETAG}", f"{ETAG} {ETAG}", "w/" + ETAG]
)
def test_invalid_if_none_match_is_ignored(if_none_match: str) -> None:
    assert plan(if_none_match=if_none_match).status == 200
    # Treated as absent, so If-Modified-Since gets its say.
    assert plan(if_none_match=if_none_match, if_modified_since=LAST_MODIFIED_TEXT).status == 304


@pytest.mark.parametrize(
    "if_modified_since",
    [
        LAST_MODIFIED_TEXT,
        "Fri, 17 May 2024 09:30:13 GMT",
        "Sat, 01 Jan 2050 00:00:00 GMT",
        "Friday, 17-May-24 09:30:12 GMT",
        "Fri May 17 09:30:12 2024",
        "Sat Jun  1 00:00:00 2024",
    ],
)
def test_if_modified_since_at_or_after_last_modified_returns_304(if_modified_since: str) -> None:
    answer = plan(if_modified_since=if_modified_since)
    assert (answer.status, answer.send_body) == (304, False)
    assert headers_of(answer) == NOT_MODIFIED


@pytest.mark.parametrize(
    "if_modified_since",
    ["Fri, 17 May 2024 09:30:11 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT"],
)
def test_if_modified_since_before_last_modified_returns_200(if_modified_since: str) -> None:
    assert headers_of(plan(if_modified_since=if_modified_since)) == WHOLE


@pytest.mark.parametrize(
    "if_modified_since",
    [
        "",
        "garbage",
        "2050-01-01T00:00:00Z",
        "sat, 01 jan 2050 00:00:00 gmt",
        "Sat, 01 Jan 2050 00:00:00 +0000",
        "Mon, 31 Feb 2050 00:00:00 GMT",
        "Sat, 01 Jan 2050 24:00:00 GMT",
        "Sat, 01 Jan 2050 00:00:00 GMT, Sat, 01 Jan 2050 00:00:00 GMT",
    ],
)
def test_invalid_if_modified_since_is_ignored(if_modified_since: str) -> None:
    assert plan(if_modified_since=if_modified_since).status == 200


def test_if_modified_since_is_ignored_when_if_none_match_is_present() -> None:
    assert plan(if_none_match='"other"', if_modified_since="Sat, 01 Jan 2050 00:00:00 GMT").status == 200


def test_if_modified_since_compares_whole_seconds() -> None:
    rep = Representation(L, ETAG, LAST_MODIFIED + timedelta(microseconds=500_000), "audio/mpeg")
    assert plan(rep=rep, if_modified_since=LAST_MODIFIED_TEXT).status == 304


def test_if_modified_since_that_holds_still_honours_the_range() -> None:
    answer = plan("bytes=0-1", if_modified_since="Thu, 16 May 2024 00:00:00 GMT")
    assert headers_of(answer) == expected_single(0, 1)


def test_two_digit_years_are_read_within_fifty_years_of_last_modified() -> None:
    # "74" is 2074 (fifty years on from 2024, not more); "75" is 1975.
    assert plan(if_modified_since="Thursday, 17-May-74 00:00:00 GMT").status == 304
    assert plan(if_modified_since="Friday, 17-May-75 00:00:00 GMT").status == 200


# --- HEAD and methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize("range_header", [None, "bytes=0-1", "bytes=0-1,4-5", f"bytes={L}-", "items=0-1"])
def test_head_has_the_headers_of_a_get_without_range_and_no_body(
    media: BinaryIO, range_header: str | None
) -> None:
    head = plan(range_header, method="HEAD", if_range=ETAG)
    get = plan(None)
    assert (head.status, head.headers, head.parts, head.boundary) == (
        get.status,
        get.headers,
        get.parts,
        None,
    )
    assert head.send_body is False
    assert body_of(head, media) == b""
    assert int(headers_of(head)["Content-Length"]) == len(body_of(get, media))


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get", "head"])
def test_methods_other_than_get_and_head_are_refused(method: str) -> None:
    with pytest.raises(ValueError, match="GET and HEAD"):
        plan(method=method)


# --- zero-length recordings -------------------------------------------------------------------------------


EMPTY_VALIDATORS = {"Accept-Ranges": "bytes", "ETag": '"e"', "Last-Modified": LAST_MODIFIED_TEXT}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_empty_file_without_range_returns_200_with_zero_length(media: BinaryIO, method: str) -> None:
    answer = plan(method=method, rep=EMPTY)
    assert (answer.status, answer.parts) == (200, [])
    assert headers_of(answer) == {**EMPTY_VALIDATORS, "Content-Type": "audio/wav", "Content-Length": "0"}
    assert body_of(answer, media, rep=EMPTY) == b""


@pytest.mark.parametrize("range_header", ["bytes=0-", "bytes=0-0", "bytes=0-10", "bytes=-0", "bytes=5-,-0"])
def test_empty_file_with_an_int_range_or_zero_suffix_returns_416(media: BinaryIO, range_header: str) -> None:
    answer = plan(range_header, rep=EMPTY)
    assert (answer.status, answer.parts) == (416, [])
    assert headers_of(answer) == {
        **EMPTY_VALIDATORS,
        "Content-Type": "audio/wav",
        "Content-Length": "0",
        "Content-Range": "bytes */0",
    }
    assert body_of(answer, media, rep=EMPTY) == b""


@pytest.mark.parametrize("range_header", ["bytes=-1", "bytes=-500", "bytes=0-0,-5", f"bytes=-{HUGE}"])
def test_empty_file_with_a_non_zero_suffix_returns_empty_200(media: BinaryIO, range_header: str) -> None:
    # RFC 9110 14.1.2 calls this satisfiable, but no Content-Range can name zero bytes: the Range is ignored.
    answer = plan(range_header, rep=EMPTY)
    assert (answer.status, answer.parts) == (200, [])
    assert headers_of(answer) == {**EMPTY_VALIDATORS, "Content-Type": "audio/wav", "Content-Length": "0"}
    assert body_of(answer, media, rep=EMPTY) == b""


def test_one_byte_file_serves_its_only_byte_to_every_form() -> None:
    rep = Representation(1, ETAG, LAST_MODIFIED, "audio/mpeg")
    for range_header in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-9", "bytes=0-99"]:
        answer = plan(range_header, rep=rep)
        assert (answer.status, answer.parts) == (206, [(0, 0)])
        assert headers_of(answer)["Content-Range"] == "bytes 0-0/1"
    assert plan("bytes=1-", rep=rep).status == 416


# --- headers and representation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "if_none_match", "status"),
    [
        (None, None, 200),
        ("bytes=0-1", None, 206),
        ("bytes=0-1,4-5", None, 206),
        (None, ETAG, 304),
        ("bytes=-0", None, 416),
    ],
)
def test_every_answer_carries_accept_ranges_etag_last_modified_and_a_content_type(
    range_header: str | None, if_none_match: str | None, status: int
) -> None:
    answer = plan(range_header, if_none_match=if_none_match)
    assert answer.status == status
    fields = headers_of(answer)
    assert {name: fields[name] for name in VALIDATORS} == VALIDATORS
    assert fields["Content-Type"] in ("audio/mpeg", f"multipart/byteranges; boundary={answer.boundary}")


def test_last_modified_is_sent_as_an_imf_fixdate_in_gmt() -> None:
    paris = timezone(timedelta(hours=2))
    rep = Representation(L, ETAG, datetime(2024, 5, 17, 11, 30, 12, 654321, tzinfo=paris), "audio/mpeg")
    assert headers_of(plan(rep=rep))["Last-Modified"] == LAST_MODIFIED_TEXT
    rep = Representation(L, ETAG, datetime(2023, 1, 1, 0, 0, 0, tzinfo=UTC), "audio/mpeg")
    assert headers_of(plan(rep=rep))["Last-Modified"] == "Sun, 01 Jan 2023 00:00:00 GMT"


@pytest.mark.parametrize(
    "fields",
    [
        {"length": -1},
        {"etag": "3f2a9c"},
        {"etag": 'W/"3f2a9c"'},
        {"etag": '"has space"'},
        {"last_modified": datetime(2024, 5, 17, 9, 30, 12)},
        {"content_type": ""},
        {"content_type": "audio/mpeg\r\nX-Injected: 1"},
        {"content_type": " audio/mpeg"},
        {"content_type": "audio/\u00e9"},
    ],
)
def test_representation_refuses_invalid_values(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "length": L,
        "etag": ETAG,
        "last_modified": LAST_MODIFIED,
        "content_type": "audio/mpeg",
        **fields,
    }
    with pytest.raises(ValueError):
        Representation(**values)  # type: ignore[arg-type]


# --- the body matches its Content-Length ------------------------------------------------------------------


CONTENT_LENGTH_CASES = [
    None,
    "bytes=0-1",
    "bytes=0-",
    "bytes=1-",
    "bytes=5000-",
    f"bytes={L - 1}-",
    "bytes=-1",
    "bytes=-500",
    f"bytes=-{L}",
    f"bytes=-{L + 1}",
    f"bytes=0-{L * 3}",
    f"bytes={L}-",
    "bytes=-0",
    "bytes=0-1,4-5",
    "bytes=0-1, 4-5",
    "bytes=0-0,2-2,4-4,6-6",
    "bytes=-10,0-9",
    "bytes=100-199,150-249,300-",
    "bytes=0-99,100-199",
    f"bytes=0-1,{L}-,-0",
    "bytes=9000-,100-200,-5000",
    "bytes=" + ",".join(f"{i * 600}-{i * 600 + 99}" for i in range(MAX_RANGES)),
    "bytes=" + ",".join(f"{i * 600}-{i * 600 + 99}" for i in range(MAX_RANGES + 1)),
    "bytes=5-1",
    "items=0-1",
    "bytes=abc",
    f"bytes=0-{HUGE}",
    f"bytes=-{HUGE}",
]


@pytest.mark.parametrize("range_header", CONTENT_LENGTH_CASES)
def test_content_length_equals_the_bytes_iter_body_yields(media: BinaryIO, range_header: str | None) -> None:
    answer = plan(range_header)
    assert int(headers_of(answer)["Content-Length"]) == len(b"".join(iter_body(answer, REP, media)))


@pytest.mark.parametrize("range_header", CONTENT_LENGTH_CASES)
def test_head_content_length_equals_the_bytes_a_plain_get_yields(
    media: BinaryIO, range_header: str | None
) -> None:
    head = plan(range_header, method="HEAD")
    assert body_of(head, media) == b""
    assert int(headers_of(head)["Content-Length"]) == len(body_of(plan(None), media)) == L


@pytest.mark.parametrize("range_header", CONTENT_LENGTH_CASES)
def test_body_is_the_same_for_any_chunk_size(media: BinaryIO, range_header: str | None) -> None:
    answer = plan(range_header, boundary="BOUNDARY")
    reference = body_of(answer, media)
    for chunk_size in (1, 7, 256, 4096):
        assert body_of(answer, media, chunk_size=chunk_size) == reference
    if answer.boundary is None:
        assert all(0 < len(chunk) <= 7 for chunk in iter_body(answer, REP, media, 7))


def test_body_of_a_file_shorter_than_its_representation_raises_eof(media: BinaryIO) -> None:
    longer = Representation(L + 10, ETAG, LAST_MODIFIED, "audio/mpeg")
    answer = plan(f"bytes={L - 5}-", rep=longer)
    with pytest.raises(EOFError):
        body_of(answer, media, rep=longer)


@pytest.mark.parametrize("chunk_size", [0, -1])
def test_non_positive_chunk_size_is_refused_at_once(media: BinaryIO, chunk_size: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        iter_body(plan(), REP, media, chunk_size)


# --- properties -------------------------------------------------------------------------------------------


@stateless
@given(first=st.integers(0, L - 1), data=st.data())
def test_any_valid_single_range_returns_exactly_those_bytes(
    media_path: Path, first: int, data: st.DataObject
) -> None:
    last = data.draw(st.none() | st.integers(first, L + 10_000))
    answer = plan(f"bytes={first}-{'' if last is None else last}")
    end = L - 1 if last is None else min(last, L - 1)
    assert answer.status == 206
    assert headers_of(answer) == expected_single(first, end)
    with media_path.open("rb") as media:
        assert body_of(answer, media) == DATA[first : end + 1]


@stateless
@given(suffix=st.integers(1, 3 * L))
def test_any_suffix_range_returns_the_last_bytes(media_path: Path, suffix: int) -> None:
    answer = plan(f"bytes=-{suffix}")
    assert headers_of(answer) == expected_single(max(0, L - suffix), L - 1)
    with media_path.open("rb") as media:
        assert body_of(answer, media) == DATA[-suffix:]


range_spec = st.one_of(
    st.tuples(st.integers(0, L + 50), st.integers(0, L + 50)).map(lambda pair: f"{min(pair)}-{max(pair)}"),
    st.integers(0, L + 50).map(lambda first: f"{first}-"),
    st.integers(0, L + 50).map(lambda suffix: f"-{suffix}"),
)


def requested_bytes(spec: str) -> set[int]:
    first, _, last = spec.partition("-")
    if not first:
        return set(range(max(0, L - int(last)), L)) if int(last) else set()
    return set(range(int(first), min(int(last), L - 1) + 1 if last else L))


@stateless
@given(
    specs=st.lists(range_spec, min_size=1, max_size=MAX_RANGES),
    separator=st.sampled_from([",", ", ", " ,\t"]),
)
def test_any_set_of_ranges_returns_exactly_the_bytes_asked_for(
    media_path: Path, specs: list[str], separator: str
) -> None:
    answer = plan("bytes=" + separator.join(specs))
    wanted = set().union(*(requested_bytes(spec) for spec in specs))
    if not wanted:
        assert (answer.status, answer.parts) == (416, [])
        return
    assert answer.status == 206
    covered = [position for first, last in answer.parts for position in range(first, last + 1)]
    assert sorted(covered) == sorted(wanted)  # every byte asked for, once
    in_order = sorted(answer.parts)
    assert all(left[1] + 1 < right[0] for left, right in itertools.pairwise(in_order))
    with media_path.open("rb") as media:
        body = body_of(answer, media)
    assert len(body) == int(headers_of(answer)["Content-Length"])
    if answer.boundary is None:
        [(first, last)] = answer.parts
        assert body == DATA[first : last + 1]
    else:
        parts = parse_multipart(body, answer.boundary)
        assert [fields["Content-Range"] for fields, _ in parts] == [
            f"bytes {a}-{b}/{L}" for a, b in answer.parts
        ]
        assert [data for _, data in parts] == [DATA[a : b + 1] for a, b in answer.parts]


@stateless
@given(range_header=st.text(max_size=60) | st.text(alphabet="bytes=-0123456789, \t", max_size=40))
def test_any_range_header_text_gives_a_coherent_answer(media_path: Path, range_header: str) -> None:
    answer = plan(range_header, boundary="BOUNDARY")
    assert answer.status in (200, 206, 416)
    with media_path.open("rb") as media:
        assert len(body_of(answer, media)) == int(headers_of(answer)["Content-Length"])


@settings(max_examples=400, deadline=None)
@given(first=st.integers(0, 10**15 - 1), last=st.integers(0, 10**15 - 1),
       length=st.one_of(st.integers(0, 4096), st.integers(0, 10**16)), reject_backwards=st.booleans(),
       zeros=st.integers(0, 3))
def test_the_one_closed_range_shortcut_decides_as_the_general_parser(first, last, length, reject_backwards, zeros):
    """``bytes=a-b`` is what players send; its shortcut must agree with the full parse of the same range-set
    (a trailing empty element sends it the long way; it means the same)."""
    from api.ranges import _ONE_CLOSED_RANGE, _requested_parts

    pad = "0" * zeros
    header = f"bytes={pad}{first}-{last}"
    assert (_ONE_CLOSED_RANGE.fullmatch(header) is not None) == (len(f"{pad}{first}") <= 15)
    assert _requested_parts(header, length, reject_backwards) == _requested_parts(header + ",", length,
                                                                                  reject_backwards)
