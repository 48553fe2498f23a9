"""`spinedecomp user add|list`: dashboard accounts (the first admin is made here)."""

from __future__ import annotations

import getpass

import typer
from pydantic import ValidationError

from spinedecomp.cli.common import fail, out
from spinedecomp.cli.db import cli_actor, open_store
from spinedecomp.store.repositories import StoreError
from spinedecomp.web.auth import Role, UserIn, UserStore

user_app = typer.Typer(help="Dashboard accounts (clinician, front-desk, admin).",
                       no_args_is_help=True)


@user_app.command("add")
def add(
    username: str = typer.Argument(..., help="Login name (lower case)."),
    role: Role = typer.Option(..., "--role", help="clinician, front-desk or admin."),
    full_name: str = typer.Option("", "--name", help="Full name."),
    password: str | None = typer.Option(None, "--password", help="Asked for when not given "
                                        "(better: it stays out of the shell history)."),
) -> None:
    """Create an account (audit-logged)."""
    if password is None:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            fail("the passwords differ")
    try:
        new = UserIn(username=username, role=role, full_name=full_name, password=password)
    except ValidationError as exc:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    with open_store() as store:
        try:
            u = UserStore(store).add(new, actor=cli_actor(), reason="spinedecomp user add")
        except StoreError as exc:
            fail(str(exc))
    out.print(f"user {u.username} ({u.role.value}) added")


@user_app.command("list")
def list_users() -> None:
    """List accounts."""
    with open_store() as store:
        for u in UserStore(store).all():
            out.print(f"{u.id:3d} {u.username:20s} {u.role.value:11s} "
                      f"{'active' if u.active else 'disabled'}  {u.full_name}")


def register(app: typer.Typer) -> None:
    """Add `user` to the main app."""
    app.add_typer(user_app, name="user")
