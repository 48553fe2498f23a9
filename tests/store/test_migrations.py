"""Migrations: empty -> head, down one step and back, on both engines; models == migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from spinedecomp.store import migrate
from spinedecomp.store.api import SchemaOutOfDate, Store
from spinedecomp.store.db import create_db_engine
from spinedecomp.store.models import Base
from spinedecomp.store.settings import StoreSettings
from tests.pgserver import PgServer
from tests.store.conftest import new_pg_database


@pytest.fixture
def empty_engine(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on an empty database."""
    if engine_name == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
        yield engine
        engine.dispose()
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name, url = new_pg_database(server)
    engine = create_db_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        server.drop_database(name)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_upgrade_downgrade_upgrade(empty_engine: Engine) -> None:
    head = migrate.head_revision()
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == head
    assert _tables(empty_engine) == set(Base.metadata.tables)
    assert _diff(empty_engine) == []  # the migrations build exactly what models.py declares
    migrate.downgrade(empty_engine, "-1")
    assert migrate.current_revision(empty_engine) == "0001"
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == head
    assert _diff(empty_engine) == []
    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) == set()


def test_store_open_upgrades_sqlite_but_not_postgresql(engine_name: str, empty_engine: Engine,
                                                       tmp_path: Path) -> None:
    url = empty_engine.url.render_as_string(hide_password=False)
    settings = StoreSettings(database_url=url, data_dir=tmp_path / "data")
    if engine_name == "postgresql":
        with pytest.raises(SchemaOutOfDate, match="spinedecomp db upgrade"):
            Store.open(settings)
        settings = settings.model_copy(update={"auto_migrate": True})
    with Store.open(settings) as store:
        assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x' / 'p.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


def test_default_location_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPINEDECOMP_DATABASE_URL", raising=False)
    monkeypatch.delenv("SPINEDECOMP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert StoreSettings().url == f"sqlite:///{tmp_path / 'xdg' / 'spinedecomp' / 'spinedecomp.sqlite'}"
    monkeypatch.setenv("SPINEDECOMP_DATA_DIR", str(tmp_path / "d"))
    assert StoreSettings().url == f"sqlite:///{tmp_path / 'd' / 'spinedecomp.sqlite'}"
    monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", "postgresql://u@db.example/clinic")
    assert StoreSettings().url == "postgresql://u@db.example/clinic"
