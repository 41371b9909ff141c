"""GET /api/recordings/<call_sid>/events: status changes pushed as Server-Sent Events, with a real worker subprocess
and the provider stand-in. The API runs on a real server: werkzeug's in this process (its module globals can be
shortened), or gunicorn with deploy/gunicorn.conf.py (gevent workers) for the many-clients test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from api import events as events_module
from tasks.slots.client import get_redis
from tasks.slots.events import hub_for, publish
from tests.conftest import token_for, wait_for
from tests.provider import make_wav
from tests.servers import Gunicorn
from tests.sse import EventStream

AUDIO = make_wav(0.5)


def auth(business_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(business_id)}"}


@pytest.fixture
def server(data_dir: Path) -> Iterator[str]:
    from api import create_app

    srv = make_server("127.0.0.1", 0, create_app({"TESTING": True}), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="api", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def register(base: str, business_id: str, call_sid: str, media_url: str, fetch: bool = True) -> None:
    r = requests.put(f"{base}/api/recordings/{call_sid}", json={"media_url": media_url}, headers=auth(business_id),
                     timeout=10)
    assert r.status_code == 201, r.text
    if fetch:
        r = requests.post(f"{base}/api/recordings/{call_sid}/fetch", headers=auth(business_id), timeout=10)
        assert r.status_code == 202, r.text


def test_events_come_in_order_queued_processing_ready_the_first_at_once_and_the_stream_ends(
        server, procs, provider):
    gate = threading.Event()
    url = provider.add("/biz/CA1.wav", body=AUDIO, gate=gate)
    register(server, "biz", "CA1", url)
    stream = EventStream(f"{server}/api/recordings/CA1/events", auth("biz"))
    try:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (stream.headers["Cache-Control"], stream.headers["X-Accel-Buffering"]) == ("no-store", "no")
        first = stream.wait_events(1, timeout=5)[0]
        assert stream.times[0] - stream.opened < 2.0  # at once, not after a poll
        assert (first["call_sid"], first["status"], first["attempts"], first["stream_url"]) == ("CA1", "queued", 0,
                                                                                              None)
        procs.worker()
        wait_for(lambda: provider.at_gate, 30, "the download to reach the provider")
        stream.wait_events(2, timeout=10)
        assert stream.statuses() == ["queued", "processing"]
        assert stream.events[1]["attempts"] == 1
        assert not stream.closed.is_set()
        gate.set()
        stream.wait_closed(timeout=30)
        assert stream.error is None
        assert stream.statuses() == ["queued", "processing", "ready"]
        ready = stream.events[-1]
        assert (ready["size_bytes"], ready["content_type"]) == (len(AUDIO), "audio/wav")
        assert ready["stream_url"].startswith("/media/biz/CA1-")
        media = requests.get(server + ready["stream_url"], headers={"Range": "bytes=0-9"}, timeout=10)
        assert (media.status_code, media.content) == (206, AUDIO[:10])
        assert provider.downloads["/biz/CA1.wav"] == 1
    finally:
        gate.set()
        stream.close()


def test_a_failed_recordings_stream_ends_after_failed(server, procs, provider):
    register(server, "biz", "CA2", provider.url("/biz/missing.wav"))  # the provider answers 404: permanent
    stream = EventStream(f"{server}/api/recordings/CA2/events", auth("biz"))
    try:
        stream.wait_events(1, timeout=5)
        procs.worker()
        stream.wait_closed(timeout=30)
        assert stream.statuses() == ["queued", "processing", "failed"]
        assert "404" in stream.events[-1]["error"]
        # A stream opened on a failed recording sends its state and ends at once.
        again = EventStream(f"{server}/api/recordings/CA2/events", auth("biz"))
        again.wait_closed(timeout=5)
        assert again.statuses() == ["failed"]
    finally:
        stream.close()


def test_only_the_owner_with_a_header_token_gets_a_stream(server, provider):
    register(server, "biz", "CA3", provider.url("/biz/CA3.wav"), fetch=False)
    base = f"{server}/api/recordings"
    cases = [
        (f"{base}/CA3/events", auth("other"), 404, "not_found"),  # another business's call_sid
        (f"{base}/CA-none/events", auth("biz"), 404, "not_found"),
        (f"{base}/CA3/events", {}, 401, "unauthorized"),
        (f"{base}/CA3/events?token={token_for('biz')}", {}, 401, "unauthorized"),  # never in a query string
        (f"{base}/CA3/events", {"Authorization": "Bearer forged.token.here"}, 401, "unauthorized"),
        (f"{base}/CA%20x/events", auth("biz"), 400, "invalid_id"),
    ]
    for url, headers, status, code in cases:
        r = requests.get(url, headers=headers, timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), url
    # The owner's stream of a recording nobody asked for yet starts with `new`.
    own = EventStream(f"{base}/CA3/events", auth("biz"))
    try:
        assert own.wait_events(1, timeout=5)[0]["status"] == "new"
    finally:
        own.close()


def test_a_quiet_stream_gets_heartbeats_and_ends_at_its_longest(server, provider, monkeypatch):
    monkeypatch.setattr(events_module, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(events_module, "MAX_STREAM_SECONDS", 1.5)
    register(server, "biz", "CA4", provider.url("/biz/CA4.wav"))  # no worker: it stays queued
    stream = EventStream(f"{server}/api/recordings/CA4/events", auth("biz"))
    try:
        stream.wait_closed(timeout=10)
        assert stream.statuses() == ["queued"]
        assert len(stream.comments) >= 4 and set(stream.comments) == {": keep-alive"}
        assert 1.4 <= time.monotonic() - stream.opened <= 5
    finally:
        stream.close()
    hub = hub_for(get_redis())
    wait_for(lambda: not hub.waiters, 5, "the ended stream to unsubscribe")
    # A client that goes away unsubscribes too (at the next heartbeat, which finds the connection closed), long
    # before its stream would end.
    monkeypatch.setattr(events_module, "MAX_STREAM_SECONDS", 60.0)
    gone = EventStream(f"{server}/api/recordings/CA4/events", auth("biz"))
    gone.wait_events(1, timeout=5)
    assert hub.waiters
    gone.close()
    wait_for(lambda: not hub.waiters, 5, "the stream of a client that went away to unsubscribe")


def test_deleting_the_recording_ends_its_streams(server, provider):
    register(server, "biz", "CA5", provider.url("/biz/CA5.wav"))
    stream = EventStream(f"{server}/api/recordings/CA5/events", auth("biz"))
    try:
        stream.wait_events(1, timeout=5)
        assert requests.delete(f"{server}/api/recordings/CA5", headers=auth("biz"), timeout=10).status_code == 204
        stream.wait_closed(timeout=5)
        assert stream.statuses() == ["queued"]
    finally:
        stream.close()


def test_a_stream_keeps_getting_changes_after_redis_restarts(server, provider, redis_server, rclient):
    register(server, "biz", "CA6", provider.url("/biz/CA6.wav"))
    stream = EventStream(f"{server}/api/recordings/CA6/events", auth("biz"))
    try:
        stream.wait_events(1, timeout=5)
        redis_server.restart_empty()
        # The listener reconnects and subscribes again; the waiting client reads the state again (the catalog
        # still says wanted: queued, nothing new to send) and then follows the messages as before.
        def resubscribed() -> bool:
            return bool(rclient.pubsub_numsub("recplay:{biz}:events:CA6")[0][1])

        wait_for(resubscribed, 15, "the API to subscribe again after the restart", interval=0.1)
        publish(rclient, "biz", "CA6", "processing", 1, "", 10**12)
        stream.wait_events(2, timeout=5)
        assert stream.statuses() == ["queued", "processing"]
    finally:
        stream.close()


def test_a_play_scoped_token_gets_a_stream_and_a_manage_one_too(server, provider, settings):
    """The player's `play` token opens the stream like a token without a scope; so does `manage` (it includes play)."""
    from tasks.access import MANAGE, PLAY, mint_token

    register(server, "biz", "CA7", provider.url("/biz/CA7.wav"), fetch=False)
    for scope in (PLAY, MANAGE):
        headers = {"Authorization": f"Bearer {mint_token(settings, 'biz', 600, scope)}"}
        stream = EventStream(f"{server}/api/recordings/CA7/events", headers)
        try:
            assert stream.wait_events(1, timeout=5)[0]["status"] == "new", scope
        finally:
            stream.close()


