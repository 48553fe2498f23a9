"""Helpers shared by the CLI commands: consoles, error exits, JSON output."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

from pydantic import BaseModel
from rich.console import Console

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error (no traceback) and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


def print_json(obj: BaseModel | list[BaseModel] | object) -> None:
    """Print one JSON document on stdout."""
    if isinstance(obj, BaseModel):
        sys.stdout.write(obj.model_dump_json(indent=2) + "\n")
    elif isinstance(obj, list) and all(isinstance(o, BaseModel) for o in obj):
        sys.stdout.write(json.dumps([o.model_dump(mode="json") for o in obj], indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
