"""`spinedecomp protocol list|show|validate`."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel
from rich.table import Table as RichTable

from spinedecomp.cli.common import fail, out, print_json
from spinedecomp.control.library import builtin_protocols, get_protocol
from spinedecomp.control.protocol import Protocol, load_protocol_file, resolve
from spinedecomp.core.errors import ProtocolError
from spinedecomp.core.units import n_to_lb

protocol_app = typer.Typer(help="Treatment protocols: the built-in library and your own files.",
                           no_args_is_help=True)


class ProtocolListItem(BaseModel):
    """One protocol in `protocol list --json`."""

    name: str
    region: str
    mode: str
    use_case: str
    max_force: str
    hold_s: float
    rest_s: float
    duration_min: float
    source: str


def load_any(name_or_file: str) -> Protocol:
    """A built-in protocol by name, or a protocol file (YAML/JSON) by path."""
    path = Path(name_or_file)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise ProtocolError("protocol", f"file {path} does not exist")
        return load_protocol_file(path)
    return get_protocol(name_or_file)


@protocol_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the built-in protocols."""
    items = [ProtocolListItem(name=p.name, region=p.region.value, mode=p.mode.value,
                              use_case=p.use_case, max_force=p.max_force.describe(),
                              hold_s=p.hold_s, rest_s=p.rest_s, duration_min=p.duration_min,
                              source=p.source)
             for p in builtin_protocols().values()]
    if as_json:
        print_json(items)
        return
    t = RichTable(title="Built-in protocols")
    for col in ("name", "region", "mode", "max force", "hold/rest s", "min", "use case"):
        t.add_column(col)
    for i in items:
        t.add_row(i.name, i.region, i.mode, i.max_force, f"{i.hold_s:g}/{i.rest_s:g}",
                  f"{i.duration_min:g}", i.use_case)
    out.print(t)


@protocol_app.command("show")
def show(name: str, weight_kg: float = typer.Option(80.0, "--weight-kg",
                                                    help="Resolve forces for this weight."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a protocol and its forces for a patient weight."""
    try:
        p = load_any(name)
        r = resolve(p, weight_kg)
    except ProtocolError as exc:
        fail(str(exc))
    if as_json:
        print_json(r)
        return
    out.print(p.model_dump(mode="json"))
    out.print(f"For {weight_kg:g} kg: max {r.max_force_n:.0f} N ({n_to_lb(r.max_force_n):.0f} lb), "
              f"rest {r.rest_force_n:.0f} N ({n_to_lb(r.rest_force_n):.0f} lb), "
              f"cap {r.cap_n:.0f} N ({n_to_lb(r.cap_n):.0f} lb)")


@protocol_app.command("validate")
def validate(file: Path, weight_kg: float = typer.Option(80.0, "--weight-kg")) -> None:
    """Validate a protocol file; exits non-zero with the field and allowed range if invalid."""
    try:
        p = load_protocol_file(file)
        resolve(p, weight_kg)
    except ProtocolError as exc:
        fail(f"{file}: {exc}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror}")
    out.print(f"[green]valid[/]: {p.name} ({p.region.value}, {p.mode.value})")


def register(app: typer.Typer) -> None:
    """Add `protocol` to the main app."""
    app.add_typer(protocol_app, name="protocol")
