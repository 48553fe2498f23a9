"""The `spinedecomp` command: one typer app, sub-commands registered by their own modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="spinedecomp",
    help="Open software for non-surgical spinal decompression therapy.",
    no_args_is_help=True,
    add_completion=False,
)


def _register_all() -> None:
    # Each sub-command lives in its own module and registers itself here, so that
    # parallel work on different commands never edits the same lines.
    from spinedecomp.cli import demo as demo_cli
    from spinedecomp.cli import protocol as protocol_cli
    from spinedecomp.cli import screen
    from spinedecomp.cli import session as session_cli

    demo_cli.register(app)
    protocol_cli.register(app)
    session_cli.register(app)
    screen.register(app)
    from spinedecomp.cli import device as device_cli

    device_cli.register(app)
    # store: db upgrade|status, patient add|list|show, session list|show|export
    from spinedecomp.cli import db as db_cli
    from spinedecomp.cli import patient as patient_cli
    from spinedecomp.cli import sessions_store

    db_cli.register(app)
    patient_cli.register(app)
    sessions_store.register(app)
    # web: serve (the dashboard), user add|list
    from spinedecomp.cli import serve as serve_cli
    from spinedecomp.cli import user as user_cli

    serve_cli.register(app)
    user_cli.register(app)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log info lines.")) -> None:
    import logging

    from rich.logging import RichHandler

    from spinedecomp.cli.common import err

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)


def main() -> None:
    """Entry point of the `spinedecomp` console script."""
    _register_all()
    app()
