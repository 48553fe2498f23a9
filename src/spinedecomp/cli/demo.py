"""`spinedecomp demo`: the main job of `make run` - a full simulated lumbar session for an 80 kg
patient on the embedded defaults, with progress, and where to find the report."""

from __future__ import annotations

from pathlib import Path

import typer

from spinedecomp.cli.common import out
from spinedecomp.cli.session import print_summary, run_with_progress, write_outputs
from spinedecomp.control.library import get_protocol
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.summary import summarize


def demo(
    out_dir: Path = typer.Option(Path("reports/demo"), "--out", help="Where the report goes."),
    weight_kg: float = typer.Option(80.0, "--weight-kg"),
    protocol: str = typer.Option("lumbar-intermittent", "--protocol"),
) -> None:
    """Run a full simulated lumbar session and write its report."""
    spec = SessionSpec(protocol=get_protocol(protocol), body_weight_kg=weight_kg)
    engine = build_engine(spec)
    engine.setup(confirm_high_force=True)
    out.print(f"[bold]spinedecomp demo[/]: {protocol}, {weight_kg:g} kg patient, simulated table, "
              f"{spec.rate_hz:g} Hz control")
    run_with_progress(engine, quiet=False)
    summary = summarize(engine.result(), engine.resolved)
    outputs = write_outputs(summary, engine, out_dir, "parquet")
    print_summary(summary)
    out.print(f"\n[bold]Report[/]: {outputs.plot}\n  telemetry {outputs.telemetry}\n"
              f"  summary {outputs.summary}")


def register(app: typer.Typer) -> None:
    """Add `demo` to the main app."""
    app.command("demo")(demo)
