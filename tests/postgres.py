"""PostgreSQL for the tests (a pytest plugin, loaded from setup.cfg).

The server is the one on 127.0.0.1:5432 (``RECPLAY_TEST_POSTGRES_URL`` names another). A session creates its
own throwaway databases, ``recplay_test_<random>``, and drops them at the end, so suites running at the same
time never meet. Without a reachable server the PostgreSQL tests are skipped locally and fail in CI (CI=true).

Fixtures:
    pg_url: the session's database, migrated with Alembic (``upgrade head``), emptied before each test.
    fresh_pg_url: a factory of new, empty databases (for schema and migration tests).
    catalog_url: parametrized over ``sqlite`` and ``postgresql``; points DATABASE_URL at the test's catalog.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ADMIN_URL = os.environ.get("RECPLAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

_created: list[str] = []


def _admin_engine() -> Any:
    from sqlalchemy import create_engine, pool

    return create_engine(ADMIN_URL, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT",
                         connect_args={"connect_timeout": 5})


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def postgres_available() -> str | None:
    """None when the server answers, else why not."""
    from sqlalchemy import text

    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def create_database() -> str:
    """A new empty database; returns its URL. Dropped at the end of the session."""
    from sqlalchemy import text

    name = f"recplay_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    _created.append(name)
    return _database_url(name)


def drop_databases() -> None:
    from sqlalchemy import text

    if not _created:
        return
    engine = _admin_engine()
    with engine.connect() as conn:
        for name in _created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
    _created.clear()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _created:
        drop_databases()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server."""
    why = postgres_available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and does not answer at {ADMIN_URL}: {why}")
        pytest.skip(f"PostgreSQL does not answer at {ADMIN_URL}: {why}")
    return ADMIN_URL


@pytest.fixture(scope="session")
def pg_session_url(postgres_server: str) -> str:
    """The session's catalog database on PostgreSQL, migrated to head with Alembic."""
    from sqlalchemy import create_engine, pool

    from tasks.catalog.schema import upgrade

    url = create_database()
    engine = create_engine(url, poolclass=pool.NullPool)
    upgrade(engine)
    engine.dispose()
    return url


def _empty(url: str) -> None:
    from sqlalchemy import create_engine, pool, text

    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE recordings, twilio_bindings RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture
def pg_url(pg_session_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL points at the session's PostgreSQL database, emptied for this test."""
    from tasks.catalog.queries import dispose_engines
    from tasks.settings import reset_settings

    _empty(pg_session_url)
    monkeypatch.setenv("DATABASE_URL", pg_session_url)
    reset_settings()
    dispose_engines()
    yield pg_session_url
    dispose_engines()


@pytest.fixture
def fresh_pg_url(postgres_server: str) -> Callable[[], str]:
    return create_database


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """The catalog of this test: the data directory's SQLite file, or the session's PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    from tasks.settings import get_settings

    return get_settings().database_url
