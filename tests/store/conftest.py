"""Store fixtures: every repository test runs on SQLite and on a real PostgreSQL server
started here (``tests/pgserver.py``), skipped only when the server binaries are missing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spinedecomp.store import migrate
from spinedecomp.store.api import Store
from spinedecomp.store.db import create_db_engine
from spinedecomp.store.settings import StoreSettings
from tests.pgserver import MISSING_REASON, PgServer, start_server

TEMPLATE = "spinedecomp_head"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throw-away PostgreSQL server for the whole test run."""
    try:
        server = start_server({"fsync": "off", "synchronous_commit": "off",
                               "full_page_writes": "off", "max_connections": "200"})
    except FileNotFoundError:
        pytest.skip(MISSING_REASON)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database at schema head, copied (CREATE DATABASE ... TEMPLATE) for each test."""
    url = pg_server.create_database(TEMPLATE)
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return TEMPLATE


def new_pg_database(pg_server: PgServer, template: str | None = None) -> tuple[str, str]:
    """A fresh database (name, url)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    return name, pg_server.create_database(name, template=template)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_name(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both engines."""
    return str(request.param)


@pytest.fixture
def db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database URL on the engine under test (PostgreSQL: already at head)."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    template: str = request.getfixturevalue("pg_template")
    name, url = new_pg_database(server, template)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> StoreSettings:
    """Settings pointing at the test database and a private data dir."""
    return StoreSettings(database_url=db_url, data_dir=tmp_path / "data", chunk_s=10.0)


@pytest.fixture
def store(settings: StoreSettings) -> Iterator[Store]:
    """An open store at schema head."""
    s = Store.open(settings, migrate_schema=True)
    try:
        yield s
    finally:
        s.close()
