"""The catalog's schema version: Alembic migrations (``alembic/``), checked when a process opens a database.

Policy (``RECPLAY_DB_AUTO_MIGRATE``; default on for SQLite, off for PostgreSQL):

- An empty database gets the current schema in one step (``create_all`` + ``stamp head``, Alembic's recipe
  for a fresh database); a database behind the code is upgraded with the migrations. Both run under a lock (a
  PostgreSQL advisory lock, or a file lock beside the SQLite file), so processes starting together migrate
  once.
- With auto-migration off (the PostgreSQL default), a process refuses to start on an empty or outdated
  database and says to run ``alembic upgrade head``: in a deployment that is one step before the new code
  starts (docs/deploy.md), never a race between N processes.
- A database *ahead* of the code (a revision this code does not know) is accepted: during a rolling upgrade
  the old processes keep running on the new, backward-compatible schema.
- A database created before migrations existed (the table, no ``alembic_version``) is stamped with the first
  revision, whose schema it has, then upgraded.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from alembic import command
from tasks.catalog.models import Base
from tasks.errors import ConfigError

log = logging.getLogger(__name__)

#: The migrations live at the project root, beside alembic.ini.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "alembic"
#: The revision whose schema a database created before migrations has.
BASELINE_REVISION = "0001"
#: Key of the PostgreSQL advisory lock held while the schema changes (a constant bigint: "recplay" in ASCII).
ADVISORY_LOCK_KEY = 0x7265_6370_6C61_79
_thread_lock = threading.Lock()


class SchemaError(ConfigError):
    """Raised when the database's schema is not the code's and this process may not migrate it."""


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for the project's migrations, bound to ``connection`` or ``url`` (else the
    environment's DATABASE_URL, as ``alembic`` on the command line)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held while the schema is inspected and changed, across threads and processes."""
    with _thread_lock:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                    conn.commit()
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            lock_path = Path(f"{engine.url.database}.migrate-lock")
            with open(lock_path, "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:
            yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on ``engine``'s database (what ``alembic upgrade`` does)."""
    with migration_lock(engine), engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), revision)


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Check that the database has the code's schema; create or upgrade it when ``auto_migrate``.

    Raises:
        SchemaError: the schema is missing or behind and ``auto_migrate`` is off.
    """
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return  # the common case, without taking the lock
    safe_url = engine.url.render_as_string(hide_password=True)
    with migration_lock(engine), engine.begin() as conn:
        current = current_revision(conn)
        if current == head:
            return
        if current is not None and not _known(current):
            log.warning("database schema %s is newer than this code's %s (rolling upgrade?); carrying on",
                        current, head)
            return
        has_table = inspect(conn).has_table("recordings")
        if not auto_migrate:
            state = "is empty" if current is None and not has_table else f"is at revision {current or 'none'}"
            raise SchemaError(
                f"the catalog database {safe_url} {state}, this code needs {head}: "
                "run `alembic upgrade head` (or set RECPLAY_DB_AUTO_MIGRATE=1)"
            )
        cfg = alembic_config(connection=conn)
        if current is None and not has_table:
            Base.metadata.create_all(conn)
            command.stamp(cfg, head)
            log.info("created the catalog schema at revision %s in %s", head, safe_url)
            return
        if current is None:
            command.stamp(cfg, BASELINE_REVISION)
            current = BASELINE_REVISION
        command.upgrade(cfg, head)
        log.info("upgraded the catalog schema from %s to %s in %s", current, head, safe_url)
