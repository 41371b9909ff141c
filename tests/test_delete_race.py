"""DELETE leaves no bytes behind, in the local directory or the bucket, whatever runs at the same time: a download
finishing (before, while and after it stores its result), or a download again under another extension.

A real worker downloads; DELETE goes through the API from another thread. To land DELETE in the narrow window
where a result is stored but not yet recorded, the test holds the catalog's write lock (SQLite, as any other
writer would): the worker's store has happened, its catalog write waits, DELETE waits too, and both go when the
lock is let go, in whichever order the database picks. On PostgreSQL the test holds the row's lock instead,
whose waiters go in the order they came: both orders are then made to happen, one each.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tasks.catalog.queries import Catalog
from tasks.recordings import Recordings
from tasks.settings import get_settings
from tasks.slots import keys
from tests.conftest import Api, assert_quiescent, wait_for
from tests.crashkit import media_files
from tests.provider import Behaviour, Provider, make_wav
from tests.test_s3 import moto_endpoint, s3  # noqa: F401 - fixtures
from tests.twilio_standin import mp3_bytes

WAV = make_wav(0.5)
MP3 = mp3_bytes(4000)


class WriteLock:
    """The catalog's write lock, held by this test (BEGIN IMMEDIATE on the SQLite file)."""

    def __init__(self, settings: Any) -> None:
        self.db = sqlite3.connect(settings.sqlite_path, timeout=30, isolation_level=None)

    def __enter__(self) -> WriteLock:
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.execute("COMMIT")
        self.db.close()


class Race:
    """One business's recordings, downloaded by a real worker and deleted through the API meanwhile."""

    def __init__(self, app: Any, provider: Provider, files: Callable[[], list[str]]) -> None:
        self.app, self.provider, self.files = app, provider, files
        self.api = Api(app.test_client(), "biz")

    def start(self, call_sid: str, behaviour: Behaviour) -> threading.Event:
        """Register and fetch; returns once the download is held at the provider."""
        gate = threading.Event()
        behaviour.gate = gate
        path = f"/biz/{call_sid}"
        assert self.api.register(call_sid, self.provider.add(path, behaviour)).status_code == 201
        self.api.fetch(call_sid)
        wait_for(lambda: path in self.provider.at_gate.values(), 20, f"{call_sid} to reach the provider")
        return gate

    def delete(self, call_sid: str) -> Any:
        client = self.app.test_client()  # a client of its own: DELETE runs in its own thread
        return client.delete(f"/api/recordings/{call_sid}", headers=self.api.headers)

    def together(self, call_sid: str, gate: threading.Event) -> None:
        """Let the download finish and DELETE at the same moment."""
        barrier = threading.Barrier(2)
        answers: list[int] = []

        def deleting() -> None:
            barrier.wait()
            answers.append(self.delete(call_sid).status_code)

        thread = threading.Thread(target=deleting)
        thread.start()
        barrier.wait()
        gate.set()
        thread.join(30)
        assert answers == [204]

    def while_storing(self, call_sid: str, gate: threading.Event, settings: Any, stored: Callable[[], bool]) -> None:
        """DELETE once the result is stored and its catalog write waits on the lock."""
        answers: list[int] = []
        with WriteLock(settings):
            gate.set()
            wait_for(stored, 20, f"{call_sid}'s result to be stored")
            thread = threading.Thread(target=lambda: answers.append(self.delete(call_sid).status_code))
            thread.start()
            wait_for(lambda: _waiting_on_lock(thread), 10, "DELETE to read the row and wait for the lock")
        thread.join(30)
        assert answers == [204]

    def deleting_first(self, call_sid: str, gate: threading.Event, settings: Any, stored: Callable[[], bool]) -> None:
        """DELETE reads the row (not ready yet) and waits on the lock; then the result is stored, its catalog
        write waits on the lock too, behind DELETE; both go when the lock is let go."""
        answers: list[int] = []
        with WriteLock(settings):
            thread = threading.Thread(target=lambda: answers.append(self.delete(call_sid).status_code))
            thread.start()
            wait_for(lambda: _waiting_on_lock(thread), 10, "DELETE to read the row and wait for the lock")
            gate.set()
            wait_for(stored, 20, f"{call_sid}'s result to be stored")
        thread.join(30)
        assert answers == [204]

    def assert_gone(self, call_sid: str) -> None:
        assert_quiescent()  # the attempt is over, its slot released: whatever it would store is stored
        assert Catalog(get_settings()).get("biz", call_sid) is None
        assert self.api.status(call_sid).status_code == 404
        assert self.files() == [], call_sid


