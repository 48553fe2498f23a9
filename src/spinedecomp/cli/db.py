"""`spinedecomp db upgrade|status`, and how every CLI command opens the store.

The database is SQLite in the data directory unless ``SPINEDECOMP_DATABASE_URL`` names
another (``postgresql://user@host/db`` for a clinic's server); see docs/store.md.
"""

from __future__ import annotations

import getpass
import os

import typer

from spinedecomp.cli.common import err, fail, out, print_json
from spinedecomp.store import migrate
from spinedecomp.store.api import SchemaOutOfDate, Store, StoreUnavailable
from spinedecomp.store.db import create_db_engine
from spinedecomp.store.repositories import StoreError
from spinedecomp.store.settings import StoreSettings

db_app = typer.Typer(help="The clinic database (SQLite by default, PostgreSQL by URL).",
                     no_args_is_help=True)


def cli_actor() -> str:
    """Who the audit log records for changes made from the command line:
    ``SPINEDECOMP_USER`` if set, else ``cli:<login name>``."""
    user = os.environ.get("SPINEDECOMP_USER", "").strip()
    if user:
        return user
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def open_store(*, migrate_schema: bool | None = None) -> Store:
    """Open the configured store (upgrading embedded SQLite, running start-up recovery), or
    exit with a clear message."""
    try:
        store = Store.open(StoreSettings(), migrate_schema=migrate_schema)
    except (StoreUnavailable, SchemaOutOfDate) as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(f"store: {exc}")
    rec = store.recovery
    if rec is not None:
        for sid in rec.replayed:
            err.print(f"[yellow]session {sid}: telemetry spooled during a database outage was "
                      "written[/]")
        for sid in rec.aborted:
            err.print(f"[yellow]session {sid}: its process ended unexpectedly; marked aborted "
                      "(telemetry kept up to the crash)[/]")
    return store


@db_app.command("upgrade")
def upgrade() -> None:
    """Create or upgrade the schema to this version's head (then run start-up recovery)."""
    settings = StoreSettings()
    engine = create_db_engine(settings.url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    except Exception as exc:
        fail(f"cannot upgrade {settings.url}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    out.print(f"database {engine.url.render_as_string(hide_password=True)}: schema "
              f"{before or 'empty'} -> {after}" if before != after else
              f"database {engine.url.render_as_string(hide_password=True)}: schema at {after} "
              "(up to date)")
    open_store(migrate_schema=False).close()


@db_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Where the database is and which schema revision it holds."""
    settings = StoreSettings()
    engine = create_db_engine(settings.url)
    try:
        current = migrate.current_revision(engine)
    except Exception as exc:
        fail(f"cannot reach {engine.url.render_as_string(hide_password=True)}: "
             f"{str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    info = {"url": engine.url.render_as_string(hide_password=True), "dialect": engine.dialect.name,
            "revision": current, "head": migrate.head_revision(),
            "up_to_date": current == migrate.head_revision(), "data_dir": str(settings.data_dir)}
    if as_json:
        print_json(info)
        return
    out.print(f"database {info['url']} ({info['dialect']}); schema {current or 'empty'}, head "
              f"{info['head']}" + ("" if info["up_to_date"] else " - run `spinedecomp db upgrade`"))
    out.print(f"data directory {info['data_dir']}")


def register(app: typer.Typer) -> None:
    """Add `db` to the main app."""
    app.add_typer(db_app, name="db")
