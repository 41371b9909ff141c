"""The catalog's queries, each run against SQLite and against the real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import UTC

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from tasks.catalog.models import FAILED, NEW, READY, TWILIO, WANTED, Recording
from tasks.catalog.queries import Catalog
from tasks.settings import get_settings
from tests.conftest import run_threads

URL = "http://127.0.0.1:1/biz/a.wav"


def _catalog(catalog_url: str) -> Catalog:
    settings = get_settings()
    assert settings.database_url == catalog_url
    return Catalog(settings)


def _ready(cat: Catalog, rec_id: int, size: int = 1234) -> None:
    assert cat.mark_ready(rec_id, size_bytes=size, content_type="audio/wav", sha256="ab" * 32,
                          file_path="biz/CA1-1.wav", attempts=1)


def test_register_creates_once_then_returns_the_row_as_it_is(catalog_url):
    cat = _catalog(catalog_url)
    row, created = cat.register("biz", "CA1", URL, 12.5)
    assert created is True
    assert (row.business_id, row.call_sid, row.media_url, row.duration_seconds) == ("biz", "CA1", URL, 12.5)
    assert (row.state, row.attempts, row.provider) == (NEW, 0, "http")
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == UTC.utcoffset(None)

    again, created_again = cat.register("biz", "CA1", "http://127.0.0.1:1/other.wav", None)
    assert created_again is False
    assert again == row


def test_the_same_call_sid_in_two_businesses_is_two_recordings(catalog_url):
    cat = _catalog(catalog_url)
    a, _ = cat.register("biz-a", "CA1", URL, None)
    b, _ = cat.register("biz-b", "CA1", URL, None)
    assert a.id != b.id
    assert cat.get("biz-a", "CA1") == a
    assert cat.get("biz-b", "CA1") == b
    assert cat.get("biz-c", "CA1") is None


def test_concurrent_registrations_of_one_recording_insert_one_row_and_all_see_it(catalog_url):
    # Given 8 threads that all pass the existence check before any of them inserts (held at a barrier),
    # When they all insert, Then the unique constraint lets exactly one win, 7 take the IntegrityError path,
    # and every caller gets the winner's row.
    cat = _catalog(catalog_url)
    n = 8
    checked = threading.Barrier(n)
    first_get = threading.local()
    real_get = cat.get

    def get_after_everyone_checked(business_id: str, call_sid: str):  # type: ignore[no-untyped-def]
        found = real_get(business_id, call_sid)
        if not getattr(first_get, "done", False):
            first_get.done = True
            checked.wait(30)
        return found

    cat.get = get_after_everyone_checked  # type: ignore[method-assign]
    integrity_errors = []

    @event.listens_for(cat.engine, "handle_error")
    def _count(ctx):  # type: ignore[no-untyped-def]
        if isinstance(ctx.sqlalchemy_exception, IntegrityError):
            integrity_errors.append(ctx.sqlalchemy_exception)

    results = run_threads(n, lambda i: cat.register("biz", "CA-race", URL, None))

    assert sum(1 for _, created in results if created) == 1
    assert len(integrity_errors) == n - 1
    assert len({row.id for row, _ in results}) == 1
    with cat.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Recording)) == 1


def test_pages_are_newest_first_and_follow_an_id_cursor(catalog_url):
    cat = _catalog(catalog_url)
    ids = [cat.register("biz", f"CA{i}", URL, None)[0].id for i in range(5)]
    cat.register("other", "CAx", URL, None)
    first = cat.page("biz", 2, None)
    assert [r.call_sid for r in first] == ["CA4", "CA3"]
    second = cat.page("biz", 2, first[-1].id)
    assert [r.call_sid for r in second] == ["CA2", "CA1"]
    third = cat.page("biz", 2, second[-1].id)
    assert [r.call_sid for r in third] == ["CA0"]
    assert third[0].id == ids[0]
    assert cat.page("biz", 2, ids[0]) == []


def test_marking_wanted_from_a_state_read_keeps_an_outcome_recorded_since(catalog_url):
    # The API reads a row, creates its job (whose message is out at once), then marks the row wanted from the
    # state it read: a worker that recorded a failure or a result in between keeps it.
    cat = _catalog(catalog_url)
    failed, _ = cat.register("biz", "CA1", URL, None)
    cat.mark_failed(failed.id, "provider 404", 1)
    cat.mark_wanted(failed.id, seen=NEW)
    assert cat.get("biz", "CA1").state == FAILED  # type: ignore[union-attr]
    ready, _ = cat.register("biz", "CA2", URL, None)
    _ready(cat, ready.id, size=10)
    cat.mark_wanted(ready.id, seen=NEW)
    assert cat.get("biz", "CA2").state == READY  # type: ignore[union-attr]
    untouched, _ = cat.register("biz", "CA3", URL, None)
    cat.mark_wanted(untouched.id, seen=NEW)
    assert cat.get("biz", "CA3").state == WANTED  # type: ignore[union-attr]
    cat.mark_failed(untouched.id, "provider 404", 1)
    cat.mark_wanted(untouched.id)  # without a state read: a failed recording asked for again
    assert cat.get("biz", "CA3").state == WANTED  # type: ignore[union-attr]


def test_state_transitions_keep_a_ready_recording_ready(catalog_url):
    cat = _catalog(catalog_url)
    row, _ = cat.register("biz", "CA1", URL, None)
    cat.mark_wanted(row.id)
    assert cat.get("biz", "CA1").state == WANTED  # type: ignore[union-attr]
    assert [r.call_sid for r in cat.wanted()] == ["CA1"]

    _ready(cat, row.id, size=5 * 1024**3)  # past 2 GiB: a BIGINT
    ready = cat.get("biz", "CA1")
    assert ready is not None
    assert (ready.state, ready.size_bytes, ready.content_type, ready.attempts) == (READY, 5 * 1024**3,
                                                                                  "audio/wav", 1)
    assert ready.ready_at is not None and ready.ready_at.tzinfo is not None
    assert cat.wanted() == []

    cat.mark_failed(row.id, "late failure", 3)
    cat.mark_wanted(row.id)
    assert cat.get("biz", "CA1").state == READY  # type: ignore[union-attr]

    assert cat.mark_lost(row.id, ready.file_path, ready.sha256) is True
    lost = cat.get("biz", "CA1")
    assert lost is not None
    assert (lost.state, lost.file_path, lost.sha256, lost.ready_at) == (WANTED, None, None, None)


def test_a_failure_is_recorded_with_its_error_cut_to_500_characters(catalog_url):
    cat = _catalog(catalog_url)
    row, _ = cat.register("biz", "CA1", URL, None)
    cat.mark_failed(row.id, "x" * 600, 5)
    failed = cat.get("biz", "CA1")
    assert failed is not None
    assert (failed.state, failed.attempts, failed.error) == (FAILED, 5, "x" * 500)


def test_mark_ready_after_delete_says_so_and_delete_is_final(catalog_url):
    cat = _catalog(catalog_url)
    row, _ = cat.register("biz", "CA1", URL, None)
    deleted = cat.delete("biz", "CA1")
    assert deleted == row
    assert cat.delete("biz", "CA1") is None
    assert cat.mark_ready(row.id, size_bytes=1, content_type="audio/wav", sha256="0" * 64, file_path="x",
                          attempts=1) is False
    again, created = cat.register("biz", "CA1", URL, None)
    assert created is True and again.id != row.id


def test_a_twilio_recording_waits_for_its_media_url_and_keeps_the_first_resolved(catalog_url):
    cat = _catalog(catalog_url)
    row, _ = cat.register("biz", "CA1", None, None, provider=TWILIO)
    assert (row.provider, row.media_url) == (TWILIO, None)
    first = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.mp3"
    assert cat.set_media_url(row.id, first) == first
    assert cat.set_media_url(row.id, "https://api.twilio.com/other.mp3") == first
    assert cat.get("biz", "CA1").media_url == first  # type: ignore[union-attr]


def test_ping_answers(catalog_url):
    _catalog(catalog_url).ping()


def test_ready_keeps_the_providers_duration_and_fills_a_missing_one_and_the_channels(catalog_url):
    cat = _catalog(catalog_url)
    given, _ = cat.register("biz", "CA1", URL, 12.5)
    missing, _ = cat.register("biz", "CA2", URL, None)
    for rec in (given, missing):
        assert cat.mark_ready(rec.id, size_bytes=10, content_type="audio/wav", sha256="ab" * 32,
                              file_path=f"biz/{rec.call_sid}-{rec.id}.wav", attempts=2, duration_seconds=11.98765,
                              channels=2)
    kept, filled = cat.get("biz", "CA1"), cat.get("biz", "CA2")
    assert kept is not None and filled is not None
    assert (kept.state, kept.duration_seconds, kept.channels, kept.attempts) == (READY, 12.5, 2, 2)
    assert (filled.state, filled.duration_seconds, filled.channels, filled.size_bytes) == (READY, 11.988, 2, 10)
    # A decode that found no channel count leaves the one recorded; facts found later follow the same rules.
    assert cat.mark_ready(missing.id, size_bytes=11, content_type="audio/wav", sha256="cd" * 32,
                          file_path=filled.file_path or "", attempts=3)
    cat.set_media_facts(given.id, 1, 99.0)
    again, other = cat.get("biz", "CA2"), cat.get("biz", "CA1")
    assert again is not None and other is not None
    assert (again.channels, again.duration_seconds, again.size_bytes) == (2, 11.988, 11)
    assert (other.channels, other.duration_seconds) == (1, 12.5)
    assert cat.mark_ready(10 ** 9, size_bytes=1, content_type="audio/wav", sha256="ab" * 32, file_path="x",
                          attempts=1) is False  # deleted meanwhile
