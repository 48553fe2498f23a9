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

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from spinedecomp.store import migrate
from spinedecomp.store.db import create_db_engine, is_sqlite
from spinedecomp.store.repositories import StoreError, UnitOfWork
from spinedecomp.store.settings import StoreSettings

if TYPE_CHECKING:
    from spinedecomp.store.recovery import RecoveryReport

log = logging.getLogger(__name__)


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class SchemaOutOfDate(StoreError):
    """The database schema is not at this version's head: run `spinedecomp db upgrade`."""


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
