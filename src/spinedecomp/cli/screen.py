"""`spinedecomp screen INTAKE.yaml [--json]`: screen an intake file and print the report.

The command reads one YAML intake, validates it (errors name the field), and prints the
candidacy decision, pathway, course plan, cost estimate and patient-facing summary. With
``--json`` it prints exactly one JSON object on stdout (the report, or an error object).
Bad input never produces a traceback: the command prints a clear error and exits with
status 2 (usage/input error) or 1 (unexpected internal error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.report import ClinicReport, build_report

__all__ = ["EXIT_INPUT_ERROR", "EXIT_INTERNAL_ERROR", "register", "screen"]

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 1

_STATUS_STYLE = {
    "candidate": "bold green",
    "not_a_candidate": "bold red",
    "needs_more_information": "bold yellow",
    "urgent_referral": "bold white on red",
}


class _InputError(Exception):
    """An intake file that cannot be used, with the lines to show the user."""

    def __init__(self, title: str, details: list[str]) -> None:
        super().__init__(title)
        self.title = title
        self.details = details


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def validation_messages(error: ValidationError) -> list[str]:
    """One ``field: message`` line per validation error."""
    return [f"{_format_location(e['loc'])}: {e['msg']}" for e in error.errors()]


def load_intake(path: Path) -> Intake:
    """Read and validate an intake YAML file (``_InputError`` on any problem)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _InputError(f"intake file not found: {path}", []) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _InputError(f"cannot read intake file {path}", [str(exc)]) from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _InputError(f"{path} is not valid YAML", [str(exc).replace("\n", " ")]) from None
    if not isinstance(data, dict):
        raise _InputError(f"{path} must hold a YAML mapping of intake fields", [])
    try:
        return Intake.model_validate(data)
    except ValidationError as exc:
        raise _InputError(f"invalid intake in {path}", validation_messages(exc)) from None


def _print_report(console: Console, report: ClinicReport) -> None:
    decision = report.decision
    style = _STATUS_STYLE.get(decision.status.value, "bold")
    console.print(
        f"[bold]Patient[/bold] {escape(report.patient_id)}  "
        f"[bold]Region[/bold] {report.region.value}  "
        f"[bold]Symptoms[/bold] {report.chronicity.value}  "
        f"[bold]Knowledge[/bold] {report.knowledge_status}"
    )
    scores = f"NPRS {report.scores.nprs}/10"
    if report.scores.odi is not None:
        scores += f", ODI {report.scores.odi.percent:g}% ({report.scores.odi.band})"
    if report.scores.ndi is not None:
        ndi = report.scores.ndi
        scores += f", NDI {ndi.points:g}/50 = {ndi.percent:g}% ({ndi.band})"
    console.print(f"[bold]Baseline[/bold] {scores}")
    console.print()
    console.print(f"Decision: [{style}]{decision.status.value.replace('_', ' ')}[/{style}]")
    # A list rather than a table: rule ids and citations stay whole in narrow terminals.
    for reason in decision.reasons:
        console.print(
            f"  {escape(f'[{reason.effect.value}]')} [bold]{reason.rule_id}[/bold]: "
            f"{escape(reason.message)}"
        )
        console.print(f"      [dim]cites: {escape('; '.join(reason.citation))}[/dim]")
    console.print(f"\n[bold]Pathway:[/bold] {report.pathway.kind.value.replace('_', ' ')}")
    for step in report.pathway.steps:
        mark = "" if step.applicable else " [dim](only if applicable)[/dim]"
        console.print(f"  {step.order}. {escape(step.text)}{mark}")
    if report.plan is not None:
        plan = report.plan
        sp = plan.starting_protocol
        console.print(
            f"\n[bold]Course plan:[/bold] {plan.sessions} sessions over {plan.weeks} weeks "
            f"({plan.severity.value}, {plan.chronicity.value}); per week: "
            + ", ".join(str(w.sessions) for w in plan.frequency)
        )
        console.print(
            f"  Session 1: {sp.protocol_name}, max {sp.max_force_lb:g} lb ({sp.max_force_n:g} N), "
            f"rest {sp.rest_force_lb:g} lb ({sp.rest_force_n:g} N), hold {sp.hold_s:g} s / "
            f"rest {sp.rest_s:g} s, angle {sp.angle_deg:g} deg, {sp.duration_min:g} min; "
            f"force ceiling {plan.force_ceiling_lb:g} lb ({plan.force_ceiling_n:g} N)"
        )
        for cp in plan.checkpoints:
            when = f"after session {cp.after_session}" if cp.after_session else f"week {cp.week}"
            dated = f" (due {cp.due_on.isoformat()})" if cp.due_on else ""
            console.print(f"  {cp.kind.value}: {when}{dated}: {', '.join(cp.measures)}")
        if plan.pt_course is not None:
            console.print(
                f"  Then physical therapy: {plan.pt_course.sessions} sessions over "
                f"{plan.pt_course.weeks} weeks"
            )
    if report.cost is not None:
        cost = report.cost
        console.print(f"\n[bold]Cost estimate[/bold] ({cost.payer.value}: {cost.coverage.value})")
        ctable = Table("provider", "sessions", "per session", "course (out of pocket)")
        for p in cost.providers:
            sessions = (
                str(p.sessions_low)
                if p.sessions_low == p.sessions_high
                else f"{p.sessions_low}-{p.sessions_high}"
            )
            ctable.add_row(
                p.provider.value,
                sessions,
                f"${p.out_of_pocket_per_session_low}-${p.out_of_pocket_per_session_high}",
                f"${p.out_of_pocket_course_low:,}-${p.out_of_pocket_course_high:,}",
            )
        console.print(ctable)
        console.print("  Codes: " + ", ".join(f"{b.system} {b.code}" for b in cost.billing_codes))
        for reason in cost.reasons:
            console.print(f"  - {escape(reason.message)}")
    console.print("\n[bold]Patient summary[/bold]")
    console.print(escape(report.summary.render_text()))


