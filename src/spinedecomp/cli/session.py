"""`spinedecomp session simulate` (and `spinedecomp demo`): run a protocol closed-loop on the
simulated table (or a real one), show progress, write the report."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from spinedecomp.cli.common import err, fail, out, print_json
from spinedecomp.cli.protocol import load_any
from spinedecomp.core.errors import SpinedecompError
from spinedecomp.core.units import n_to_lb
from spinedecomp.reports.export import write_telemetry
from spinedecomp.reports.plot import plot_session
from spinedecomp.session.commands import parse_edit
from spinedecomp.session.engine import SessionEngine, SessionInterrupted
from spinedecomp.session.faults import parse_fault
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.summary import SessionSummary, summarize
from spinedecomp.session.telemetry import COL

if TYPE_CHECKING:
    from spinedecomp.store.recorder import SessionRecorder

session_app = typer.Typer(help="Treatment sessions.", no_args_is_help=True)

# Exit codes of `session simulate` (docs/control.md, "Exit codes"), so scripts and CI can tell
# a completed session from one that was aborted or never started. 1 is left to Python (an
# unexpected error with a traceback) and 2 is what click uses for usage errors, which invalid
# values given to the options are too.
EXIT_COMPLETED = 0
EXIT_INVALID = 2  # not started: invalid input, or table or database unreachable
EXIT_ABORTED = 3  # the session started and ended aborted (alarm, stop switch, signal)
EXIT_REFUSED = 4  # set-up refused to start (patient switch, load cells): no force applied


@dataclass
class Outputs:
    """Files a session run wrote."""

    plot: Path | None
    telemetry: Path | None
    summary: Path | None


def parse_speed(speed: str) -> float | None:
    """'max' -> None (simulated clock), 'realtime' -> 1.0, 'N' -> N x real time."""
    if speed == "max":
        return None
    if speed == "realtime":
        return 1.0
    try:
        v = float(speed)
    except ValueError:
        fail(f"--speed must be max, realtime or a number, got '{speed}'")
    if not 0.01 <= v <= 1000.0:
        fail(f"--speed must be within 0.01-1000, got {v:g}")
    return v


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SessionInterrupted("SIGTERM")


def run_with_progress(engine: SessionEngine, *, quiet: bool) -> None:
    """Run the session with a progress bar and a live force/target readout on stderr."""
    total = engine.resolved.duration_s
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        if quiet:
            engine.run()
            return
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.fields[readout]}"), TimeRemainingColumn(),
                      console=err, transient=False) as progress:
            task = progress.add_task("session", total=total, readout="")

            def update(e: SessionEngine) -> None:
                tel = e.recorder.array()
                if tel.shape[0]:
                    row = tel[-1]
                    f = 0.5 * (row[COL["force_a_n"]] + row[COL["force_b_n"]])
                    readout = (f"{e.state.value} {f:5.0f} N ({n_to_lb(f):3.0f} lb) / target "
                               f"{row[COL['target_n']]:3.0f} N, {row[COL['angle_deg']]:.0f} deg, "
                               f"cycle {int(row[COL['cycle']]) + 1}")
                else:
                    readout = e.state.value
                progress.update(task, completed=min(total, e.trajectory.tau), readout=readout)

            engine.run(progress=update)
            update(engine)
    finally:
        signal.signal(signal.SIGTERM, old)


def write_outputs(summary: SessionSummary, engine: SessionEngine, out_dir: Path | None,
                  fmt: str) -> Outputs:
    """Write the plot, telemetry and JSON summary to `out_dir`."""
    if out_dir is None:
        return Outputs(None, None, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    tel = engine.recorder.array()
    plot = plot_session(tel, out_dir / "session.png",
                        title=f"{summary.protocol} - {summary.body_weight_kg:g} kg - "
                              f"{summary.end_state}",
                        events=summary.events, alarms=summary.alarms)
    telem = write_telemetry(tel, out_dir / f"telemetry.{fmt}", fmt)
    js = out_dir / "summary.json"
    js.write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return Outputs(plot, telem, js)


def print_summary(s: SessionSummary) -> None:
    """Human summary with alarms."""
    colour = "green" if s.end_state == "completed" else "red"
    out.print(f"[bold]{s.protocol}[/] ({s.region}, {s.mode}) for {s.body_weight_kg:g} kg: "
              f"[{colour}]{s.end_state}[/]" + (f" - {s.abort_reason}" if s.abort_reason else ""))
    out.print(f"  simulated {s.simulated_s:.1f} s in {s.wall_s:.2f} s ({s.speedup:g}x), "
              f"{s.samples} samples at {s.rate_hz:g} Hz")
    out.print(f"  peak force {s.peak_force_n:.1f} N ({n_to_lb(s.peak_force_n):.1f} lb), cap "
              f"{s.cap_n:.1f} N; hold RMS error {s.hold_rms_error_pct}%, max overshoot "
              f"{s.max_overshoot_pct}%; peak distraction {s.peak_distraction_mm} mm")
    if s.guarding_episodes:
        worst = max(g.peak_excess_n for g in s.guarding)
        out.print(f"  muscle guarding: {s.guarding_episodes} episode(s) detected and backed off "
                  f"(largest {worst:.1f} N above the set-point)")
    for a in s.alarms:
        colour = {"high": "red", "medium": "yellow", "low": "cyan"}[a.priority]
        out.print(f"  [{colour}]ALARM {a.priority.upper()}[/] t={a.t:.3f}s {a.kind} "
                  f"(value {a.value}) -> {a.action}")
    if s.release_started_after_ms is not None:
        out.print(f"  release started {s.release_started_after_ms:.1f} ms after the fault; "
                  f"force below safe level after {s.force_below_safe_after_s} s")


@session_app.command("simulate")
def simulate(
    protocol: str = typer.Option(..., "--protocol", "-p", help="Built-in name or a YAML/JSON file."),
    weight_kg: float = typer.Option(..., "--weight-kg", "-w", help="Patient body weight, kg."),
    rate_hz: float | None = typer.Option(
        None, "--rate-hz", help="Control rate [default: 1000 on the simulator, 100 on a real table]."),
    speed: str = typer.Option("max", "--speed", help="max, realtime, or N x real time."),
    edit: list[str] = typer.Option([], "--edit", help="T:FIELD=VALUE or T:pause|resume|stop."),
    fault: list[str] = typer.Option([], "--fault", help="T:KIND[:ARGS], see docs/safety.md."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write plot, telemetry, summary here."),
    fmt: str = typer.Option("csv", "--format", help="Telemetry format: csv or parquet."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Load-cell noise."),
    split_table: bool = typer.Option(True, "--split-table/--fixed-table"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Confirm forces above 18 kg at set-up (else they are held)."),
    device: str = typer.Option("sim", "--device",
                               help="sim, modbus://HOST:PORT or python:MODULE:FACTORY."),
    plant_seed: int | None = typer.Option(
        None, "--plant-seed", help="Simulate a plant drawn from the family with this seed "
        "(docs/control.md, Plant family) instead of the nominal one."),
    patient: str | None = typer.Option(
        None, "--patient", help="Store the session for this patient (id or clinic code); "
        "without it the session is stored under the anonymous demo patient."),
    store_it: bool = typer.Option(True, "--store/--no-store",
                                  help="Record the session in the clinic database."),
) -> None:
    """Run a protocol closed-loop and show what happened.

    Exit codes (the --json summary is printed for 0, 3 and 5):
    0  completed
    2  not started: invalid input, or table or database unreachable
    3  aborted (alarm, patient or operator stop, signal): the table was released
    4  refused at set-up (patient switch, load cells): no force applied
    5  completed, but the record is not (all) stored (the reason on stderr)
    """
    if fmt not in ("csv", "parquet"):
        fail(f"--format must be csv or parquet, got '{fmt}'")
    if patient is not None and not store_it:
        fail("--patient needs the store (drop --no-store)")
    try:
        proto = load_any(protocol)
        # A Modbus table lives in real time; an in-process python: table runs at the speed
        # asked for (a maker's own simulator may run as fast as it can).
        real_table = device.startswith("modbus://")
        if real_table and speed == "max":
            # A real table lives in real time: simulated time against it means nothing.
            speed = "realtime"
            err.print("[yellow]real table: running in real time[/]")
        # 100 Hz over Modbus: 50x the force loop's bandwidth, and the round trips of real
        # firmware fit with margin (docs/device-protocol.md).
        rate = rate_hz if rate_hz is not None else (100.0 if real_table else 1000.0)
        if real_table:
            # The URL may name the rate this table is run at (?rate_hz=); it is checked
            # here, before anything connects, and must agree with an explicit --rate-hz.
            from spinedecomp.device.factory import parse_modbus_url

            url_rate = parse_modbus_url(device).rate_hz
            if url_rate is not None:
                if rate_hz is not None and rate_hz != url_rate:
                    fail(f"--rate-hz {rate_hz:g} disagrees with the device URL's rate_hz="
                         f"{url_rate:g}; give one or make them equal", code=EXIT_INVALID)
                rate = url_rate
        spec = SessionSpec(protocol=proto, body_weight_kg=weight_kg, rate_hz=rate,
                           speed=parse_speed(speed), device=device, seed=seed, noise=noise,
                           split_table=split_table, confirm_high_force=confirm,
                           plant_seed=plant_seed,
                           edits=[parse_edit(e) for e in edit],
                           faults=[parse_fault(f) for f in fault])
        engine = build_engine(spec)
    except SpinedecompError as exc:
        fail(str(exc), code=EXIT_INVALID)
    recorder = start_recording(engine, spec, patient) if store_it else None
    try:
        engine.setup(confirm_high_force=confirm)
    except SpinedecompError as exc:
        if recorder is not None:
            recorder.finish(engine.result())
        fail(str(exc), code=EXIT_REFUSED)
    try:
        run_with_progress(engine, quiet=as_json)
    except (KeyboardInterrupt, SessionInterrupted):
        err.print("[yellow]interrupted: the table was released[/]")
    summary = summarize(engine.result(), engine.resolved)
    stored = finish_recording(recorder, engine, summary) if recorder is not None else True
    outputs = write_outputs(summary, engine, out_dir, fmt)
    if as_json:
        print_json(summary)
    else:
        print_summary(summary)
        if outputs.plot:
            out.print(f"  report: {outputs.plot}  telemetry: {outputs.telemetry}  "
                      f"summary: {outputs.summary}")
    if summary.end_state != "completed":
        # Any end but completed is an abort (the engine ends only completed or aborted); the
        # JSON summary above says why, the exit code lets a script see it without parsing.
        raise SystemExit(EXIT_ABORTED)
    if not stored:
        raise SystemExit(EXIT_NOT_STORED)


def start_recording(engine: SessionEngine, spec: SessionSpec, patient: str | None,
                    plan_id: int | None = None) -> SessionRecorder:
    """Create the stored session and attach its recorder to the engine (before set-up), or
    exit with a clear message (a session is not started without its record)."""
    from spinedecomp.cli.db import cli_actor, open_store
    from spinedecomp.cli.patient import find_patient
    from spinedecomp.store.recorder import SessionRecorder
    from spinedecomp.store.repositories import StoreError

    store = open_store()
    actor = cli_actor()
    try:
        patient_id: int | None = None
        if patient is not None:
            with store.unit(actor) as uow:
                patient_id = find_patient(uow, patient).id
        recorder = SessionRecorder.begin(store, actor=actor, spec=spec, resolved=engine.resolved,
                                         patient_id=patient_id, plan_id=plan_id)
    except (StoreError, SQLAlchemyError) as exc:
        store.close()
        fail(f"cannot record the session in {store.display_url}: {str(exc).splitlines()[0]} "
             "(use --no-store to run without a record)")
    recorder.attach(engine)
    return recorder


# A session whose record is not (all) in the database (docs/store.md, "Storage faults"): an
# aborted session still exits with its own code, this one tells a completed session apart.
EXIT_NOT_STORED = 5


def finish_recording(recorder: SessionRecorder, engine: SessionEngine,
                     summary: SessionSummary) -> bool:
    """Write the end of the session and say where it is: "stored" only when the whole record
    is committed to the database file at its path. Returns whether it is."""
    report = recorder.finish(engine.result(), summary)
    recorder.store.close()
    if report.stored:
        err.print(f"stored as session {report.session_id} in {recorder.store.display_url}")
    else:
        released = " The store ordered the table's release." if report.stats.storage_full else ""
        err.print(f"[bold red]session {report.session_id} NOT stored:[/] [red]{report.problem}."
                  f"{released}[/]")
    return report.stored


def register(app: typer.Typer) -> None:
    """Add `session` to the main app."""
    app.add_typer(session_app, name="session")
