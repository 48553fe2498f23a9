"""Database engines: SQLite (embedded default) and PostgreSQL (psycopg 3), one URL setting.

SQLite gets WAL (readers never block the telemetry writer), foreign keys on (SQLite's default
is off), a busy timeout (the writer thread and the CLI share the file) and synchronous=FULL
(a committed clinical record survives a power cut, not only a process crash).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 3


def normalize_url(url: str) -> URL:
    """Accept ``postgres://``, ``postgresql://`` and ``sqlite:///`` URLs; PostgreSQL always
    goes through psycopg 3."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {u.get_backend_name()!r}: use sqlite or postgresql")
    return u


def is_sqlite(url: str | URL) -> bool:
    """True for a SQLite URL."""
    u = normalize_url(url) if isinstance(url, str) else url
    return u.get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=FULL")
    finally:
        cur.close()


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for `url` with the pragmas and timeouts the store relies on."""
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000.0})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # pre-ping: after a database outage the pool hands out a live connection, not a dead one
        engine = create_engine(u, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                               connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    log.info("database: %s", u.render_as_string(hide_password=True))
    return engine
