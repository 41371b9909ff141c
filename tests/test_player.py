"""The web player in a real headless Chromium, against the real API, a real worker and the provider stand-in.

Each test serves the Flask app on a loopback port (a werkzeug server thread, so Chromium's Range requests
hit the real stream endpoint), starts a ``celery -A tasks worker`` subprocess, registers recordings whose
media the provider stand-in serves as a playable 10 s WAV, and drives the page as a person would.

Chromium is Debian's (``apt-get install chromium``); Playwright drives it through ``executable_path`` and
never downloads a browser. Locally the module is skipped when either is missing; in CI (CI=true) that is
an error.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Api, assert_quiescent, token_for, wait_for
from tests.provider import Behaviour, Provider, make_wav, wav_of

CHROMIUM = os.environ.get("RECPLAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
#: The README's picture, rewritten only when asked (RECPLAY_UPDATE_SCREENSHOT=1): its dates change on every run.
README_SCREENSHOT = ROOT / "docs" / "player.png"
BUSINESS = "acme"
#: A 10 s, 8 kHz mono 16-bit tone: Chromium plays WAV, and its length makes "seek to 7 s" meaningful.
TEN_SECONDS = make_wav(10.0, rate=8000, freq=440.0)
#: Deadlines for conditions (milliseconds for Playwright). Generous: CI machines are small.
PREPARE_MS = 30_000
PLAY_MS = 15_000


def _playwright_or_skip() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise AssertionError(f"Chromium is required in CI; {CHROMIUM} is missing")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return sync_api


pytestmark = pytest.mark.slow


# ---- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = _playwright_or_skip()
    with sync_api.sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield found
        found.close()


@pytest.fixture
def live_api(app: Any) -> Iterator[str]:
    """The app served over HTTP on a free loopback port, in a thread of this process."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-api", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def worker(procs: Any) -> Any:
    return procs.worker(concurrency=4)


class PlayerPage:
    """One browser tab on the player, with what it sent and what went wrong in it."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list[Any] = []
        self.responses: list[Any] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("response", lambda response: self.responses.append(response))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))

    def open(self, token: str | None = None) -> None:
        self.page.goto(f"{self.base_url}/#token={token or token_for(BUSINESS)}")

    def row(self, call_sid: str) -> Any:
        return self.page.locator(f'[data-call-sid="{call_sid}"]')

    def play(self, call_sid: str) -> None:
        self.row(call_sid).locator('[data-action="play"]').click()

    def expect_state(self, call_sid: str, state: str, timeout: float = PREPARE_MS) -> None:
        from playwright.sync_api import expect

        expect(self.row(call_sid)).to_have_attribute("data-state", state, timeout=timeout)

    def audio(self, expression: str) -> Any:
        """Evaluate ``expression`` with ``audio`` bound to the player's audio element."""
        script = f"() => {{ const audio = document.querySelector('audio'); return {expression}; }}"
        return self.page.evaluate(script)

    def wait_audio(self, condition: str, timeout: float = PLAY_MS) -> None:
        self.page.wait_for_function(
            f"() => {{ const audio = document.querySelector('audio'); return {condition}; }}", timeout=timeout
        )

    def wait_advancing(self, past: float = 0.5) -> None:
        """Wait until the audio is playing and its clock has moved past ``past`` seconds."""
        self.wait_audio(f"!audio.paused && audio.currentTime > {past}")

    def fetch_posts(self, call_sid: str) -> int:
        path = f"/api/recordings/{call_sid}/fetch"
        return sum(1 for r in self.requests if r.method == "POST" and r.url.endswith(path))

    def states(self) -> dict[str, str]:
        return self.page.eval_on_selector_all(
            "[data-call-sid]",
            "rows => Object.fromEntries(rows.map(r => [r.dataset.callSid, r.dataset.state]))",
        )


@pytest.fixture
def player(browser: Any, live_api: str) -> Iterator[PlayerPage]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    found = PlayerPage(context.new_page(), live_api)
    yield found
    context.close()
    assert found.errors == []


