"""Hostile media in a real Chromium: a page a provider slipped in as a recording runs nothing on the API's origin,
and the player does all it does with a `play` token.

The hostile recordings are put in place as a download from before the fixed media table would have stored them:
a row whose content type is the provider's header (``audio/mpeg, text/html``, or ``audio/mpeg`` over an HTML
body) and a file holding the page. Its script would set the title and call a probe server on loopback; a page of
the probe's own, with the same script, proves the probe sees a script that runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tasks.access import PLAY, mint_token
from tasks.settings import get_settings
from tests.conftest import wait_for
from tests.media import make_ready
from tests.provider import Behaviour
from tests.test_player import BUSINESS, TEN_SECONDS, PlayerPage, browser, live_api  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


class Probe:
    """A loopback HTTP server that counts the requests a script makes to it, and serves one control page."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with probe.lock:
                    probe.hits[path] += 1
                body = probe.page("/control-ran") if path == "/control.html" else b""
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if body else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="probe", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def page(self, path: str) -> bytes:
        """An HTML page whose script, if it runs, renames the page and reaches ``path`` three ways."""
        target = self.url(path)
        return (f"<!DOCTYPE html><html><head><title>recording</title></head><body>"
                f"<img src=\"{target}-img\">"
                f"<script>document.title = 'pwned'; fetch('{target}', {{mode: 'no-cors'}});"
                f"navigator.sendBeacon('{target}-beacon', 'x');</script></body></html>").encode()

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(n for path, n in self.hits.items() if path.startswith(prefix))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def probe() -> Iterator[Probe]:
    found = Probe()
    yield found
    found.stop()


def _open_control(context: Any, probe: Probe, runs: int) -> None:
    page = context.new_page()
    page.goto(probe.url("/control.html"))
    wait_for(lambda: probe.count("/control-ran") == 3 * runs, 15, "the control page's script to reach the probe")
    assert page.title() == "pwned"
    page.close()


def test_an_html_page_stored_as_a_recording_runs_no_script_when_its_stream_url_is_opened(
        browser, live_api, probe, api_for):  # noqa: F811
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context()
    issued: list[str] = []
    context.on("request", lambda request: issued.append(request.url))
    # The probe sees a script that runs: the control page's script reaches it three ways.
    _open_control(context, probe, runs=1)

    # Given two recordings stored as a download from before the media table would have stored them
    evil = probe.page("/evil")
    make_ready(BUSINESS, "CAmixed", evil, content_type="audio/mpeg, text/html")
    make_ready(BUSINESS, "CAlabelled", evil, content_type="audio/mpeg")
    api = api_for(BUSINESS)
    # When someone opens their stream_urls in the browser, on the API's own origin
    mixed = context.new_page()
    with mixed.expect_download(timeout=15_000) as saved, \
            pytest.raises(PlaywrightError, match=r"Download is starting|ERR_ABORTED"):
        mixed.goto(live_api + api.status("CAmixed").get_json()["stream_url"])
    # Then the one stored as `audio/mpeg, text/html` is saved as bytes, never rendered
    assert saved.value.suggested_filename
    assert mixed.title() != "pwned"
    labelled = context.new_page()
    response = labelled.goto(live_api + api.status("CAlabelled").get_json()["stream_url"], wait_until="load")
    # and the one labelled audio/mpeg is a media document that runs no script
    assert response is not None and response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert labelled.title() != "pwned"

    # A control page opened afterwards: every request the browser issued before it is in ``issued`` by now.
    _open_control(context, probe, runs=2)
    assert [url for url in issued if "/evil" in url] == []
    assert probe.count("/evil") == 0
    context.close()


def test_the_player_plays_with_a_play_token(browser, live_api, api_for, provider, procs):  # noqa: F811
    procs.worker(concurrency=2)
    url = provider.add(f"/{BUSINESS}/CAplay.wav", Behaviour(body=TEN_SECONDS))
    assert api_for(BUSINESS).register("CAplay", url, duration_seconds=10.0).status_code == 201
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    player = PlayerPage(context.new_page(), live_api)

    player.open(mint_token(get_settings(), BUSINESS, 600, scope=PLAY))
    player.play("CAplay")
    player.expect_state("CAplay", "playing")
    player.wait_advancing(0.5)

    assert provider.downloads[f"/{BUSINESS}/CAplay.wav"] == 1
    refused = [r for r in player.responses if r.status in (401, 403)]
    assert refused == []
    context.close()
    assert player.errors == []