@pytest.mark.slow
def test_fifty_clients_waiting_on_gunicorn_all_get_ready_within_a_deadline_with_one_download(
        data_dir, procs, provider, tmp_path):
    clients = 50
    gate = threading.Event()
    url = provider.add("/biz/CAherd.wav", body=AUDIO, gate=gate)
    api = Gunicorn(tmp_path / "gunicorn.log")
    streams: list[EventStream | None] = [None] * clients
    try:
        assert "Using worker: gevent" in api.log.read_text()
        register(api.base, "biz", "CAherd", url)
        procs.worker()
        wait_for(lambda: provider.at_gate, 30, "the download to reach the provider")

        def open_stream(i: int) -> None:
            streams[i] = EventStream(f"{api.base}/api/recordings/CAherd/events", auth("biz"))

        openers = [threading.Thread(target=open_stream, args=(i,)) for i in range(clients)]
        for t in openers:
            t.start()
        for t in openers:
            t.join(60)
        opened = [s for s in streams if s is not None]
        assert len(opened) == clients and all(s.status == 200 for s in opened)
        for s in opened:  # every one has its first event (the download is running) and waits
            assert s.wait_events(1, timeout=10)[0]["status"] == "processing"
        assert not any(s.closed.is_set() for s in opened)

        released = time.monotonic()
        gate.set()
        for s in opened:
            s.wait_closed(timeout=15)
        assert [s.statuses() for s in opened] == [["processing", "ready"]] * clients
        slowest = max(s.times[-1] for s in opened) - released
        assert slowest < 5.0, f"the last client got `ready` {slowest:.2f}s after the download was let go"
        assert provider.downloads["/biz/CAherd.wav"] == 1
        # The stream_url they got streams through gunicorn (exactly the range asked for).
        link = opened[0].events[-1]["stream_url"]
        part = requests.get(api.base + link, headers={"Range": "bytes=100-199"}, timeout=10)
        assert (part.status_code, part.content, part.headers["Content-Length"]) == (206, AUDIO[100:200], "100")
        whole = requests.get(api.base + link, timeout=10)
        assert whole.content == AUDIO
    finally:
        gate.set()
        for s in streams:
            if s is not None:
                s.close()
        api.stop()
