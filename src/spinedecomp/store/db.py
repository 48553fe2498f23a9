"""Database engines: SQLite (embedded default) and PostgreSQL (psycopg 3), one URL setting.

SQLite gets a rollback journal in TRUNCATE mode and no memory mapping, foreign keys on
(SQLite's default is off), a busy timeout (the writer thread and the CLI share the file) and
synchronous=FULL (a committed clinical record survives a power cut, not only a process crash;
in TRUNCATE mode FULL also fsyncs the journal's truncation, which is the commit point).

Why not WAL: a WAL database keeps its index in the ``-shm`` file, which every connection
maps into memory. When that file cannot be written any more (made immutable, its file system
gone read-only or full) the next store into the mapping is a SIGBUS that kills the process
outright: no release of the table, no summary, nothing said (issue 12). Without a mapped file
every storage failure comes back from SQLite as an error code the telemetry writer can act
on: it orders the release and reports the record as not stored. ``locking_mode=EXCLUSIVE``
would let WAL run without ``-shm``, but it locks every other connection out for the life of
the first one, so `spinedecomp session list` or the dashboard could not read the database
while a session records. What WAL gave (readers never wait for the writer, one fsync per
commit) costs little here: the telemetry writer is off the control loop, commits ten times a
second, and a reader that holds it up past the busy timeout sends its batch to the spool like
a database outage. ``mmap_size=0`` keeps SQLite builds that map the database file by default
from bringing the same SIGBUS back through the main file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
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


SQLITE_JOURNAL_MODE = "truncate"


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL, absolute (None for PostgreSQL or ``:memory:``)."""
    u = normalize_url(url) if isinstance(url, str) else url
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    if u.database.startswith("file:"):
        return None  # a URI filename: SQLite resolves it, not a plain path
    return Path(os.path.abspath(Path(u.database).expanduser()))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA mmap_size=0")
        mode = str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode == "wal":
            _leave_wal(cur)
        elif mode not in (SQLITE_JOURNAL_MODE, "memory"):
            cur.execute(f"PRAGMA journal_mode={SQLITE_JOURNAL_MODE}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=FULL")
    finally:
        cur.close()


def _leave_wal(cur: Any) -> None:
    """Switch a database left in WAL mode (by an earlier version) to the rollback journal.

    SQLite can only do it while no other connection has the file open; one that does (an
    older version still running) keeps it in WAL until it closes, and this connection works
    in WAL meanwhile rather than fail."""
    cur.execute("PRAGMA busy_timeout=0")  # do not wait 5 s per connection for the switch
    try:
        mode = str(cur.execute(f"PRAGMA journal_mode={SQLITE_JOURNAL_MODE}").fetchone()[0])
    except sqlite3.OperationalError as exc:
        mode = f"wal ({exc})"
    if mode.lower() != SQLITE_JOURNAL_MODE:
        log.warning("SQLite database still in WAL mode: another process has it open (%s); "
                    "switching to the rollback journal when it is closed", mode)


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
