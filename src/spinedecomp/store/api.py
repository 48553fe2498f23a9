"""The store: one database, opened once per process, handing out units of work.

    store = Store.open()                      # settings from the environment
    with store.unit(actor="dr.lee") as uow:   # one transaction, one actor
        p = uow.patients.add(PatientIn(code="P-0001", name="..."))

Opening the store upgrades an embedded SQLite schema to head (no set-up), checks a
PostgreSQL schema (``spinedecomp db upgrade`` upgrades it), then runs the start-up recovery:
telemetry spooled during a database outage is written, and sessions whose process died are
marked aborted ("process ended unexpectedly").
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from spinedecomp.store import migrate
from spinedecomp.store.db import create_db_engine, is_sqlite, sqlite_file
from spinedecomp.store.repositories import StoreError, UnitOfWork
from spinedecomp.store.settings import StoreSettings

if TYPE_CHECKING:
    from spinedecomp.store.recovery import RecoveryReport

log = logging.getLogger(__name__)


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class SchemaOutOfDate(StoreError):
    """The database schema is not at this version's head: run `spinedecomp db upgrade`."""


class DatabaseReplaced(StoreError):
    """The SQLite file at the database's path is not the file this store opened (deleted,
    or replaced by another file): what is written now would not be found there."""


# SQLite result codes (primary, the low byte) that mean "busy now, try again": every other
# error of a SQLite file means the file cannot be written as it is (I/O error, read-only,
# disk full, corrupt, not a database, gone), which waiting will not fix.
_SQLITE_TRANSIENT = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


def storage_fault(exc: BaseException) -> str | None:
    """What is wrong, when `exc` says the database's storage itself failed (a SQLite file
    that cannot be written, or that was deleted or replaced), else None (a database that is
    unreachable or busy: an outage, worth a retry). PostgreSQL errors are always outages:
    the server's storage is its own business, and a lost server comes back."""
    if isinstance(exc, DatabaseReplaced):
        return str(exc)
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_TRANSIENT:
            return None
        name = getattr(orig, "sqlite_errorname", None) or type(orig).__name__
        return f"{str(orig).splitlines()[0] if str(orig) else name} ({name})"
    return None


def database_key(url: URL) -> str:
    """A short name for the database, stable for the same database however its URL is
    spelled (SQLite: the file's real path; PostgreSQL: host, port and database name, no user
    or password). Lock and spool files live under it, so two databases that share a data
    directory never share a session's lock or spool."""
    f = sqlite_file(url)
    if f is not None:
        ident = f"sqlite:{os.path.realpath(f)}"
    elif url.get_backend_name() == "sqlite":
        ident = f"sqlite:{url.database or ':memory:'}"
    else:
        host = str(url.query.get("host") or url.host or "localhost").lower()
        ident = f"postgresql://{host}:{url.port or 5432}/{url.database or ''}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database is not there right now" (worth a retry)."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Store:
    """A database with the store's schema."""

    def __init__(self, engine: Engine, settings: StoreSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.recovery: RecoveryReport | None = None  # what the start-up recovery did
        self.key = database_key(engine.url)
        self.database_file = sqlite_file(engine.url)
        self._file_id: tuple[int, int] | None = None

    @classmethod
    def open(cls, settings: StoreSettings | None = None, *, url: str | None = None,
             migrate_schema: bool | None = None, recover: bool = True) -> Store:
        """Open (and if allowed, upgrade) the database, then run start-up recovery."""
        settings = settings or StoreSettings()
        if url is not None:
            settings = settings.model_copy(update={"database_url": url})
        engine = create_db_engine(settings.url, pool_size=settings.pool_size)
        store = cls(engine, settings)
        try:
            store.ensure_schema(migrate_schema)
            store.remember_file()
            if recover:
                from spinedecomp.store.recovery import recover_sessions

                store.recovery = recover_sessions(store)
        except BaseException as exc:
            engine.dispose()
            if is_unavailable(exc):
                raise StoreUnavailable(f"cannot reach the database {store.display_url}: "
                                       f"{str(exc).splitlines()[0]}") from exc
            raise
        return store

    @property
    def display_url(self) -> str:
        """The URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def remember_file(self) -> None:
        """Note which file the SQLite database is (device and inode), for `check_file`."""
        if self.database_file is not None:
            st = self.database_file.stat()
            self._file_id = (st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Raise `DatabaseReplaced` if the SQLite file at the database's path is gone or is
        another file than the one this store opened. Connections already open keep writing
        to the old file without an error (an unlinked file lives on while it is open), so
        only this check can tell that what they commit will not be found at the path."""
        if self.database_file is None or self._file_id is None:
            return
        try:
            st = self.database_file.stat()
        except FileNotFoundError:
            raise DatabaseReplaced(f"the database file {self.database_file} was deleted") from None
        if (st.st_dev, st.st_ino) != self._file_id:
            raise DatabaseReplaced(f"the database file {self.database_file} was replaced by "
                                   "another file")

    def ensure_schema(self, migrate_schema: bool | None = None) -> None:
        """Upgrade to head if allowed (default: SQLite yes, PostgreSQL no), else check it."""
        head = migrate.head_revision()
        current = migrate.current_revision(self.engine)
        if current == head:
            return
        auto = migrate_schema if migrate_schema is not None else self.settings.auto_migrate
        if auto is None:
            auto = is_sqlite(self.engine.url)
        if auto:
            migrate.upgrade(self.engine)
            return
        raise SchemaOutOfDate(
            f"database {self.display_url} is at schema {current or 'empty'}, this version needs "
            f"{head}: run `spinedecomp db upgrade`")

    @contextmanager
    def unit(self, actor: str) -> Iterator[UnitOfWork]:
        """One transaction by `actor`: committed at the end of the block, rolled back on error."""
        session: Session = self._sessions()
        try:
            uow = UnitOfWork(session, actor)
            yield uow
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
