"""`spinedecomp patient add|list|show`, and storing a screening (intake, decision, plan,
cost estimate) for a patient, used by `spinedecomp screen --patient` and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from spinedecomp.cli.common import fail, out, print_json
from spinedecomp.cli.db import cli_actor, open_store
from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.report import ClinicReport
from spinedecomp.store.repositories import (
    CostRecord,
    DecisionRecord,
    IntakeRecord,
    NotFound,
    OutcomeRecord,
    PatientIn,
    PatientRecord,
    PlanRecord,
    SessionRecord,
    StoreError,
    UnitOfWork,
    VisitRecord,
)

patient_app = typer.Typer(help="Patients in the clinic database.", no_args_is_help=True)


@dataclass(frozen=True)
class StoredScreening:
    """Ids of what `store_screening` wrote."""

    intake_id: int
    decision_id: int
    plan_id: int | None
    cost_id: int | None


def store_screening(uow: UnitOfWork, patient_id: int, intake: Intake, report: ClinicReport,
                    *, reason: str | None = None) -> StoredScreening:
    """Store an intake and its screening report (decision, course plan, cost estimate) as the
    patient's clinical documents, each audited."""
    rec = uow.intakes.add(patient_id, intake, region=intake.region.value,
                          reason=reason or "intake screened")
    dec = uow.decisions.add(patient_id, report.decision, outcome=report.decision.status.value,
                            pathway=report.pathway.kind.value, intake_id=rec.id,
                            reason=reason or "screening decision")
    plan_id: int | None = None
    if report.plan is not None:
        plan = report.plan
        plan_id = uow.plans.add(patient_id, plan, decision_id=dec.id, region=plan.region.value,
                                protocol_name=plan.starting_protocol.protocol_name,
                                sessions_planned=plan.sessions,
                                reason=reason or "course plan from screening").id
    cost_id: int | None = None
    if report.cost is not None:
        cost_id = uow.costs.add(patient_id, report.cost, plan_id=plan_id, currency="USD",
                                payer=report.cost.payer.value,
                                reason=reason or "cost estimate from screening").id
    return StoredScreening(rec.id, dec.id, plan_id, cost_id)


def find_patient(uow: UnitOfWork, ref: str) -> PatientRecord:
    """A patient by id or clinic code, or exit with a clear message."""
    try:
        return uow.patients.find(ref)
    except NotFound:
        fail(f"no patient '{ref}' (give the id or the clinic code; `spinedecomp patient list`)")


@patient_app.command("add")
def add(
    code: str = typer.Option(..., "--code", help="The clinic's patient number (unique)."),
    name: str = typer.Option(..., "--name", help="Full name."),
    birth_date: str | None = typer.Option(None, "--birth-date", help="YYYY-MM-DD."),
    sex: str | None = typer.Option(None, "--sex"),
    weight_kg: float | None = typer.Option(None, "--weight-kg"),
    note: str = typer.Option("", "--note"),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new patient as JSON."),
) -> None:
    """Register a patient."""
    try:
        born = date.fromisoformat(birth_date) if birth_date else None
        new = PatientIn(code=code, name=name, birth_date=born, sex=sex, body_weight_kg=weight_kg,
                        note=note)
    except ValueError as exc:
        msg = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()) if isinstance(
            exc, ValidationError) else f"--birth-date: {exc}"
        fail(msg)
    with open_store() as store:
        try:
            with store.unit(cli_actor()) as uow:
                p = uow.patients.add(new, reason=reason)
        except StoreError as exc:
            fail(str(exc))
    if as_json:
        print_json(p)
    else:
        out.print(f"patient {p.id} added: {p.code} {p.name}")


@patient_app.command("list")
def list_patients(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Include demo patients."),
) -> None:
    """List patients."""
    with open_store() as store, store.unit(cli_actor()) as uow:
        patients = uow.patients.all(include_demo=demo)
        counts = {p.id: len(uow.sessions.all(patient_id=p.id)) for p in patients}
    if as_json:
        print_json(patients)
        return
    table = Table("id", "code", "name", "born", "sex", "kg", "sessions")
    for p in patients:
        table.add_row(str(p.id), p.code, p.name + (" (demo)" if p.is_demo else ""),
                      str(p.birth_date or ""), p.sex or "",
                      f"{p.body_weight_kg:g}" if p.body_weight_kg else "", str(counts[p.id]))
    out.print(table)


class PatientFile(BaseModel):
    """A patient with every record (``patient show --json``)."""

    patient: PatientRecord
    intakes: list[IntakeRecord]
    decisions: list[DecisionRecord]
    plans: list[PlanRecord]
    costs: list[CostRecord]
    visits: list[VisitRecord]
    outcomes: list[OutcomeRecord]
    sessions: list[SessionRecord]


@patient_app.command("show")
def show(
    ref: str = typer.Argument(..., help="Patient id or clinic code."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A patient's record: screenings, plans, cost estimates, visits, outcomes, sessions."""
    with open_store() as store, store.unit(cli_actor()) as uow:
        p = find_patient(uow, ref)
        pf = PatientFile(patient=p, intakes=uow.intakes.for_patient(p.id),
                         decisions=uow.decisions.for_patient(p.id), plans=uow.plans.for_patient(p.id),
                         costs=uow.costs.for_patient(p.id), visits=uow.visits.for_patient(p.id),
                         outcomes=uow.outcomes.for_patient(p.id),
                         sessions=list(reversed(uow.sessions.all(patient_id=p.id))))
    if as_json:
        print_json(pf)
        return
    out.print(f"[bold]{p.name}[/] ({p.code}, id {p.id})" + (" - demo patient" if p.is_demo else ""))
    details = [f"born {p.birth_date}" if p.birth_date else "", p.sex or "",
               f"{p.body_weight_kg:g} kg" if p.body_weight_kg else ""]
    if any(details):
        out.print("  " + ", ".join(d for d in details if d))
    for d in pf.decisions:
        out.print(f"  screening {d.id} on {d.decided_at:%Y-%m-%d}: {d.outcome}"
                  + (f", pathway {d.pathway}" if d.pathway else ""))
    for pl in pf.plans:
        out.print(f"  plan {pl.id}: {pl.sessions_planned or '?'} sessions, "
                  f"{pl.protocol_name or 'protocol not set'} ({pl.status})")
    for c in pf.costs:
        out.print(f"  cost estimate {c.id}" + (f" ({c.payer})" if c.payer else ""))
    for v in pf.visits:
        out.print(f"  visit {v.visit_no or v.id} on {v.visited_at:%Y-%m-%d}: {v.decision or ''}")
    for o in pf.outcomes:
        out.print(f"  outcome {o.measure} = {o.score} on {o.recorded_at:%Y-%m-%d}")
    for s in pf.sessions:
        out.print(f"  session {s.id} on {s.created_at:%Y-%m-%d %H:%M}: {s.protocol_name}, {s.state}"
                  + (f" - {s.abort_reason}" if s.abort_reason else ""))


def register(app: typer.Typer) -> None:
    """Add `patient` to the main app."""
    app.add_typer(patient_app, name="patient")