def screen(
    intake: Annotated[Path, typer.Argument(help="Intake YAML file.", show_default=False)],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    patient: Annotated[
        str | None,
        typer.Option("--patient", help="Store the intake, decision, plan and cost estimate "
                     "for this patient (id or clinic code)."),
    ] = None,
) -> None:
    """Screen a patient intake: decision, pathway, plan, cost and patient summary."""
    out = Console(soft_wrap=False)
    err = Console(stderr=True)
    try:
        report = build_report(load_intake(intake))
    except _InputError as exc:
        if json_output:
            typer.echo(json.dumps({"error": exc.title, "details": exc.details}))
        else:
            err.print(f"[bold red]error:[/bold red] {escape(exc.title)}")
            for line in exc.details:
                err.print(f"  {escape(line)}")
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    except Exception as exc:  # the CLI edge must never show a traceback
        message = f"internal error while screening {intake}: {type(exc).__name__}: {exc}"
        if json_output:
            typer.echo(json.dumps({"error": message, "details": []}))
        else:
            err.print(f"[bold red]error:[/bold red] {escape(message)}")
        raise typer.Exit(EXIT_INTERNAL_ERROR) from None
    if patient is not None:
        _store(patient, intake, report, err)
    if json_output:
        typer.echo(json.dumps(report.model_dump(mode="json")))
    else:
        _print_report(out, report)


def _store(patient: str, intake_path: Path, report: ClinicReport, err: Console) -> None:
    """Store the screening for a patient (audited); exits with a clear message on failure."""
    from spinedecomp.cli.db import cli_actor, open_store
    from spinedecomp.cli.patient import find_patient, store_screening

    intake = load_intake(intake_path)
    with open_store() as store, store.unit(cli_actor()) as uow:
        p = find_patient(uow, patient)
        ids = store_screening(uow, p.id, intake, report,
                              reason=f"screened from {intake_path.name}")
    err.print(f"stored for patient {p.code}: intake {ids.intake_id}, decision {ids.decision_id}"
              + (f", plan {ids.plan_id}" if ids.plan_id else "")
              + (f", cost estimate {ids.cost_id}" if ids.cost_id else ""))


def register(app: typer.Typer) -> None:
    """Add the ``screen`` command to ``app`` (idempotent: registering twice is a no-op)."""
    if any(
        info.name == "screen" or getattr(info.callback, "__name__", None) == "screen"
        for info in app.registered_commands
    ):
        return
    app.command(name="screen")(screen)
