"""`spinedecomp session list|show|export`: sessions as stored in the clinic database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import typer
from pydantic import BaseModel
from rich.table import Table

from spinedecomp.cli.common import fail, out, print_json
from spinedecomp.cli.db import cli_actor, open_store
from spinedecomp.cli.patient import find_patient
from spinedecomp.cli.session import session_app
from spinedecomp.reports.export import write_telemetry
from spinedecomp.reports.plot import plot_session
from spinedecomp.session.summary import AlarmOut, EventOut
from spinedecomp.store.repositories import (
    AlarmRecord,
    EventRecord,
    NotFound,
    SessionRecord,
    TelemetryStats,
    WindowRecord,
)


class SessionListItem(BaseModel):
    """One line of ``session list --json``."""

    id: int
    patient_id: int
    patient_code: str
    protocol: str
    region: str
    state: str
    abort_reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    samples: int
    alarms: int


class SessionDetail(BaseModel):
    """``session show --json``."""

    session: SessionRecord
    patient_code: str
    events: list[EventRecord]
    alarms: list[AlarmRecord]
    windows: list[WindowRecord]
    telemetry: list[TelemetryStats]


@session_app.command("list")
def list_sessions(
    patient: str | None = typer.Option(None, "--patient", help="Only this patient (id or code)."),
    state: str | None = typer.Option(None, "--state", help="completed, aborted, running..."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Stored sessions, newest first."""
    with open_store() as store, store.unit(cli_actor()) as uow:
        pid = find_patient(uow, patient).id if patient else None
        sessions = uow.sessions.all(patient_id=pid, state=state, limit=limit)
        codes = {p.id: p.code for p in uow.patients.all()}
        items = [SessionListItem(
            id=s.id, patient_id=s.patient_id, patient_code=codes.get(s.patient_id, "?"),
            protocol=s.protocol_name, region=s.region, state=s.state, abort_reason=s.abort_reason,
            created_at=s.created_at, started_at=s.started_at, ended_at=s.ended_at,
            duration_s=s.last_t, samples=s.samples, alarms=len(uow.sessions.alarms(s.id)))
            for s in sessions]
    if as_json:
        print_json(items)
        return
    table = Table("id", "patient", "protocol", "when", "length", "state", "alarms")
    for i in items:
        colour = {"completed": "green", "aborted": "red"}.get(i.state, "yellow")
        table.add_row(str(i.id), i.patient_code, i.protocol, f"{i.created_at:%Y-%m-%d %H:%M}",
                      f"{(i.duration_s or 0.0) / 60.0:.1f} min", f"[{colour}]{i.state}[/]"
                      + (f" ({i.abort_reason})" if i.abort_reason else ""), str(i.alarms))
    out.print(table)


def _get(ref: int) -> tuple[SessionDetail, np.ndarray]:
    with open_store() as store, store.unit(cli_actor()) as uow:
        try:
            s = uow.sessions.get(ref)
        except NotFound:
            fail(f"no session {ref} (`spinedecomp session list`)")
        detail = SessionDetail(session=s, patient_code=uow.patients.get(s.patient_id).code,
                               events=uow.sessions.events(ref), alarms=uow.sessions.alarms(ref),
                               windows=uow.sessions.windows(ref), telemetry=uow.telemetry.stats(ref))
        clinical = uow.telemetry.clinical(ref)
    return detail, clinical


@session_app.command("show")
def show(
    session_id: int = typer.Argument(..., help="Session id."),
    plot: bool = typer.Option(False, "--plot", help="Write a PNG of the clinical record."),
    out_dir: Path = typer.Option(Path("reports"), "--out", help="Where --plot writes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A stored session: protocol, end, summary numbers, events, alarms, black-box windows."""
    d, clinical = _get(session_id)
    s = d.session
    png: Path | None = None
    if plot:
        summary = s.summary or {}
        png = plot_session(clinical, out_dir / f"session-{s.id}.png",
                           title=f"session {s.id} - {s.protocol_name} - {d.patient_code} - {s.state}",
                           events=[EventOut.model_validate(e) for e in summary.get("events", [])],
                           alarms=[AlarmOut.model_validate(a) for a in summary.get("alarms", [])])
    if as_json:
        print_json(d)
        return
    colour = {"completed": "green", "aborted": "red"}.get(s.state, "yellow")
    out.print(f"[bold]session {s.id}[/]: {s.protocol_name} ({s.region}, {s.mode}) for patient "
              f"{d.patient_code}, {s.body_weight_kg:g} kg: [{colour}]{s.state}[/]"
              + (f" - {s.abort_reason}" if s.abort_reason else ""))
    out.print(f"  created {s.created_at:%Y-%m-%d %H:%M:%S} by {s.created_by} on {s.host}; "
              f"{s.samples} samples at {s.rate_hz:g} Hz up to t={s.last_t or 0.0:.3f} s")
    if s.summary:
        sm = s.summary
        out.print(f"  peak force {sm.get('peak_force_n')} N, cap {sm.get('cap_n')} N, hold RMS error "
                  f"{sm.get('hold_rms_error_pct')}%, cycles {sm.get('cycles')}")
    for ts in d.telemetry:
        out.print(f"  telemetry {ts.stream}: {ts.rows} rows in {ts.chunks} chunks, "
                  f"{ts.bytes / 1024:.0f} KiB")
    for w in d.windows:
        out.print(f"  black box {w.t_from:.1f}-{w.t_to:.1f} s: {w.label}")
    for a in d.alarms:
        out.print(f"  [red]ALARM {a.priority.upper()}[/] t={a.t:.3f}s {a.kind}: {a.condition}"
                  + (f" (acknowledged by {a.acknowledged_by})" if a.acknowledged else ""))
    for e in d.events:
        out.print(f"  t={e.t:9.3f}s {e.kind:<10} {e.reason}")
    if png:
        out.print(f"  plot: {png}")


@session_app.command("export")
def export(
    session_id: int = typer.Argument(..., help="Session id."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    stream: str = typer.Option("clinical", "--stream",
                               help="clinical (the stored record, e.g. 100 Hz) or blackbox "
                                    "(full-rate rows of every black-box window)."),
    out_path: Path | None = typer.Option(None, "--out", help="File (default session-ID-STREAM.FMT)."),
) -> None:
    """Export a stored session's telemetry."""
    if fmt not in ("csv", "parquet"):
        fail(f"--format must be csv or parquet, got '{fmt}'")
    if stream not in ("clinical", "blackbox"):
        fail(f"--stream must be clinical or blackbox, got '{stream}'")
    with open_store() as store, store.unit(cli_actor()) as uow:
        try:
            uow.sessions.get(session_id)
        except NotFound:
            fail(f"no session {session_id} (`spinedecomp session list`)")
        rows = (uow.telemetry.clinical(session_id) if stream == "clinical"
                else uow.telemetry.fullrate(session_id))
    path = write_telemetry(rows, out_path or Path(f"session-{session_id}-{stream}.{fmt}"), fmt)
    out.print(f"session {session_id}: {rows.shape[0]} {stream} rows written to {path}")


def register(app: typer.Typer) -> None:
    """Nothing to add to the main app: importing this module adds `list`, `show` and `export`
    to `session` (kept apart from `session simulate` so the two can change independently)."""
    del app
