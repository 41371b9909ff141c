"""HTTP range and conditional-request logic for streaming a stored recording (RFC 9110).

Pure functions: ``plan_response`` turns a request's method and headers into a ``Plan`` (status, headers,
byte ranges), and ``iter_body`` reads the planned bytes from an open file. Nothing here knows about Flask.

Choices where RFC 9110 leaves room:

- A Range header that is not ``bytes=`` followed by a syntactically valid range-set is ignored (200). One
  invalid range-spec (``5-1``, ``abc``) invalidates the whole header; unsatisfiable specs are only dropped,
  and 416 is sent only when none is satisfiable. A header with more than ``MAX_RANGES`` specs is ignored.
- Overlapping and adjacent ranges are coalesced; the parts keep the order in which the client asked.
- Positions are saturated at the representation length, so numbers of any size are clamped, never parsed
  past what they can mean.
- A zero-length representation has no satisfiable int-range (``0-``, ``0-5``: 416 ``bytes */0``). A suffix
  range with a non-zero length is satisfiable but selects nothing a Content-Range could name, so the Range
  header is ignored and the empty representation is sent as a 200 (RFC 9110 14.1.2, 14.2).
- If-Range with an entity-tag uses the strong comparison; with an HTTP-date it holds only for an exact match
  of Last-Modified, which is treated as a strong validator because a stored recording never changes in place.
  Anything else in If-Range (a weak tag, another date, garbage) means the full 200.
- If-None-Match uses the weak comparison and overrides Range. A syntactically invalid If-None-Match is
  treated as absent, so If-Modified-Since is then evaluated. Dates are compared at whole-second precision.
- Two-digit rfc850 years are read relative to the representation's Last-Modified year, not the clock.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

#: More range-specs than this in one header and the header is ignored (RFC 9110 14.2 lets a server
#: refuse sets that look like a denial-of-service attempt).
MAX_RANGES = 16

_OWS = " \t"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")
# What a player sends range after range: one closed range-spec of positions short enough to be exact ints.
_ONE_CLOSED_RANGE = re.compile(r"bytes=([0-9]{1,15})-([0-9]{1,15})")
_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')
_LIST_SEPARATOR = re.compile(r"[ \t]*(?:,|$)")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
# RFC 2046 5.1.1: 1 to 70 bchars, the last one not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_FIXDATE = re.compile(rf"(?:{'|'.join(_DAYS)}), ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT")
_LONG_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_RFC850_DATE = re.compile(rf"(?:{_LONG_DAYS}), ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME_DATE = re.compile(rf"(?:{'|'.join(_DAYS)}) {_MONTH} ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})")


class Readable(Protocol):
    """A seekable binary reader: an open file, or a store's reader of ranged requests."""

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Representation:
    """The stored media a request is answered from.

    Attributes:
        length: size in bytes, >= 0.
        etag: strong entity-tag, quoted, e.g. ``'"3f2a"'``.
        last_modified: timezone-aware; sent as an IMF-fixdate in UTC.
        content_type: media type sent with the body, e.g. ``"audio/mpeg"``.
    """

    length: int
    etag: str
    last_modified: datetime
    content_type: str

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError(f"length must be >= 0, not {self.length}")
        match = _ENTITY_TAG.fullmatch(self.etag)
        if match is None or match.group(1):
            raise ValueError(f"etag must be a quoted strong entity-tag, not {self.etag!r}")
        if self.last_modified.utcoffset() is None:
            raise ValueError("last_modified must be timezone-aware")
        if _FIELD_VALUE.fullmatch(self.content_type) is None:
            raise ValueError(f"content_type is not a valid header value: {self.content_type!r}")


