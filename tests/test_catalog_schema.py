"""The catalog's schema: Alembic migrations, and what a process does when it opens a database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool, text

from tasks.catalog.models import Base
from tasks.catalog.queries import Catalog, dispose_engines
from tasks.catalog.schema import SchemaError, head_revision, upgrade
from tasks.settings import get_settings, reset_settings
from tests.conftest import ROOT

URL = "http://127.0.0.1:1/biz/a.wav"


def _engine(url: str):  # type: ignore[no-untyped-def]
    return create_engine(url, poolclass=pool.NullPool)


def _differences(url: str) -> list[object]:
    engine = _engine(url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    return list(diffs)


def _version(url: str) -> list[str]:
    engine = _engine(url)
    with engine.connect() as conn:
        found = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    engine.dispose()
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_pg_url")())
    return f"sqlite:///{tmp_path / 'empty.db'}"


def test_the_migrations_build_exactly_the_schema_of_the_models(empty_url):
    upgrade(_engine(empty_url))
    assert _version(empty_url) == [head_revision()]
    assert _differences(empty_url) == []


def test_a_fresh_sqlite_catalog_gets_the_schema_at_head_when_first_opened(data_dir):
    settings = get_settings()
    Catalog(settings).register("biz", "CA1", URL, None)
    assert _version(settings.database_url) == [head_revision()]
    assert _differences(settings.database_url) == []


def test_a_sqlite_catalog_from_before_migrations_is_stamped_and_upgraded_keeping_its_rows(data_dir):
    # Given a catalog with the first revision's schema and no alembic_version (created by create_all),
    settings = get_settings()
    data_dir.mkdir(parents=True)
    engine = _engine(settings.database_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text(
            "INSERT INTO recordings (business_id, call_sid, media_url, state, attempts, created_at) "
            "VALUES ('biz', 'CA-old', :url, 'ready', 1, '2024-01-01 00:00:00')"), {"url": URL})
    engine.dispose()
    # When a process opens it, Then it is at head and the old row reads as an http recording.
    cat = Catalog(settings)
    old = cat.get("biz", "CA-old")
    assert old is not None
    assert (old.provider, old.media_url, old.state) == ("http", URL, "ready")
    assert _version(settings.database_url) == [head_revision()]
    assert _differences(settings.database_url) == []


def test_postgresql_without_auto_migration_refuses_an_empty_database_and_names_the_command(
        data_dir, fresh_pg_url: Callable[[], str], monkeypatch):
    url = fresh_pg_url()
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    assert get_settings().db_auto_migrate is False
    with pytest.raises(SchemaError, match=rf"is empty, this code needs {head_revision()}: run `alembic upgrade head`"):
        Catalog(get_settings())

    monkeypatch.setenv("RECPLAY_DB_AUTO_MIGRATE", "1")
    reset_settings()
    dispose_engines()
    Catalog(get_settings()).register("biz", "CA1", URL, None)
    assert _version(url) == [head_revision()]


def test_postgresql_behind_the_code_is_refused_until_upgraded(data_dir, fresh_pg_url, monkeypatch):
    url = fresh_pg_url()
    upgrade(_engine(url), "0001")
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    with pytest.raises(SchemaError, match=f"is at revision 0001, this code needs {head_revision()}"):
        Catalog(get_settings())
    upgrade(_engine(url))
    dispose_engines()
    assert Catalog(get_settings()).register("biz", "CA1", URL, None)[1] is True


def test_a_schema_newer_than_the_code_is_accepted_during_a_rolling_upgrade(data_dir, fresh_pg_url,
                                                                            monkeypatch):
    url = fresh_pg_url()
    engine = _engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    assert Catalog(get_settings()).register("biz", "CA1", URL, None)[1] is True


def _alembic(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_the_alembic_command_line_upgrades_and_downgrades_postgresql(fresh_pg_url):
    url = fresh_pg_url()
    _alembic("upgrade", "head", url=url)
    assert f"{head_revision()} (head)" in _alembic("current", url=url).stdout
    assert _differences(url) == []

    _alembic("downgrade", "base", url=url)
    engine = _engine(url)
    with engine.connect() as conn:
        assert inspect(conn).has_table("recordings") is False
        assert inspect(conn).has_table("twilio_bindings") is False
    engine.dispose()
    _alembic("upgrade", "head", url=url)
    assert _version(url) == [head_revision()]


def test_processes_opening_a_fresh_postgresql_database_together_migrate_it_once(fresh_pg_url):
    # Three processes start at once on an empty database with auto-migration on: the advisory lock lets one
    # create the schema; the others find it at head. A second create_all would fail on the existing table.
    url = fresh_pg_url()
    env = {**os.environ, "DATABASE_URL": url, "RECPLAY_DB_AUTO_MIGRATE": "1", "PYTHONPATH": str(ROOT)}
    code = ("from tasks.catalog.queries import Catalog; from tasks.settings import get_settings; "
            "Catalog(get_settings()).ping()")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert _version(url) == [head_revision()]
    assert _differences(url) == []
