"""Alembic environment for the recplay catalog.

The database is, in order: the connection a caller passed in ``config.attributes["connection"]`` (tasks/catalog/schema.py),
``sqlalchemy.url`` set on the config, or ``DATABASE_URL`` read by ``tasks.settings`` like every recplay process.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from tasks.catalog.models import Base
from tasks.catalog.queries import normalize_database_url
from tasks.catalog.schema import migration_lock
from tasks.settings import get_settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("connection"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return normalize_database_url(config.get_main_option("sqlalchemy.url") or get_settings().database_url)


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"), dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    # Deploy steps that run `alembic upgrade head` at once (several hosts, replicas) take turns.
    with migration_lock(engine), engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
