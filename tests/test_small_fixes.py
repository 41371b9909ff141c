"""The small ones: a non-ASCII digit in `limit=` is a 400; nothing stays behind when a result cannot be stored;
marking a file lost touches only the row version that was read; a message delivered twice to one worker
process cannot give up the slot of the run that holds it."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from typing import Any

import pytest

from tasks.access import mint_token
from tasks.catalog.models import READY, WANTED
from tasks.catalog.queries import Catalog
from tasks.dispatch import send_download
from tasks.media.local import MediaStore
from tasks.media.types import STORED_EXTENSIONS
from tasks.settings import get_settings
from tests.conftest import assert_quiescent, wait_for
from tests.crashkit import media_files, wait_holder
from tests.media import make_ready
from tests.provider import Behaviour, make_wav
from tests.twilio_standin import mp3_bytes

WAV = make_wav(0.2)
MP3 = mp3_bytes(3000)


@pytest.mark.parametrize("limit", ["٣", "²", "\uff13", "1٣", "-1", "+3", " 3", "3.0", "0", "201", ""])
def test_a_limit_that_is_not_ascii_digits_in_range_is_400(app, limit):
    answer = app.test_client().get("/api/recordings", query_string={"limit": limit},
                                   headers={"Authorization": f"Bearer {mint_token(get_settings(), 'biz', 600)}"})
    assert answer.status_code == 400, limit
    assert answer.get_json()["error"]["code"] == "invalid_limit"


def test_a_cursor_that_decodes_to_non_ascii_digits_is_400(app):
    import base64

    cursor = base64.urlsafe_b64encode("٣".encode()).decode().rstrip("=")
    answer = app.test_client().get("/api/recordings", query_string={"cursor": cursor},
                                   headers={"Authorization": f"Bearer {mint_token(get_settings(), 'biz', 600)}"})
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "invalid_cursor")


def _fail_ready_wav(settings: Any) -> None:
    """A catalog that cannot record a `.wav` result (as a database refusing a write would): a trigger."""
    Catalog(settings)  # the schema exists from here on
    with sqlite3.connect(settings.sqlite_path) as db:
        db.execute("CREATE TRIGGER fail_ready_wav BEFORE UPDATE OF state ON recordings "
                   "WHEN NEW.state = 'ready' AND NEW.file_path LIKE '%.wav' "
                   "BEGIN SELECT RAISE(ABORT, 'the catalog refused the write'); END")


def test_a_result_that_cannot_be_recorded_or_stored_leaves_nothing_behind(api_for, provider, procs, settings):
    # Given a catalog that refuses to record a .wav result, and a provider that sends a wav first, then an mp3
    _fail_ready_wav(settings)
    procs.worker(concurrency=2, env={"RECPLAY_MAX_ATTEMPTS": "1"})
    api = api_for("biz")
    api.register("CA1", provider.add("/biz/a", Behaviour(body=MP3, content_type="audio/mpeg",
                                                         first_bodies=[(WAV, "audio/wav")])))
    # When the wav is downloaded and stored, and recording it fails
    api.fetch("CA1")
    failed = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert failed["status"] == "failed"
    assert "the catalog refused the write" in failed["error"]
    # Then neither the temporary file nor the stored one is left
    assert media_files(settings, "biz") == []
    # And the next download (an mp3 now) is stored and kept alone
    api.fetch("CA1")
    assert api.wait_status("CA1", {"ready", "failed"}, 30)["content_type"] == "audio/mpeg"
    rec = Catalog(settings).get("biz", "CA1")
    assert rec is not None and media_files(settings, "biz") == [f"CA1-{rec.id}.mp3", f"CA1-{rec.id}.mp3.peaks"]

    # Given a second recording whose file cannot be put in place (a directory holds its name)
    api.register("CA2", provider.add("/biz/b.wav", body=WAV))
    rec2 = Catalog(settings).get("biz", "CA2")
    assert rec2 is not None
    blocker = settings.media_dir / "biz" / f"CA2-{rec2.id}.wav"
    blocker.mkdir(parents=True)
    (blocker / "x").write_bytes(b"x")
    api.fetch("CA2")
    cannot = api.wait_status("CA2", {"ready", "failed"}, 30)
    assert cannot["status"] == "failed" and "internal error" in cannot["error"]
    # Then its temporary file is gone too
    assert media_files(settings, "biz") == sorted([f"CA1-{rec.id}.mp3", f"CA1-{rec.id}.mp3.peaks", blocker.name])
    assert_quiescent()


def test_marking_a_file_lost_applies_only_to_the_row_version_that_was_read(data_dir, settings):
    # Given a reader that saw the recording stored as file A
    seen = make_ready("biz", "CA1", b"ID3" + bytes(100))
    catalog = Catalog(settings)
    # When it was stored again meanwhile (file B), and the reader then marks what it saw lost
    body = b"ID3" + bytes(200)
    assert catalog.mark_ready(seen.id, size_bytes=len(body), content_type="audio/mpeg",
                              sha256=hashlib.sha256(body).hexdigest(), file_path="biz/CA1-new.mp3", attempts=2)
    assert catalog.mark_lost(seen.id, seen.file_path, seen.sha256) is False
    # Then the new file stays recorded
    now = catalog.get("biz", "CA1")
    assert now is not None and (now.state, now.file_path) == (READY, "biz/CA1-new.mp3")
    # And the row version it did read is marked lost
    assert catalog.mark_lost(now.id, now.file_path, now.sha256) is True
    lost = catalog.get("biz", "CA1")
    assert lost is not None and (lost.state, lost.file_path, lost.sha256) == (WANTED, None, None)


def test_a_message_delivered_twice_to_one_process_cannot_give_up_the_live_attempts_slot(api_for, provider, procs,
                                                                                        rclient):
    # Given a download running in a threads worker, held at the provider
    gate = threading.Event()
    worker = procs.worker(concurrency=4)
    api = api_for("biz")
    api.register("CA1", provider.add("/biz/a.wav", body=WAV, gate=gate))
    api.fetch("CA1")
    live = wait_holder(rclient, "biz", "CA1")
    wait_for(lambda: list(provider.at_gate.values()) == ["/biz/a.wav"], 20, "the download to reach the provider")
    # When its message is delivered again (the broker redelivers it; the same task id) to the same process
    assert rclient.hlen("unacked") == 1  # the running attempt's message (acks late)
    send_download("biz", "CA1", live.task_id)
    wait_for(lambda: f"dropped stale message business_id=biz call_sid=CA1 task_id={live.task_id}" in worker.log(),
             20, "the second delivery to run")
    # Its message is acknowledged after the task's signals ran (task_postrun included): back to one unacked.
    wait_for(lambda: rclient.hlen("unacked") == 1 and not rclient.llen("recplay"), 20,
             "the second delivery to be acknowledged")
    # Then the running attempt keeps its slot and its job
    assert wait_holder(rclient, "biz", "CA1") == live
    status = api.status("CA1").get_json()
    assert (status["status"], status["attempts"]) == ("processing", 1), status
    assert "gave up a slot" not in worker.log()
    # And it finishes as the one and only download
    gate.set()
    done = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert (done["status"], done["attempts"]) == ("ready", 1)
    assert provider.downloads["/biz/a.wav"] == 1
    assert_quiescent()


def test_a_recordings_files_under_every_extension_ever_stored_are_deleted_and_no_other(settings):
    """The local store finds a recording's files by name (one per extension it was ever stored under), not by
    listing the business's directory: every one of them goes, and nothing of another recording."""
    store = MediaStore(settings.media_dir)
    directory = settings.media_dir / "biz"
    directory.mkdir(parents=True)
    mine = [f"CA1-7.{ext}" for ext in STORED_EXTENSIONS] + [f"CA1-7.{ext}.peaks" for ext in STORED_EXTENSIONS]
    others = ["CA1-8.wav", "CA1-70.wav", "CA10-7.wav", "CA1-7", "CA1-7.wav.part", ".CA1-7.wav.1f.part"]
    for name in mine + others:
        (directory / name).write_bytes(b"x")
    assert store.delete_recording("biz", "CA1", 7, keep="biz/CA1-7.mp3") == len(mine) - 2
    assert sorted(p.name for p in directory.iterdir()) == sorted(["CA1-7.mp3", "CA1-7.mp3.peaks", *others])
    assert store.delete_recording("biz", "CA1", 7) == 2
    assert store.delete_recording("nobody", "CA1", 7) == 0
    assert sorted(p.name for p in directory.iterdir()) == sorted(others)