@pytest.fixture
def add_recording(api_for: Callable[[str], Api], provider: Provider) -> Callable[..., str]:
    """Register a recording whose media the provider serves; returns the provider path."""
    api = api_for(BUSINESS)

    def add(call_sid: str, behaviour: Behaviour | None = None, duration: float | None = 10.0) -> str:
        path = f"/{BUSINESS}/{call_sid}.wav"
        url = provider.add(path, behaviour or Behaviour(body=TEN_SECONDS))
        extra = {"duration_seconds": duration} if duration is not None else {}
        response = api.register(call_sid, url, **extra)
        assert response.status_code == 201, response.get_json()
        return path

    return add


# ---- listing -----------------------------------------------------------------------------------------------


def test_listing_shows_recordings_newest_first_and_downloads_nothing(player, add_recording, provider):
    for sid in ("CA01", "CA02", "CA03"):
        add_recording(sid)

    player.open()

    from playwright.sync_api import expect

    rows = player.page.locator("[data-call-sid]")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.callSid)") == ["CA03", "CA02", "CA01"]
    assert player.states() == {"CA01": "idle", "CA02": "idle", "CA03": "idle"}
    expect(player.row("CA02").locator(".rec-duration")).to_have_text("0:10")
    expect(player.row("CA02").locator(".pill")).to_have_text("Not fetched")
    assert provider.requests == {}
    assert provider.total_downloads() == 0
    assert [r for r in player.requests if "/fetch" in r.url or "/stream" in r.url or "/media/" in r.url] == []


def test_load_more_pages_with_next_cursor(player, add_recording):
    for i in range(55):
        add_recording(f"CA{i:02d}")

    player.open()

    from playwright.sync_api import expect

    rows = player.page.locator("[data-call-sid]")
    expect(rows).to_have_count(50)
    player.page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(55)
    expect(player.page.get_by_role("button", name="Load more")).to_be_hidden()
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.callSid)")
    assert shown == [f"CA{i:02d}" for i in range(54, -1, -1)]
    # Focus moves to the first recording of the new page, so a keyboard user carries on where they were.
    expect(player.row("CA04").locator('[data-action="play"]')).to_be_focused()


def test_a_bad_token_says_the_link_expired(player, add_recording):
    add_recording("CA01")

    player.open(token="not-a-token")

    from playwright.sync_api import expect

    expect(player.page.get_by_role("alert")).to_contain_text("Your access link has expired")
    expect(player.page.locator("[data-call-sid]")).to_have_count(0)
    player.errors.clear()  # the browser logs the 401 itself


def test_without_a_token_the_page_explains_how_to_open_it(player):
    player.page.goto(f"{player.base_url}/")

    from playwright.sync_api import expect

    expect(player.page.get_by_role("alert")).to_contain_text("Open recplay from your application")
    assert [r for r in player.requests if "/api/" in r.url] == []


# ---- playing -----------------------------------------------------------------------------------------------


def test_one_click_plays_by_streaming_the_signed_url(player, add_recording, provider, worker):
    path = add_recording("CA01")
    player.open()

    player.play("CA01")

    player.expect_state("CA01", "playing")
    player.wait_advancing()
    src = player.audio("audio.src")
    # The status object's signed media link.
    assert re.fullmatch(re.escape(player.base_url) + r"/media/acme/CA01-\d+\.wav\?expires=\d+&sig=[\w-]+", src), src
    # The audio element fetched the media itself (never the page: no Blob URL, no whole-file read).
    media = [r for r in player.requests if "/media/acme/CA01-" in r.url]
    assert media and {r.resource_type for r in media} == {"media"}
    assert player.fetch_posts("CA01") == 1
    assert provider.downloads[path] == 1
    from playwright.sync_api import expect

    expect(player.row("CA01").locator(".pill")).to_have_text("Ready")


def test_a_second_click_pauses_and_a_third_resumes_without_another_download(
    player, add_recording, provider, worker
):
    path = add_recording("CA01")
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    player.wait_advancing()

    player.play("CA01")

    player.expect_state("CA01", "paused")
    assert player.audio("audio.paused") is True
    player.play("CA01")
    player.expect_state("CA01", "playing")
    paused_at = player.audio("audio.currentTime")
    player.wait_audio(f"audio.currentTime > {paused_at + 0.3}")
    assert player.fetch_posts("CA01") == 1
    assert provider.downloads[path] == 1
    assert provider.requests[path] == 1


