"""Alembic environment of the store. Used through `spinedecomp.store.migrate` (and so
`spinedecomp db upgrade`), which passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from spinedecomp.store.db import create_db_engine
from spinedecomp.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL without a database (``alembic upgrade --sql``)."""
    context.configure(url=config.attributes.get("url") or config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate over the connection we were given, or one made from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set SPINEDECOMP_DATABASE_URL")
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
