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
    from spinedecomp.cli import screen

    screen.register(app)


def main() -> None:
    """Entry point of the `spinedecomp` console script."""
    _register_all()
    app()
