"""`spinedecomp demo`: the main job of `make run` - a full simulated lumbar session for an 80 kg
patient on the embedded defaults, with progress, and where to find the report.

The demo also fills the clinic database (SQLite in the data directory unless configured
otherwise): a demo patient, the screening of the example intake (decision, course plan, cost
estimate) and the session itself, so `spinedecomp patient show DEMO-001` and
`spinedecomp session show N` have something to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from spinedecomp.cli.common import err, out
from spinedecomp.cli.session import (
    finish_recording,
    print_summary,
    run_with_progress,
    start_recording,
    write_outputs,
)
from spinedecomp.control.library import get_protocol
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.summary import summarize

DEMO_CODE = "DEMO-001"
DEMO_INTAKE = Path("examples") / "intakes" / "clear_candidate_lumbar.yaml"


@dataclass(frozen=True)
class DemoRecords:
    """What the demo keeps in the database before the session."""

    patient_code: str
    decision: str | None
    plan_id: int | None


def _find_intake() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / DEMO_INTAKE).is_file():
            return base / DEMO_INTAKE
    return None


def store_demo_records(weight_kg: float) -> DemoRecords:
    """The demo patient and, the first time, the screening of the example intake."""
    from spinedecomp.cli.db import cli_actor, open_store
    from spinedecomp.cli.patient import store_screening
    from spinedecomp.cli.screen import load_intake
    from spinedecomp.clinic.report import build_report
    from spinedecomp.store.repositories import NotFound, PatientIn

    with open_store() as store, store.unit(cli_actor()) as uow:
        try:
            patient = uow.patients.by_code(DEMO_CODE)
        except NotFound:
            patient = uow.patients.add(PatientIn(code=DEMO_CODE, name="Demo Patient", sex="male",
                                                 body_weight_kg=weight_kg, is_demo=True,
                                                 note="Created by `spinedecomp demo`."),
                                       reason="demo")
        plans = uow.plans.for_patient(patient.id)
        decisions = uow.decisions.for_patient(patient.id)
        if not plans:
            path = _find_intake()
            if path is None:
                err.print(f"[yellow]demo: {DEMO_INTAKE} not found; storing the session only[/]")
                return DemoRecords(patient.code, None, None)
            intake = load_intake(path).model_copy(update={"patient_id": DEMO_CODE,
                                                          "weight_kg": weight_kg})
            store_screening(uow, patient.id, intake, build_report(intake),
                            reason=f"demo: screening of {path.name}")
            plans = uow.plans.for_patient(patient.id)
            decisions = uow.decisions.for_patient(patient.id)
        return DemoRecords(patient.code, decisions[-1].outcome if decisions else None,
                           plans[-1].id if plans else None)


def demo(
    out_dir: Path = typer.Option(Path("reports/demo"), "--out", help="Where the report goes."),
    weight_kg: float = typer.Option(80.0, "--weight-kg"),
    protocol: str = typer.Option("lumbar-intermittent", "--protocol"),
    store_it: bool = typer.Option(True, "--store/--no-store",
                                  help="Keep the demo patient, screening, plan and session in the "
                                       "clinic database."),
) -> None:
    """Run a full simulated lumbar session and write its report."""
    spec = SessionSpec(protocol=get_protocol(protocol), body_weight_kg=weight_kg)
    engine = build_engine(spec)
    records = store_demo_records(weight_kg) if store_it else None
    recorder = (start_recording(engine, spec, records.patient_code, plan_id=records.plan_id)
                if records else None)
    engine.setup(confirm_high_force=True)
    out.print(f"[bold]spinedecomp demo[/]: {protocol}, {weight_kg:g} kg patient, simulated table, "
              f"{spec.rate_hz:g} Hz control")
    run_with_progress(engine, quiet=False)
    summary = summarize(engine.result(), engine.resolved)
    stored = finish_recording(recorder, engine, summary) if recorder is not None else False
    outputs = write_outputs(summary, engine, out_dir, "parquet")
    print_summary(summary)
    out.print(f"\n[bold]Report[/]: {outputs.plot}\n  telemetry {outputs.telemetry}\n"
              f"  summary {outputs.summary}")
    if records is not None and recorder is not None and stored:
        out.print(f"[bold]Stored[/] in {recorder.store.display_url}: patient {records.patient_code}"
                  + (f" (screening: {records.decision}, plan {records.plan_id})"
                     if records.plan_id else "")
                  + f", session {recorder.session_id}\n  see `spinedecomp patient show "
                  f"{records.patient_code}` and `spinedecomp session show {recorder.session_id} --plot`")


def register(app: typer.Typer) -> None:
    """Add `demo` to the main app."""
    app.command("demo")(demo)