@dataclass(frozen=True)
class Plan:
    """How to answer: everything but the body bytes themselves.

    Attributes:
        status: 200, 206, 304 or 416.
        headers: every header to send except Content-Disposition; Content-Length is that of the body a GET
            would send (absent on a 304).
        parts: inclusive (first, last) byte ranges of the body, in the order they are sent; ``[]`` when
            there is no body (304, 416, empty representation). A HEAD keeps the parts of its GET.
        boundary: the multipart/byteranges boundary, when the body is multipart.
        send_body: False for HEAD and 304.
    """

    status: int
    headers: list[tuple[str, str]]
    parts: list[tuple[int, int]]
    boundary: str | None
    send_body: bool


def plan_response(
    method: str,
    rep: Representation,
    *,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
    if_modified_since: str | None = None,
    boundary: str | None = None,
    reject_backwards: bool = False,
) -> Plan:
    """Decide the status, headers and byte ranges of the answer to a GET or HEAD of ``rep``.

    Header arguments are raw field values, None when the request did not carry the field. Preconditions
    are evaluated in the order of RFC 9110 13.2.2: If-None-Match, else If-Modified-Since, then If-Range.

    Args:
        method: "GET" or "HEAD" (case-sensitive, as methods are). HEAD ignores Range.
        boundary: the multipart boundary to use if one is needed; random when None.
        reject_backwards: a Range header of one range-spec whose last position is before its first (``5-1``)
            is unsatisfiable (416), as nginx has it, rather than ignored (200); RFC 9110 14.2 allows either.

    Raises:
        ValueError: for another method or a boundary that RFC 2046 does not allow.
    """
    if method not in ("GET", "HEAD"):
        raise ValueError(f"only GET and HEAD are planned here, not {method!r}")
    if boundary is not None and _BOUNDARY.fullmatch(boundary) is None:
        raise ValueError(f"not a valid multipart boundary: {boundary!r}")

    validators = [
        ("Accept-Ranges", "bytes"),
        ("ETag", rep.etag),
        ("Last-Modified", _format_http_date(rep.last_modified)),
    ]
    media_type = ("Content-Type", rep.content_type)
    if not _modified(rep, if_none_match, if_modified_since):
        return Plan(304, [*validators, media_type], [], None, send_body=False)

    whole = [(0, rep.length - 1)] if rep.length else []
    parts: list[tuple[int, int]] | None = None
    if method == "GET" and range_header is not None and _if_range_holds(rep, if_range):
        parts = _requested_parts(range_header, rep.length, reject_backwards)
    send_body = method == "GET"

    if parts is None:
        headers = [*validators, media_type, ("Content-Length", str(rep.length))]
        return Plan(200, headers, whole, None, send_body)
    if not parts:
        headers = [
            *validators,
            media_type,
            ("Content-Length", "0"),
            ("Content-Range", f"bytes */{rep.length}"),
        ]
        return Plan(416, headers, [], None, send_body)
    if len(parts) == 1:
        first, last = parts[0]
        headers = [
            *validators,
            media_type,
            ("Content-Length", str(last - first + 1)),
            ("Content-Range", f"bytes {first}-{last}/{rep.length}"),
        ]
        return Plan(206, headers, parts, None, send_body)

    boundary = boundary or secrets.token_hex(16)
    length = _multipart_length(parts, rep, boundary)
    headers = [
        *validators,
        ("Content-Type", f"multipart/byteranges; boundary={_quote_if_needed(boundary)}"),
        ("Content-Length", str(length)),
    ]
    return Plan(206, headers, parts, boundary, send_body)


