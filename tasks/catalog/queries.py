"""The recordings catalog: the durable facts (ownership, media URL, and for ready recordings their file).

SQLAlchemy 2; SQLite by default, PostgreSQL (psycopg 3) through ``DATABASE_URL``. The schema is versioned
with Alembic (``alembic/``); :mod:`tasks.catalog.schema` brings a database to the code's revision when a process
first opens it. If Redis is flushed, what is here stays true: ready recordings stay ready, and recordings
someone asked for (``wanted``) are requested again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tasks.catalog.models import FAILED, HTTP, NEW, READY, WANTED, Recording, RecordingRow, TwilioBinding, utcnow
from tasks.catalog.schema import ensure_schema
from tasks.settings import Settings

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def normalize_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (what hosting platforms hand out) mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def get_engine(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``, created once per process, its schema checked (and brought up
    to date when allowed, see :func:`tasks.catalog.schema.ensure_schema`)."""
    url = normalize_database_url(settings.database_url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url, settings)
            try:
                ensure_schema(engine, auto_migrate=settings.db_auto_migrate)
            except BaseException:
                engine.dispose()
                raise
            _engines[url] = engine
        return engine


def make_engine(url: str, settings: Settings) -> Engine:
    """A new engine for ``url`` (no schema check): SQLite in WAL mode, or a pooled PostgreSQL engine."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # Every process (gunicorn worker, celery worker) has its own pool; size the server's max_connections for
    # processes x (pool_size + max_overflow), see docs/deploy.md.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "recplay"},
    )


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


#: The recordings table, and the statements the catalog runs, built once (SQLAlchemy Core: each call only binds
#: its values, and the compiled form is cached by the engine after the first use).
_T: Table = Recording.__table__  # type: ignore[assignment]  # a declarative class's table is a Table
_BY_KEY = select(_T).where(_T.c.business_id == bindparam("business_id"), _T.c.call_sid == bindparam("call_sid"))
_PAGE = select(_T).where(_T.c.business_id == bindparam("business_id")).order_by(_T.c.id.desc()).limit(
    bindparam("limit"))
_PAGE_BEFORE = (select(_T).where(_T.c.business_id == bindparam("business_id"), _T.c.id < bindparam("before_id"))
                .order_by(_T.c.id.desc()).limit(bindparam("limit")))
_INSERT = insert(_T)
_SET_MEDIA_URL = (update(_T).where(_T.c.id == bindparam("recording_id"), _T.c.media_url.is_(None))
                  .values(media_url=bindparam("media_url")))
_MEDIA_URL = select(_T.c.media_url).where(_T.c.id == bindparam("recording_id"))
_MARK_WANTED = (update(_T).where(_T.c.id == bindparam("recording_id"), _T.c.state != READY)
                .values(state=WANTED, error=None))
_MARK_WANTED_FROM = (update(_T).where(_T.c.id == bindparam("recording_id"), _T.c.state != READY,
                                      _T.c.state == bindparam("seen")).values(state=WANTED, error=None))
# What decoding found: a channel count when there is one, a duration only where the provider gave none.
_MEDIA_FACTS = {
    "channels": func.coalesce(bindparam("channels", type_=_T.c.channels.type), _T.c.channels),
    "duration_seconds": func.coalesce(_T.c.duration_seconds,
                                      bindparam("duration_seconds", type_=_T.c.duration_seconds.type)),
}
_MARK_READY = update(_T).where(_T.c.id == bindparam("recording_id")).values(
    state=READY, error=None, size_bytes=bindparam("size_bytes"), content_type=bindparam("content_type"),
    sha256=bindparam("sha256"), file_path=bindparam("file_path"), attempts=bindparam("attempts"),
    ready_at=bindparam("ready_at"), **_MEDIA_FACTS)
_SET_MEDIA_FACTS = update(_T).where(_T.c.id == bindparam("recording_id")).values(**_MEDIA_FACTS)
_MARK_FAILED = (update(_T).where(_T.c.id == bindparam("recording_id"), _T.c.state != READY)
                .values(state=FAILED, error=bindparam("error"), attempts=bindparam("attempts")))
_MARK_LOST = (update(_T).where(_T.c.id == bindparam("recording_id"))
              .values(state=WANTED, file_path=None, sha256=None, ready_at=None))
_DELETE = delete(_T).where(_T.c.id == bindparam("recording_id"))
_WANTED = (select(_T).where(_T.c.state == WANTED, _T.c.id > bindparam("after_id")).order_by(_T.c.id)
           .limit(bindparam("limit")))


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


def _row(found: Any) -> RecordingRow:
    return RecordingRow.from_mapping(found._mapping)


class Catalog:
    """Queries over the recordings table; every method is one short transaction."""

    def __init__(self, settings: Settings) -> None:
        self.engine = get_engine(settings)

    def get(self, business_id: str, call_sid: str) -> RecordingRow | None:
        with self.engine.connect() as conn:
            found = conn.execute(_BY_KEY, {"business_id": business_id, "call_sid": call_sid}).first()
        return _row(found) if found is not None else None

    def register(
        self, business_id: str, call_sid: str, media_url: str | None, duration_seconds: float | None,
        provider: str = HTTP, channel_labels: str | None = None,
    ) -> tuple[RecordingRow, bool]:
        """Insert the recording; returns (row, created). An existing row is returned as it is.

        Concurrent registrations of the same recording are safe: the unique constraint lets one insert win and
        the others read its row.
        """
        existing = self.get(business_id, call_sid)
        if existing:
            return existing, False
        values = {"business_id": business_id, "call_sid": call_sid, "provider": provider, "media_url": media_url,
                  "duration_seconds": duration_seconds, "state": NEW, "attempts": 0, "created_at": utcnow(),
                  "channel_labels": channel_labels}
        try:
            with self.engine.begin() as conn:
                created = conn.execute(_INSERT, values)
                assert created.inserted_primary_key is not None
                recording_id = int(created.inserted_primary_key[0])
        except IntegrityError:
            # Lost a race with a concurrent registration of the same recording.
            again = self.get(business_id, call_sid)
            assert again is not None
            return again, False
        return RecordingRow.from_mapping({
            **values, "id": recording_id, "error": None, "size_bytes": None, "content_type": None, "sha256": None,
            "file_path": None, "ready_at": None, "channels": None}), True

    def page(self, business_id: str, limit: int, before_id: int | None, *, prefix: str | None = None,
             states: Sequence[str] | None = None, created_from: datetime | None = None,
             created_before: datetime | None = None) -> list[RecordingRow]:
        """Newest first; ``before_id`` is the cursor (the last id of the previous page). Optionally only call
        sids starting with ``prefix`` (case-sensitive), in ``states``, created in [created_from, created_before)."""
        q = select(Recording).where(Recording.business_id == business_id)
        if before_id is not None:
            q = q.where(Recording.id < before_id)
        if prefix:
            q = q.where(func.substr(Recording.call_sid, 1, len(prefix)) == prefix)
        if states is not None:
            q = q.where(Recording.state.in_(states))
        if created_from is not None:
            q = q.where(Recording.created_at >= created_from)
        if created_before is not None:
            q = q.where(Recording.created_at < created_before)
        with Session(self.engine) as s:
            return [RecordingRow.of(r) for r in s.scalars(q.order_by(Recording.id.desc()).limit(limit))]

    def set_media_url(self, recording_id: int, media_url: str) -> str:
        """Record the media URL resolved for a recording that had none; returns the URL the row holds (a
        concurrent resolution that won keeps its own)."""
        with self.engine.begin() as conn:
            conn.execute(_SET_MEDIA_URL, {"recording_id": recording_id, "media_url": media_url})
            held = conn.execute(_MEDIA_URL, {"recording_id": recording_id}).scalar()
        return held or media_url

    def mark_wanted(self, recording_id: int, seen: str | None = None) -> None:
        """Someone asked for it (a ready recording stays ready); with ``seen``, only while the row is still in
        that state, so that an outcome recorded since the caller read it is kept."""
        with self.engine.begin() as conn:
            if seen is None:
                conn.execute(_MARK_WANTED, {"recording_id": recording_id})
            else:
                conn.execute(_MARK_WANTED_FROM, {"recording_id": recording_id, "seen": seen})

    def mark_ready(self, recording_id: int, *, size_bytes: int, content_type: str, sha256: str,
                   file_path: str, attempts: int, duration_seconds: float | None = None,
                   channels: int | None = None) -> bool:
        """Record the stored file (and what its decoding found: the duration fills in one the provider did not
        give); False when the recording was deleted meanwhile (discard the file)."""
        with self.engine.begin() as conn:
            result = conn.execute(_MARK_READY, {
                "recording_id": recording_id, "size_bytes": size_bytes, "content_type": content_type,
                "sha256": sha256, "file_path": file_path, "attempts": attempts, "ready_at": utcnow(),
                "channels": channels, "duration_seconds": _rounded(duration_seconds)})
        return bool(result.rowcount)

    def set_media_facts(self, recording_id: int, channels: int, duration_seconds: float | None) -> None:
        """What decoding a recording stored before decoding existed found (``channels`` 0: it does not decode)."""
        with self.engine.begin() as conn:
            conn.execute(_SET_MEDIA_FACTS, {"recording_id": recording_id, "channels": channels,
                                            "duration_seconds": _rounded(duration_seconds)})

    def without_peaks(self, limit: int, after_id: int = 0, business_id: str | None = None) -> list[RecordingRow]:
        """Ready recordings stored before they were decoded (no channel count, no peaks), in id order."""
        q = select(Recording).where(Recording.state == READY, Recording.channels.is_(None), Recording.id > after_id)
        if business_id is not None:
            q = q.where(Recording.business_id == business_id)
        with Session(self.engine) as s:
            return [RecordingRow.of(r) for r in s.scalars(q.order_by(Recording.id).limit(limit))]

    def set_channel_labels(self, recording_id: int, labels: str | None) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(Recording).where(Recording.id == recording_id).values(channel_labels=labels))

    def mark_unwanted(self, business_id: str, call_sids: Sequence[str]) -> tuple[str, ...]:
        """Return wanted recordings to ``new`` (their waiting jobs were purged); returns those changed."""
        if not call_sids:
            return ()
        where = (_T.c.business_id == business_id, _T.c.call_sid.in_(call_sids), _T.c.state == WANTED)
        with self.engine.begin() as conn:
            changed = tuple(conn.execute(select(_T.c.call_sid).where(*where)).scalars())
            conn.execute(update(_T).where(*where).values(state=NEW))
            return changed

    def mark_failed(self, recording_id: int, error: str, attempts: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(_MARK_FAILED, {"recording_id": recording_id, "error": error[:500], "attempts": attempts})

    def mark_lost(self, recording_id: int, file_path: str | None, sha256: str | None) -> bool:
        """The store no longer has the file of a ready recording: it must be fetched again.

        Only the row version the caller read is changed (its ``file_path`` and ``sha256``): a recording stored
        again meanwhile keeps its new file. Returns whether the row changed.
        """
        with Session(self.engine) as s, s.begin():
            result = s.execute(update(Recording).where(
                Recording.id == recording_id, Recording.file_path == file_path, Recording.sha256 == sha256,
            ).values(state=WANTED, file_path=None, sha256=None, ready_at=None))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def delete(self, business_id: str, call_sid: str) -> RecordingRow | None:
        """Delete the row; returns it as it was when deleted (its file included, whatever was stored since the
        caller last read it), or None when there was none."""
        with Session(self.engine) as s, s.begin():
            # One statement reads and deletes: a result marked ready a moment before is in what it returns.
            gone = s.scalars(
                delete(Recording).where(Recording.business_id == business_id, Recording.call_sid == call_sid)
                .returning(Recording), execution_options={"synchronize_session": False},
            ).first()
            return RecordingRow.of(gone) if gone is not None else None

    def wanted(self, limit: int = 500, after_id: int = 0) -> list[RecordingRow]:
        """Recordings someone asked for that are not ready or failed yet (the sweeper re-requests lost ones),
        in id order from ``after_id`` (the last id of the previous page)."""
        with self.engine.connect() as conn:
            return [_row(found) for found in conn.execute(_WANTED, {"limit": limit, "after_id": after_id})]

    def twilio_account(self, business_id: str) -> str | None:
        """The Twilio account SID ``business_id`` is bound to, or None when it is unbound."""
        with Session(self.engine) as s:
            return s.scalar(select(TwilioBinding.account_sid).where(TwilioBinding.business_id == business_id))

    def bind_twilio(self, business_id: str, account_sid: str) -> str | None:
        """Bind ``business_id`` to ``account_sid`` (replacing any binding); returns the account it was bound to.

        Concurrent binds of one business are safe: the primary key lets one insert win, the others update.
        """
        for _ in range(2):
            try:
                with Session(self.engine) as s, s.begin():
                    found = s.get(TwilioBinding, business_id)
                    previous = found.account_sid if found is not None else None
                    if found is None:
                        s.add(TwilioBinding(business_id=business_id, account_sid=account_sid, bound_at=utcnow()))
                    elif found.account_sid != account_sid:
                        found.account_sid, found.bound_at = account_sid, utcnow()
                return previous
            except IntegrityError:
                continue  # another bind inserted the row first: update it
        raise RuntimeError("could not bind the Twilio account")  # two lost inserts in a row cannot happen

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