def _waiting_on_lock(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside the catalog's delete (it read the row already, and waits to write)."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "delete" and frame.f_code.co_filename.endswith("tasks/catalog/queries.py"):
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def local_race(app: Any, provider: Provider, settings: Any) -> Race:
    return Race(app, provider, lambda: media_files(settings, "biz"))


def test_delete_racing_a_finishing_download_leaves_no_file(local_race, procs, settings):
    procs.worker(concurrency=4)
    for i in range(6):
        call_sid = f"CAt{i}"
        gate = local_race.start(call_sid, Behaviour(body=WAV, trickle_seconds=0.05 * (i % 3)))
        local_race.together(call_sid, gate)
        local_race.assert_gone(call_sid)
    for i in range(6):
        call_sid = f"CAs{i}"
        gate = local_race.start(call_sid, Behaviour(body=WAV))
        rec = Catalog(settings).get("biz", call_sid)
        assert rec is not None
        final = settings.media_dir / "biz" / f"{call_sid}-{rec.id}.wav"
        how = local_race.while_storing if i % 2 else local_race.deleting_first
        how(call_sid, gate, settings, final.exists)
        local_race.assert_gone(call_sid)


def test_delete_racing_a_download_again_under_another_extension_leaves_no_file(local_race, procs, settings,
                                                                               rclient):
    procs.worker(concurrency=4)
    catalog = Catalog(settings)
    for i, how in enumerate(("after", "together", "while_storing")):
        call_sid = f"CAx{i}"
        # Given a recording stored as a wav, then taken for lost though its file is still there (a store that
        # answered "not found" for a moment), and a provider that now sends an mp3
        gate = local_race.start(call_sid, Behaviour(body=MP3, content_type="audio/mpeg",
                                                    first_bodies=[(WAV, "audio/wav")]))
        gate.set()
        first = local_race.api.wait_status(call_sid, {"ready", "failed"}, 30)
        assert first["content_type"] == "audio/wav"
        # (The status says ready once the catalog does; the worker's last step, its ready script, settles the job
        # and writes the recording's fact after that. A fact written after the loss below would be the wav's.)
        wait_for(lambda cs=call_sid: rclient.zscore(keys.claimed("biz"), cs) is None, 20, "the first download's end")
        rec = catalog.get("biz", call_sid)
        assert rec is not None and media_files(settings, "biz") == [f"{call_sid}-{rec.id}.wav",
                                                                    f"{call_sid}-{rec.id}.wav.peaks"]
        # When it is downloaded again, as an mp3 (what the stream endpoint does when the store says it lost a
        # file: mark it lost, request it again)
        local_race.provider.behaviours[f"/biz/{call_sid}"].gate = gate = threading.Event()
        assert catalog.mark_lost(rec.id, rec.file_path, rec.sha256)
        recordings = Recordings(rclient, settings, "biz")
        recordings.request(recordings.get(call_sid), "force")  # type: ignore[arg-type]
        wait_for(lambda cs=call_sid: f"/biz/{cs}" in local_race.provider.at_gate.values(), 20, "the download")
        if how == "after":
            gate.set()
            assert local_race.api.wait_status(call_sid, {"ready", "failed"}, 30)["content_type"] == "audio/mpeg"
            # Then the wav is not kept beside the mp3
            assert media_files(settings, "biz") == [f"{call_sid}-{rec.id}.mp3", f"{call_sid}-{rec.id}.mp3.peaks"]
            assert local_race.delete(call_sid).status_code == 204
        elif how == "together":
            local_race.together(call_sid, gate)
        else:
            final = settings.media_dir / "biz" / f"{call_sid}-{rec.id}.mp3"
            local_race.while_storing(call_sid, gate, settings, final.exists)
        # And after DELETE neither is
        local_race.assert_gone(call_sid)


def test_delete_racing_a_finishing_download_leaves_no_object_in_the_bucket(s3, provider, procs):  # noqa: F811
    client, _ = s3("proxy")
    settings = get_settings()
    from api import create_app

    bucket = settings.s3_bucket

    def objects() -> list[str]:
        spool = [p.name for p in (settings.data_dir / "spool").rglob("*") if p.is_file()]
        return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])) + spool

    race = Race(create_app({"TESTING": True}), provider, objects)
    procs.worker(concurrency=4)
    for i in range(3):
        call_sid = f"CAt{i}"
        race.together(call_sid, race.start(call_sid, Behaviour(body=WAV)))
        race.assert_gone(call_sid)
    for i in range(2):
        call_sid = f"CAs{i}"
        gate = race.start(call_sid, Behaviour(body=WAV))
        rec = Catalog(settings).get("biz", call_sid)
        assert rec is not None
        key = f"biz/{call_sid}-{rec.id}.wav"
        race.while_storing(call_sid, gate, settings,
                           lambda k=key: bool(client.list_objects_v2(Bucket=bucket, Prefix=k).get("Contents")))
        race.assert_gone(call_sid)


