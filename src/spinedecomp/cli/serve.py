"""`spinedecomp serve [--host H] [--port P] [--demo]`: the clinic dashboard.

``--demo`` (what `make run` uses) runs on the simulated table with the default secret and
creates, once, a demo clinic in the default store: an admin, a clinician and a front-desk
account with the demo passwords printed below, and the demo patient with a screening. Outside
demo mode a default secret is refused (set ``SPINEDECOMP_WEB_SECRET_KEY``).
"""

from __future__ import annotations

import logging

import typer
from pydantic import ValidationError

from spinedecomp.cli.common import fail, out
from spinedecomp.web.settings import InsecureSettings, WebSettings

log = logging.getLogger(__name__)

# Demo mode only: fixed so that a second `make run` can print them again (hashes cannot be).
DEMO_USERS = (("admin", "admin", "Demo Admin", "admin-demo-pass"),
              ("clinician", "clinician", "Demo Clinician", "clinician-demo-pass"),
              ("frontdesk", "front-desk", "Demo Front Desk", "frontdesk-demo-pass"))


def ensure_demo_clinic() -> None:
    """Create the demo accounts and patient if they are missing (idempotent)."""
    from spinedecomp.cli.db import open_store
    from spinedecomp.cli.demo import store_demo_records
    from spinedecomp.web.auth import Role, UserIn, UserStore

    with open_store() as store:
        users = UserStore(store)
        for name, role, full, password in DEMO_USERS:
            if users.by_name(name) is None:
                users.add(UserIn(username=name, role=Role(role), full_name=full, password=password),
                          actor="serve --demo", reason="demo clinic")
    store_demo_records(80.0)


def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8000)."),
    demo: bool = typer.Option(False, "--demo", help="Demo clinic on the simulated table."),
) -> None:
    """Start the clinic dashboard."""
    import uvicorn

    from spinedecomp.web.app import create_app

    overrides: dict[str, object] = {"demo": True} if demo else {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        settings = WebSettings(**overrides)  # type: ignore[arg-type]
    except (InsecureSettings, ValidationError) as exc:
        fail(str(exc).splitlines()[0] if isinstance(exc, InsecureSettings) else str(exc))
    if settings.demo:
        ensure_demo_clinic()
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}/"
    out.print(f"[bold]spinedecomp dashboard[/] at [link={url}]{url}[/link]"
              + (" — DEMO: simulated table, not for patients" if settings.demo else ""))
    if settings.demo:
        out.print("First login: open the URL and log in as one of the demo accounts:")
        for name, role, _full, password in DEMO_USERS:
            out.print(f"  {name:10s} {password:22s} ({role})")
        out.print("As [bold]clinician[/]: Live session -> tick the two set-up checks -> Start.")
    else:
        out.print("First login: create an admin with `spinedecomp user add NAME --role admin` "
                  "if you have not yet.")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", ws="websockets")


def register(app: typer.Typer) -> None:
    """Add `serve` to the main app."""
    app.command("serve")(serve)