def test_pressing_play_twice_while_preparing_sends_one_fetch(player, add_recording, provider, worker):
    # Given a provider that holds the download until the test lets it go
    gate = threading.Event()
    path = add_recording("CA01", Behaviour(body=TEN_SECONDS, gate=gate))
    player.open()

    # When play is pressed twice while the recording is being prepared
    player.play("CA01")
    player.expect_state("CA01", "preparing")
    wait_for(lambda: provider.requests[path] == 1, 20, "the worker to reach the provider")
    player.play("CA01")
    gate.set()

    # Then one fetch was sent, one download made, and the recording plays
    player.expect_state("CA01", "playing")
    player.wait_advancing()
    assert player.fetch_posts("CA01") == 1
    assert provider.downloads[path] == 1


def test_a_slow_recording_shows_preparing_then_playing(player, add_recording, provider, worker):
    gate = threading.Event()
    path = add_recording("CA01", Behaviour(body=TEN_SECONDS, gate=gate))
    player.open()

    player.play("CA01")

    player.expect_state("CA01", "preparing")
    from playwright.sync_api import expect

    expect(player.page.locator(".player-message")).to_have_text(re.compile(r"Queued|Fetching|Preparing"))
    wait_for(lambda: provider.requests[path] == 1, 20, "the worker to reach the provider")
    assert player.row("CA01").get_attribute("data-state") == "preparing"
    gate.set()
    player.expect_state("CA01", "playing")
    player.wait_advancing()
    assert provider.downloads[path] == 1


def test_a_failing_recording_shows_the_error_and_retry_plays_once_the_provider_recovers(
    player, add_recording, provider, worker
):
    # Given a recording the provider answers 404 for (a permanent error), once
    path = add_recording("CA01", Behaviour(body=TEN_SECONDS, fail_first=[404]))
    player.open()

    player.play("CA01")

    from playwright.sync_api import expect

    player.expect_state("CA01", "error")
    row = player.row("CA01")
    expect(row.locator(".rec-reason")).to_contain_text("Could not fetch the recording")
    expect(row.locator(".pill")).to_have_text("Failed")
    retry = row.locator('[data-action="retry"]')
    expect(retry).to_be_visible()
    assert provider.downloads[path] == 0

    # When the provider has recovered and retry is pressed
    retry.click()

    # Then the recording plays, fetched exactly once more
    player.expect_state("CA01", "playing")
    player.wait_advancing()
    expect(retry).to_be_hidden()
    assert player.fetch_posts("CA01") == 2
    assert provider.requests[path] == 2
    assert provider.downloads[path] == 1


def test_seeking_to_7s_of_10s_lands_at_7s_or_later(player, add_recording, worker):
    add_recording("CA01")
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    player.wait_advancing(0.2)

    # The 7 key jumps to 70 % while the player has focus.
    player.page.locator(".seek-input").focus()
    player.page.keyboard.press("7")

    player.wait_audio("!audio.seeking && audio.currentTime >= 7")
    assert 7.0 <= player.audio("audio.currentTime") < 10.0
    player.wait_audio("audio.currentTime > 7.3 && !audio.paused")
    # The media link answered Range requests: the audio element's seeking is served by 206s.
    partial = [r for r in player.responses if "/media/acme/CA01-" in r.url and r.status == 206]
    assert partial, [(r.url, r.status) for r in player.responses]
    assert all(re.fullmatch(r"bytes \d+-\d+/\d+", r.headers["content-range"]) for r in partial)
    assert player.audio("audio.seekable.length") == 1
    assert player.audio("audio.seekable.end(0)") == pytest.approx(10.0, abs=0.05)