# ---- PostgreSQL: both orders, made to happen ---------------------------------------------------------------

class RowLock:
    """The recording's row locked by this test (SELECT ... FOR UPDATE); and what waits on it."""

    def __init__(self, url: str, recording_id: int) -> None:
        from sqlalchemy import create_engine, pool, text

        self.text = text
        self.engine = create_engine(url, poolclass=pool.NullPool)
        self.conn = self.engine.connect()
        self.conn.execute(text("SELECT id FROM recordings WHERE id = :id FOR UPDATE"), {"id": recording_id})
        self.watch = self.engine.connect()

    def waiting(self, statement: str) -> bool:
        """Whether a session of recplay waits on a lock in a statement starting with ``statement``."""
        found = self.watch.execute(self.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "application_name = 'recplay' AND wait_event_type = 'Lock' AND query ILIKE :q"),
            {"q": statement + "%"}).scalar()
        self.watch.rollback()
        return bool(found)

    def release(self) -> None:
        self.conn.commit()
        self.conn.close()
        self.watch.close()
        self.engine.dispose()


@pytest.mark.parametrize("first", ["download", "delete"])
def test_on_postgresql_delete_and_a_finishing_download_leave_no_file_in_either_order(pg_url, app, provider, procs,
                                                                                     settings, first):
    race = Race(app, provider, lambda: media_files(settings, "biz"))
    procs.worker(concurrency=2)
    gate = race.start("CA1", Behaviour(body=WAV))
    rec = Catalog(settings).get("biz", "CA1")
    assert rec is not None
    final = settings.media_dir / "biz" / f"CA1-{rec.id}.wav"
    answers: list[int] = []
    deleting = threading.Thread(target=lambda: answers.append(race.delete("CA1").status_code))
    lock = RowLock(pg_url, rec.id)
    try:
        if first == "download":
            # The result is stored and its row update waits first; DELETE reads the row (not ready) and waits
            # behind it: the update goes first, then DELETE removes the row it made ready.
            gate.set()
            wait_for(final.exists, 20, "the result to be stored")
            wait_for(lambda: lock.waiting("UPDATE recordings"), 20, "the worker's update to wait on the row")
            deleting.start()
            wait_for(lambda: lock.waiting("DELETE FROM recordings"), 20, "DELETE to wait on the row")
        else:
            # DELETE waits first; the result is stored and its update waits behind: the row is gone first, the
            # update finds nothing and the worker removes its file.
            deleting.start()
            wait_for(lambda: lock.waiting("DELETE FROM recordings"), 20, "DELETE to wait on the row")
            gate.set()
            wait_for(final.exists, 20, "the result to be stored")
            wait_for(lambda: lock.waiting("UPDATE recordings"), 20, "the worker's update to wait on the row")
    finally:
        lock.release()
    deleting.join(30)
    assert answers == [204]
    race.assert_gone("CA1")
    outcome = "ready" if first == "download" else "recording deleted during the download, result discarded"
    assert f"{outcome} business_id=biz call_sid=CA1 " in procs.started[0].log()
