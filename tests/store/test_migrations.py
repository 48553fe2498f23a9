"""Migrations: empty -> head, down one step and back, on both engines; models == migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

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
    previous = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(head).down_revision
    assert previous is not None
    assert migrate.current_revision(empty_engine) == previous
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == head
    assert _diff(empty_engine) == []
    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) == set()


# The table the web layer created for itself (``MetaData.create_all``) before revision 0003.
LEGACY_WEB_USER = """CREATE TABLE web_user (id {pk}, username VARCHAR(64) NOT NULL UNIQUE,
    full_name VARCHAR(200) NOT NULL, role VARCHAR(16) NOT NULL,
    password_hash VARCHAR(256) NOT NULL, active BOOLEAN NOT NULL, created_at {ts} NOT NULL)"""


def test_0003_adopts_the_web_layers_own_user_table(engine_name: str, empty_engine: Engine) -> None:
    """A clinic whose dashboard created ``web_user`` before 0003 keeps its accounts (same ids,
    so the audit log still points at them), and new accounts get fresh ids."""
    migrate.upgrade(empty_engine, "0002")
    pg = engine_name == "postgresql"
    with empty_engine.begin() as conn:
        conn.execute(text(LEGACY_WEB_USER.format(
            pk="SERIAL PRIMARY KEY" if pg else "INTEGER NOT NULL PRIMARY KEY",
            ts="TIMESTAMP WITH TIME ZONE" if pg else "DATETIME")))
        conn.execute(text("INSERT INTO web_user VALUES (7, 'dr.lee', 'Dr Lee', 'clinician', "
                          "'$argon2id$x', true, '2026-01-02 03:04:05')"))
    migrate.upgrade(empty_engine)
    assert "web_user" not in _tables(empty_engine)
    assert _diff(empty_engine) == []
    with Store(empty_engine, StoreSettings(database_url=str(empty_engine.url))).unit("t") as uow:
        old = uow.users.get(7)
        assert (old.username, old.full_name, old.role, old.active) == ("dr.lee", "Dr Lee",
                                                                      "clinician", True)
        assert old.created_at.tzinfo is not None
        new = uow.users.add(username="desk", role="front-desk", password_hash="h")
        assert new.id > 7
    migrate.downgrade(empty_engine, "0002")  # back: the accounts return to web_user
    with empty_engine.connect() as conn:
        names = conn.execute(text("SELECT username FROM web_user ORDER BY id")).scalars().all()
    assert names == ["dr.lee", "desk"]
    assert "users" not in _tables(empty_engine)


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
        # rollback journal, nothing memory-mapped: no -shm file to SIGBUS on (db.py)
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "truncate"
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == 0
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
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