def test_controls_and_keys_drive_the_audio(player, add_recording, worker):
    add_recording("CA01")
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    player.wait_advancing(0.2)
    page = player.page
    from playwright.sync_api import expect

    expect(page.locator(".time-total")).to_have_text("0:10")
    page.get_by_role("button", name="Forward 10 seconds").focus()
    before = player.audio("audio.currentTime")

    page.keyboard.press("Space")
    player.expect_state("CA01", "paused")
    # Space toggled play; it did not also press the focused button (no 10 s jump).
    assert player.audio("audio.currentTime") < before + 1
    page.keyboard.press("k")
    player.expect_state("CA01", "playing")
    page.keyboard.press("m")
    assert player.audio("audio.muted") is True
    expect(page.get_by_role("button", name="Mute")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("m")
    assert player.audio("audio.muted") is False
    page.keyboard.press("0")
    player.wait_audio("!audio.seeking && audio.currentTime < 1")
    page.keyboard.press("ArrowRight")
    player.wait_audio("!audio.seeking && audio.currentTime >= 5")
    page.keyboard.press("ArrowLeft")
    player.wait_audio("!audio.seeking && audio.currentTime < 5")
    page.get_by_role("button", name="Forward 10 seconds").click()
    player.wait_audio("audio.currentTime >= 9.9 || audio.ended")

    download = page.get_by_role("link", name="Download recording")
    href = download.get_attribute("href")
    assert re.fullmatch(r"/media/acme/CA01-\d+\.wav\?expires=\d+&sig=[\w-]+&download=1", href), href
    answer = page.request.get(player.base_url + href)
    assert answer.status == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="CA01.wav"'
    assert answer.body() == TEN_SECONDS


def test_the_speed_is_remembered_across_visits(player, add_recording, worker):
    add_recording("CA01")
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")

    player.page.get_by_label("Playback speed").select_option("1.5")
    assert player.audio("audio.playbackRate") == 1.5

    player.page.reload()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    assert player.page.get_by_label("Playback speed").input_value() == "1.5"
    assert player.audio("audio.playbackRate") == 1.5


# ---- never a second job ------------------------------------------------------------------------------------


def test_a_refresh_mid_play_creates_no_duplicate_job(player, add_recording, provider, worker):
    path = add_recording("CA01")
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    player.wait_advancing()

    player.page.reload()
    player.expect_state("CA01", "idle")
    player.play("CA01")

    player.expect_state("CA01", "playing")
    player.wait_advancing()
    assert player.fetch_posts("CA01") == 2
    assert provider.requests[path] == 1
    assert provider.downloads[path] == 1
    assert_quiescent()


def test_ten_recordings_played_in_a_row_download_each_once_and_play_one_at_a_time(
    player, add_recording, provider, worker
):
    sids = [f"CA{i:02d}" for i in range(10)]
    paths = {sid: add_recording(sid) for sid in sids}
    player.open()

    for previous, sid in zip([None, *sids], sids, strict=False):
        player.play(sid)
        player.expect_state(sid, "playing")
        player.wait_audio(f"!audio.paused && audio.currentTime > 0.2 && audio.src.includes('/{sid}-')")
        states = player.states()
        assert Counter(states.values()) == Counter({"playing": 1, "idle": 9}), states
        if previous:
            assert states[previous] == "idle"

    assert {sid: provider.downloads[path] for sid, path in paths.items()} == dict.fromkeys(sids, 1)
    assert {sid: provider.requests[path] for sid, path in paths.items()} == dict.fromkeys(sids, 1)
    assert_quiescent()


# ---- layout ------------------------------------------------------------------------------------------------


def test_a_narrow_screen_needs_no_sideways_scrolling(browser, live_api, add_recording, worker, tmp_path):
    add_recording("CA01")
    add_recording("CA_with_a_rather_long_call_sid_0123456789", Behaviour(body=TEN_SECONDS, fail_first=[404]))
    context = browser.new_context(viewport={"width": 360, "height": 720})
    page = context.new_page()
    narrow = PlayerPage(page, live_api)
    narrow.open()
    narrow.play("CA_with_a_rather_long_call_sid_0123456789")
    narrow.expect_state("CA_with_a_rather_long_call_sid_0123456789", "error")
    narrow.play("CA01")
    narrow.expect_state("CA01", "playing")

    assert page.evaluate("document.documentElement.scrollWidth") == 360
    controls = ('[data-action="play"]', '[data-action="retry"]', '[data-player="toggle"]', ".seek-input")
    for selector in controls:
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, (selector, box)
    page.screenshot(path=str(tmp_path / "narrow.png"))
    context.close()
    assert narrow.errors == []


def test_the_player_screenshot_is_saved_for_the_readme(browser, live_api, add_recording, worker, api_for, provider,
                                                       tmp_path):
    screenshot = README_SCREENSHOT if os.environ.get("RECPLAY_UPDATE_SCREENSHOT") == "1" else tmp_path / "player.png"
    # Given several recordings in different states: one failed, two already fetched, the rest never fetched
    add_recording("CA8f41d2e7b5c3a9", Behaviour(body=TEN_SECONDS, fail_first=[404]), duration=42.0)
    for sid, seconds in (("CA2c9e51a08d7f46", 318.0), ("CA0b7d33f19e2a85", 67.0)):
        add_recording(sid, duration=seconds)
    for sid, seconds in (("CAd5f208b6e1c347", 184.0), ("CA4a93c7e05f1b62", 26.0)):
        add_recording(sid, duration=seconds)
    # The one that plays is a two-channel call: the agent and the caller take turns, with a pause between.
    url = provider.add(f"/{BUSINESS}/CA71e6a4c2d9b058.wav", Behaviour(body=_conversation()))
    api = api_for(BUSINESS)
    assert api.register("CA71e6a4c2d9b058", url, channels=["agent", "caller"]).status_code == 201
    for sid in ("CA8f41d2e7b5c3a9", "CA2c9e51a08d7f46", "CA0b7d33f19e2a85"):
        api.fetch(sid)
    api.wait_status("CA8f41d2e7b5c3a9", {"failed"}, 30)
    for sid in ("CA2c9e51a08d7f46", "CA0b7d33f19e2a85"):
        api.wait_status(sid, {"ready"}, 30)

    context = browser.new_context(viewport={"width": 1000, "height": 800}, device_scale_factor=1)
    page = context.new_page()
    shot = PlayerPage(page, live_api)
    shot.open()

    # When one of them plays
    shot.play("CA71e6a4c2d9b058")
    shot.expect_state("CA71e6a4c2d9b058", "playing")
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="waveform"]')).to_have_attribute("data-lanes", "2", timeout=PREPARE_MS)
    shot.wait_advancing(3.5)
    shot.page.evaluate("document.activeElement.blur()")
    page.screenshot(path=str(screenshot))

    # Then the picture shows the list, the failed one with its retry button, and the player
    assert shot.states()["CA71e6a4c2d9b058"] == "playing"
    assert shot.states()["CA8f41d2e7b5c3a9"] == "error"
    assert screenshot.stat().st_size > 10_000
    context.close()
    assert shot.errors == []


