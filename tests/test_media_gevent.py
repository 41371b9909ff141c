"""Media links under gunicorn's gevent workers (deploy/gunicorn.conf.py), whose sendfile is a Python loop of 8 KiB
reads and sends, so api.media reads a range itself there: exactly the bytes asked for, below, at and above one
read's size, and no body for HEAD. Where sendfile is real, the server's file wrapper still carries the range."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import requests
from werkzeug.test import EnvironBuilder

from api import media
from api.media import READ_SIZE
from tasks.media.links import media_link
from tests.conftest import ROOT
from tests.servers import Gunicorn

DATA = random.Random(7).randbytes(2 * READ_SIZE + 12345)  # two whole reads and a part
L = len(DATA)
KEY = "biz1/CA1-1.mp3"


@pytest.fixture
def link(settings: Any) -> str:
    """A link to DATA, stored as the local store names a recording's file."""
    path = settings.media_dir / KEY
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA)
    return media_link(settings, KEY)


def test_ranges_through_gevent_workers_are_exactly_the_bytes_asked_for(link: str, tmp_path: Path) -> None:
    api = Gunicorn(tmp_path / "gunicorn.log", workers=1)
    try:
        assert "Using worker: gevent" in api.log.read_text()
        url = api.base + link
        # One connection throughout: a HEAD that sent a body would garble the answer after it.
        session = requests.Session()
        for headers in ({}, {"Range": "bytes=0-99"}):
            head = session.head(url, headers=headers, timeout=10)
            assert (head.status_code, head.headers["Content-Length"], head.content) == (200, str(L), b"")
        cases = [
            (0, 0),
            (100, 100 + 65535),  # a player's usual range
            (7, 7 + READ_SIZE - 1),  # one read's size: one read
            (7, 7 + READ_SIZE),  # a byte more: two reads
            (3, L - 1),  # past two whole reads, to the end
        ]
        for first, last in cases:
            r = session.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=10)
            assert (r.status_code, r.headers["Content-Range"]) == (206, f"bytes {first}-{last}/{L}"), (first, last)
            assert r.headers["Content-Length"] == str(last - first + 1)
            assert r.content == DATA[first:last + 1], (first, last)
        suffix = session.get(url, headers={"Range": "bytes=-10"}, timeout=10)
        assert (suffix.status_code, suffix.content) == (206, DATA[-10:])
        whole = session.get(url, timeout=10)
        assert (whole.status_code, whole.headers["Content-Length"], whole.content) == (200, str(L), DATA)
        beyond = session.get(url, headers={"Range": f"bytes={L}-"}, timeout=10)
        assert (beyond.status_code, beyond.headers["Content-Range"], beyond.content) == (416, f"bytes */{L}", b"")
        multi = session.get(url, headers={"Range": "bytes=0-9,-10"}, timeout=10)
        assert multi.status_code == 206 and multi.headers["Content-Length"] == str(len(multi.content))
        assert DATA[:10] in multi.content and DATA[-10:] in multi.content
    finally:
        api.stop()


class RecordingWrapper:
    """A server's ``wsgi.file_wrapper`` (PEP 3333) that keeps the file and the position it was handed at."""

    def __init__(self, filelike: BinaryIO, block_size: int = 8192) -> None:
        self.filelike, self.position = filelike, filelike.tell()

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("a server with sendfile sends the file itself")

    def close(self) -> None:
        self.filelike.close()


def call(app: Any, link: str, range_header: str) -> tuple[str, Iterable[bytes]]:
    """The status line and body ``app`` answers a GET of ``link`` with, on a server with a file wrapper."""
    path, _, query = link.partition("?")
    environ = EnvironBuilder(path=path, query_string=query, headers={"Range": range_header}).get_environ()
    environ["wsgi.file_wrapper"] = RecordingWrapper
    status: list[str] = []
    start_response: Callable[..., None] = lambda line, headers: status.append(line)  # noqa: E731
    body = app(environ, start_response)
    return status[0], body


def test_the_file_wrapper_only_where_sendfile_is_real_else_reads_of_at_most_read_size(
        app: Any, link: str, monkeypatch: pytest.MonkeyPatch) -> None:
    status, body = call(app, link, "bytes=10-19")
    assert status == "206 PARTIAL CONTENT"
    assert isinstance(body, RecordingWrapper) and body.position == 10
    body.close()

    monkeypatch.setattr(media, "sendfile_works", lambda: False)
    status, body = call(app, link, "bytes=10-19")
    assert (status, list(body)) == ("206 PARTIAL CONTENT", [DATA[10:20]])
    status, body = call(app, link, "bytes=1-")
    chunks = list(body)
    assert [len(chunk) for chunk in chunks] == [READ_SIZE, READ_SIZE, L - 1 - 2 * READ_SIZE]
    assert b"".join(chunks) == DATA[1:]


def test_gevent_patched_sockets_are_told_apart_without_importing_gevent() -> None:
    code = (
        "import sys\n"
        "from api.media import sendfile_works\n"
        "print(sendfile_works(), 'gevent' in sys.modules)\n"
        "import gevent.monkey\n"
        "print(sendfile_works())\n"
        "gevent.monkey.patch_all()\n"
        "print(sendfile_works())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.split() == ["True", "False", "True", "False"]
