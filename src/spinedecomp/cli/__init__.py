"""Command-line interface (typer + rich): the edge where people drive spinedecomp."""