# ---- waveform, skip silence, filters -------------------------------------------------------------------------


def _wav(segments: list[tuple[float, float]], channels: int = 1, rate: int = 8000) -> bytes:
    """A WAV of (seconds, amplitude) tone segments at 440 Hz (amplitude 0: silence); with two channels the
    right one is silent throughout."""
    import math
    import struct

    frames = bytearray()
    for seconds, amplitude in segments:
        for i in range(int(seconds * rate)):
            left = int(amplitude * 32767 * math.sin(2 * math.pi * 440 * i / rate))
            frames += struct.pack("<h", left) + (struct.pack("<h", 0) if channels == 2 else b"")
    return wav_of(bytes(frames), channels, rate)


def _conversation(rate: int = 8000) -> bytes:
    """Ten seconds of a two-channel call: the agent (left) and the caller (right) take turns, each turn a few
    syllables of a 300 Hz voice, with a pause in the middle."""
    import math
    import struct

    turns = [(0.0, 2.2, 0), (2.4, 4.6, 1), (6.8, 8.4, 0), (8.5, 10.0, 1)]  # (start, end, side)
    frames = bytearray()
    for i in range(10 * rate):
        t = i / rate
        level = [0.0, 0.0]
        for start, end, side in turns:
            if start <= t < end:
                level[side] = 0.7 * math.sin(math.pi * ((t - start) * 3.3 % 1.0)) ** 2
        tone = math.sin(2 * math.pi * 300 * t)
        frames += struct.pack("<hh", int(32767 * level[0] * tone), int(32767 * level[1] * tone))
    return wav_of(bytes(frames), 2, rate)


def _register(api_for: Callable[[str], Api], provider: Provider, call_sid: str, body: bytes, **extra: Any) -> None:
    url = provider.add(f"/{BUSINESS}/{call_sid}.wav", Behaviour(body=body))
    assert api_for(BUSINESS).register(call_sid, url, **extra).status_code == 201