def iter_body(plan: Plan, rep: Representation, fileobj: Readable, chunk_size: int = 65536) -> Iterator[bytes]:
    """Yield the body of ``plan``, reading ``rep``'s bytes from ``fileobj`` (seekable, binary).

    Yields nothing when the plan sends no body (HEAD, 304); otherwise exactly as many bytes as the plan's
    Content-Length, framed as multipart/byteranges when the plan has a boundary.

    Raises:
        ValueError: at once, when chunk_size is not positive.
        EOFError: while iterating, when the file ends before a planned byte.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    return _body_chunks(plan, rep, fileobj, chunk_size)


def _body_chunks(plan: Plan, rep: Representation, fileobj: Readable, chunk_size: int) -> Iterator[bytes]:
    if not plan.send_body:
        return
    if plan.boundary is None:
        for first, last in plan.parts:
            yield from _read_span(fileobj, first, last, chunk_size)
        return
    for first, last in plan.parts:
        yield _part_head(plan.boundary, rep, first, last)
        yield from _read_span(fileobj, first, last, chunk_size)
        yield b"\r\n"
    yield _closing_delimiter(plan.boundary)


def _read_span(fileobj: Readable, first: int, last: int, chunk_size: int) -> Iterator[bytes]:
    fileobj.seek(first)
    remaining = last - first + 1
    while remaining > 0:
        chunk = fileobj.read(min(chunk_size, remaining))
        if not chunk:
            raise EOFError(f"file ended at byte {last - remaining + 1}, before byte {last}")
        remaining -= len(chunk)
        yield chunk


def _part_head(boundary: str, rep: Representation, first: int, last: int) -> bytes:
    head = (
        f"--{boundary}\r\nContent-Type: {rep.content_type}\r\n"
        f"Content-Range: bytes {first}-{last}/{rep.length}\r\n\r\n"
    )
    return head.encode("ascii")


def _closing_delimiter(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def _multipart_length(parts: list[tuple[int, int]], rep: Representation, boundary: str) -> int:
    framing = sum(len(_part_head(boundary, rep, first, last)) + 2 for first, last in parts)
    data = sum(last - first + 1 for first, last in parts)
    return framing + data + len(_closing_delimiter(boundary))


def _quote_if_needed(boundary: str) -> str:
    # Some bchars (space, "(", ",", ":", "=", "?", ...) are not tchars; none needs escaping inside quotes.
    return boundary if _TOKEN.fullmatch(boundary) else f'"{boundary}"'


def _requested_parts(range_header: str, length: int, reject_backwards: bool = False,
                     ) -> list[tuple[int, int]] | None:
    """The parts to send as a 206, ``[]`` when the header is unsatisfiable, None to ignore it (200)."""
    simple = _ONE_CLOSED_RANGE.fullmatch(range_header)
    if simple is not None:  # the general path below decides the same, with more steps
        first, last = int(simple[1]), int(simple[2])
        if last < first:
            return [] if reject_backwards else None
        return [(first, min(last, length - 1))] if first < length else []
    unit, equals, range_set = range_header.strip(_OWS).partition("=")
    if not equals or _TOKEN.fullmatch(unit) is None or unit.lower() != "bytes":
        return None
    # 1#range-spec allows OWS around commas and empty elements, but none right after "=".
    if range_set[:1] in (" ", "\t"):
        return None
    specs = [element.strip(_OWS) for element in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs or len(specs) > MAX_RANGES:
        return None

    selected: list[tuple[int, int]] = []
    suffix_of_empty = False
    for spec in specs:
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first_digits, last_digits, suffix_digits = match.groups()
        if suffix_digits is not None:
            if not suffix_digits.strip("0"):
                continue  # a suffix of zero bytes selects nothing: unsatisfiable
            if length == 0:
                suffix_of_empty = True
            else:
                selected.append((length - _saturated(suffix_digits, length), length - 1))
            continue
        if last_digits and _digits_less(last_digits, first_digits):
            return [] if reject_backwards and len(specs) == 1 else None
        first = _saturated(first_digits, length)
        if first < length:
            last = _saturated(last_digits, length - 1) if last_digits else length - 1
            selected.append((first, last))
    if suffix_of_empty:
        return None
    return _coalesce(selected)


def _saturated(digits: str, ceiling: int) -> int:
    """The value of an ASCII digit string, or ``ceiling`` if it is larger (without parsing it whole)."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(ceiling)):
        return ceiling
    return min(int(significant or "0"), ceiling)


