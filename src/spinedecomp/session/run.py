"""Build a ready-to-run session from plain settings (used by the CLI, the web app, benches)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spinedecomp.control.protocol import Protocol, resolve
from spinedecomp.core.clock import Clock, RealClock, SimClock
from spinedecomp.device.factory import SIMULATOR, open_table
from spinedecomp.device.plant import draw_plant
from spinedecomp.device.simulated import PatientModel
from spinedecomp.session.engine import SessionEngine, check_rate
from spinedecomp.session.model import Command, Fault
from spinedecomp.session.telemetry import BlockSink


@dataclass
class SessionSpec:
    """Everything needed to run one session."""

    protocol: Protocol
    body_weight_kg: float
    rate_hz: float = 1000.0
    speed: float | None = None  # None = as fast as possible (simulated clock)
    device: str = SIMULATOR
    seed: int = 0
    noise: bool = True
    split_table: bool = True
    confirm_high_force: bool = True
    plant_seed: int | None = None  # simulate a plant drawn from the family (None = nominal)
    edits: list[tuple[float, Command]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)


def make_clock(rate_hz: float, speed: float | None) -> Clock:
    """A simulated clock, or a wall clock at `speed` x real time."""
    dt = 1.0 / rate_hz
    return SimClock(dt) if speed is None else RealClock(dt, speed=speed)


def build_engine(spec: SessionSpec, sinks: list[BlockSink] | None = None,
                 **engine_kwargs: object) -> SessionEngine:
    """Resolve the protocol, open the table, schedule edits and faults, run set-up."""
    check_rate(spec.rate_hz)
    resolved = resolve(spec.protocol, spec.body_weight_kg)
    plant = None
    if spec.plant_seed is not None:
        plant = draw_plant(resolved.region, spec.body_weight_kg, spec.plant_seed,
                           max_force_n=resolved.cap_n)
    model = PatientModel(region=resolved.region, body_weight_kg=spec.body_weight_kg,
                         split_table=spec.split_table, noise=spec.noise, seed=spec.seed,
                         plant=plant)
    table = open_table(spec.device, model, angle_deg=spec.protocol.angle_deg)
    engine = SessionEngine(table, resolved, rate_hz=spec.rate_hz,
                           clock=make_clock(spec.rate_hz, spec.speed), sinks=sinks,
                           **engine_kwargs)  # type: ignore[arg-type]
    for t, cmd in spec.edits:
        engine.schedule(t, cmd)
    for f in spec.faults:
        engine.inject(f)
    return engine