def test_the_waveform_draws_two_labelled_lanes_and_a_click_at_half_seeks_to_the_middle(
        player, api_for, provider, worker):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    _register(api_for, provider, "CA01", _wav([(10.0, 0.5)], channels=2), channels=["agent", "caller"])
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    wave = player.page.locator('[data-testid="waveform"]')
    expect(wave).to_be_visible(timeout=PREPARE_MS)
    expect(wave).to_have_attribute("data-lanes", "2")
    expect(player.page.locator('[data-testid="lane-label"]')).to_have_text(["agent", "caller"])
    # The lanes are drawn: their pixels differ from a blank canvas of the same size.
    drawn = wave.evaluate("""c => {
        const blank = document.createElement('canvas'); blank.width = c.width; blank.height = c.height;
        const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const b = blank.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let differ = 0; for (let i = 0; i < a.length; i += 4) { if (a[i + 3] !== b[i + 3]) differ++; }
        return differ / (c.width * c.height); }""")
    assert drawn > 0.05, drawn

    # Where the seek lands, noted as it lands: the audio plays on, so a check of its clock within 0.3 s of 5 s
    # misses the moment for good when the page's polling comes that late (it did once, on a loaded machine).
    player.page.evaluate("""() => { window.seekedTo = [];
        document.querySelector('audio').addEventListener('seeked', e => window.seekedTo.push(e.target.currentTime));
    }""")
    box = wave.bounding_box()
    player.page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)

    try:
        player.page.wait_for_function("() => window.seekedTo.length > 0", timeout=PLAY_MS)
    except PlaywrightTimeout:
        state = player.audio("[audio.currentTime, audio.seeking, audio.paused, audio.ended]")
        pytest.fail(f"the click did not seek; the audio's time, seeking, paused, ended: {state}")
    landed = player.page.evaluate("window.seekedTo")
    assert len(landed) == 1 and abs(landed[0] - 5) < 0.1, landed  # one seek, to the middle (a pixel is 0.013 s)


def test_skip_silence_jumps_over_a_silent_gap_and_dims_it(player, api_for, provider, worker):
    from playwright.sync_api import expect

    # 3 s of tone, 4 s of silence, 3 s of tone
    _register(api_for, provider, "CA01", _wav([(3.0, 0.5), (4.0, 0.0), (3.0, 0.5)]))
    player.open()
    player.play("CA01")
    player.expect_state("CA01", "playing")
    player.page.locator('[data-testid="skip-silence"]').click()
    expect(player.page.locator('[data-testid="skip-silence"]')).to_have_attribute("aria-pressed", "true")
    wave = player.page.locator('[data-testid="waveform"]')
    expect(wave).to_have_attribute("data-silences", "1", timeout=PREPARE_MS)
    expect(wave).to_have_attribute("data-dimmed", "true")
    player.page.evaluate("""() => { window.heard = [];
        document.querySelector('audio').addEventListener('timeupdate',
                                                         e => window.heard.push(e.target.currentTime)); }""")

    player.wait_audio("audio.currentTime > 7.5", timeout=PLAY_MS + 10_000)

    heard = player.page.evaluate("window.heard")
    inside = [t for t in heard if 3.5 < t < 6.5]
    assert inside == [], inside  # never played inside the gap (the jump lands 0.25 s before the sound)


def test_the_filters_narrow_the_list_and_survive_a_reload(player, add_recording):
    from playwright.sync_api import expect

    for sid in ("CA01", "CA02", "CB01"):
        add_recording(sid)
    player.open()
    rows = player.page.locator("[data-call-sid]")
    expect(rows).to_have_count(3)

    player.page.locator('[data-testid="filter-q"]').fill("CA")
    player.page.locator('[data-testid="filter-apply"]').click()

    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.callSid)") == ["CA02", "CA01"]
    assert "q=CA" in player.page.url and "token=" in player.page.url
    player.page.reload()
    expect(rows).to_have_count(2)
    expect(player.page.locator('[data-testid="filter-q"]')).to_have_value("CA")

    player.page.locator('[data-testid="filter-q"]').fill("ZZ")
    player.page.locator('[data-testid="filter-apply"]').click()
    expect(player.page.locator('[data-testid="empty-filtered"]')).to_be_visible()
    expect(rows).to_have_count(0)