def _digits_less(a: str, b: str) -> bool:
    """Whether the number written ``a`` is less than the one written ``b``, for digit strings of any size."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping and adjacent ranges; each merged range takes the place of its first-asked member."""
    if len(ranges) < 2:
        return ranges  # nearly every request: nothing to merge
    order = sorted(range(len(ranges)), key=lambda index: ranges[index])
    merged: list[tuple[int, int, int]] = []  # first, last, position in the request
    for index in order:
        first, last = ranges[index]
        if merged and first <= merged[-1][1] + 1:
            kept_first, kept_last, kept_index = merged[-1]
            merged[-1] = (kept_first, max(kept_last, last), min(kept_index, index))
        else:
            merged.append((first, last, index))
    merged.sort(key=lambda item: item[2])
    return [(first, last) for first, last, _ in merged]


def _modified(rep: Representation, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """False when the client's copy is current and the answer is a 304 (RFC 9110 13.1.2, 13.1.3)."""
    tags = _parse_if_none_match(if_none_match) if if_none_match is not None else None
    if tags == "*":
        return False
    if isinstance(tags, list):
        # Weak comparison: W/"x" matches "x".
        return all(opaque != rep.etag for _, opaque in tags)
    if if_modified_since is not None:
        since = _parse_http_date(if_modified_since.strip(_OWS), rep.last_modified.year)
        if since is not None:
            return _whole_seconds(rep.last_modified) > since
    return True


def _if_range_holds(rep: Representation, if_range: str | None) -> bool:
    """Whether the Range header is to be honoured (RFC 9110 13.1.5)."""
    if if_range is None:
        return True
    value = if_range.strip(_OWS)
    tag = _ENTITY_TAG.fullmatch(value)
    if tag is not None:
        weak, opaque = tag.groups()
        return not weak and opaque == rep.etag
    date = _parse_http_date(value, rep.last_modified.year)
    return date is not None and date == _whole_seconds(rep.last_modified)


def _parse_if_none_match(value: str) -> str | list[tuple[bool, str]] | None:
    """``"*"``, or the (weak, opaque-tag) pairs listed, or None when the value is not valid."""
    value = value.strip(_OWS)
    if value == "*":
        return "*"
    tags: list[tuple[bool, str]] = []
    position = 0
    while True:
        while position < len(value) and value[position] in " \t,":
            position += 1
        if position == len(value):
            break
        tag = _ENTITY_TAG.match(value, position)
        if tag is None:
            return None
        tags.append((bool(tag.group(1)), tag.group(2)))
        separator = _LIST_SEPARATOR.match(value, tag.end())
        if separator is None:
            return None
        position = separator.end()
    return tags or None


def _parse_http_date(value: str, reference_year: int) -> datetime | None:
    """An HTTP-date in any of its three forms (RFC 9110 5.6.7), or None if ``value`` is not one."""
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _RFC850_DATE.fullmatch(value):
        day, month, short_year, hour, minute, second = match.groups()
        year = str(_full_year(int(short_year), reference_year))
    elif match := _ASCTIME_DATE.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    try:
        return datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:  # 31 Feb, 25:00, a leap second...
        return None


def _full_year(short_year: int, reference_year: int) -> int:
    """The year within fifty of ``reference_year`` that ends in ``short_year`` (RFC 9110 5.6.7)."""
    year = reference_year - reference_year % 100 + short_year
    if year > reference_year + 50:
        return year - 100
    if year <= reference_year - 50:
        return year + 100
    return year


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


@lru_cache(maxsize=1024)
def _format_http_date(moment: datetime) -> str:
    """IMF-fixdate, independent of the locale; kept, as a recording's Last-Modified is sent with every range."""
    utc = moment.astimezone(UTC)
    return (
        f"{_DAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year:04d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )
