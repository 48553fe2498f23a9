"""Randomized fault campaign: sessions on plants of the family with 1-3 faults at random times,
including two in one period, during a pause and during the release, and what they showed.

Each case is drawn from its seed (`draw_fault_case`), so a failure is reproduced by
`run_fault_case(draw_fault_case(seed))`. The invariants judged on every case (docs/safety.md):

- the session ends with the true force at or below the safe level and the motor disabled;
- the true force never exceeds the device limit + 5 %, plus what a patient's spasm adds
  against the cable's stiffness (`k_cable` x its displacement);
- a fault that is a hazard the moment it happens (a stop pressed, a controller that hangs,
  crashes or runs away, a lost link, a NaN cell, an unplugged switch) raises an alarm;
- from the trip, force is safe within `F_trip / min(release_rate, k_cell x v_max) + 1 s` plus
  the drive's response (lag + dead time + time to reach pay-out speed): a soft patient behind a
  slow drive cannot shed force faster than the drive pays out; when the drive is cut (jammed,
  or the release not following), plus `stall_s + 1 s` and the freewheeling reel's decay
  `(b / k) ln(F_trip / F_safe)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spinedecomp.control.library import get_protocol
from spinedecomp.control.protocol import resolve
from spinedecomp.core.clock import SimClock
from spinedecomp.core.units import limits_for
from spinedecomp.device.plant import draw_plant
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.session.campaign import PROTOCOLS, RATES
from spinedecomp.session.engine import SessionEngine
from spinedecomp.session.faults import FAULT_KINDS, parse_fault
from spinedecomp.session.model import Command
from spinedecomp.session.telemetry import COL

TRANSIENT_MARGIN = 0.05  # docs/safety.md: device limit + 5 %
# Faults that are a hazard the instant they happen: each must raise an alarm.
MUST_ALARM = frozenset({"patient-switch", "operator-stop", "controller-hang", "controller-crash",
                        "controller-runaway", "comm-lost", "loadcell-nan", "switch-unplugged"})
# Argument ranges drawn (within each kind's allowed range, docs/safety.md "Fault arguments").
_ARG_SPANS = {"loadcell-drift": (5.0, 100.0), "loadcell-offset": (20.0, 300.0),
              "loadcell-spike": (50.0, 1500.0), "overforce-spike": (1.0, 25.0),
              "harness-detach": (5.0, 1000.0)}
_SIGNED = frozenset({"loadcell-drift", "loadcell-offset", "loadcell-spike"})


@dataclass(frozen=True)
class FaultCase:
    """One session of the fault campaign."""

    seed: int
    protocol: str
    body_weight_kg: float
    rate_hz: float
    faults: tuple[str, ...]  # `T:KIND[:CH][:ARG]` as on the command line
    stop_at_s: float  # the session is shortened by an operator stop here (a normal release)
    pause_at_s: float | None = None  # paused here for 5 s, then resumed

    def command_line(self) -> str:
        """The `session simulate` command that reproduces the case."""
        fl = " ".join(f"--fault {f}" for f in self.faults)
        pause = (f" --edit {self.pause_at_s:g}:pause --edit {self.pause_at_s + 5:g}:resume"
                 if self.pause_at_s is not None else "")
        return (f"spinedecomp session simulate -p {self.protocol} -w {self.body_weight_kg} "
                f"--rate-hz {self.rate_hz:g} --seed {self.seed} --plant-seed {self.seed} {fl}"
                f"{pause} --edit {self.stop_at_s:g}:stop")


@dataclass
class FaultResult:
    """What one fault session showed."""

    case: FaultCase
    end_state: str
    alarms: list[str]
    first_fault_kind: str
    first_fault_t: float
    trip_t: float | None
    detect_s: float | None  # first alarm after the first fault's onset
    safe_after_s: float | None  # trip -> true force at or below the safe level
    bound_s: float | None  # the documented time-to-safe bound for this trip
    final_force_n: float
    motor_off: bool
    max_force_n: float
    force_bound_n: float
    missing_alarm: list[str] = field(default_factory=list)  # MUST_ALARM faults with none

    @property
    def safe_end(self) -> bool:
        """Ended at or below the safe level with the motor disabled."""
        return self.final_force_n <= 15.0 + 1e-9 and self.motor_off

    @property
    def within_force_bound(self) -> bool:
        """True force never above the documented bound."""
        return self.max_force_n <= self.force_bound_n

    @property
    def within_time_bound(self) -> bool:
        """Force safe within the documented time after the trip (or no trip to judge)."""
        return self.safe_after_s is None or self.bound_s is None or \
            self.safe_after_s <= self.bound_s


def _fault_spec(rng: np.random.Generator, t: float) -> str:
    kind = str(rng.choice(sorted(FAULT_KINDS)))
    fk = FAULT_KINDS[kind]
    spec = f"{t:.3f}:{kind}"
    if fk.needs_channel:
        spec += ":" + str(rng.choice(["a", "b"]))
    if kind in _ARG_SPANS:
        lo, hi = _ARG_SPANS[kind]
        arg = float(rng.uniform(lo, hi))
        if kind in _SIGNED and rng.uniform() < 0.5:
            arg = -arg
        spec += f":{arg:.1f}"
    return spec


def draw_fault_case(seed: int) -> FaultCase:
    """The case of a seed: protocol, weight, rate, 1-3 faults (one in five with two in the
    same period), one in five sessions paused, one in four faults after the stop (in the
    release)."""
    rng = np.random.default_rng([seed, 4242])
    stop = float(rng.uniform(45.0, 90.0))
    n = int(rng.integers(1, 4))
    times: list[float] = []
    for _ in range(n):
        if rng.uniform() < 0.25:
            times.append(stop + float(rng.uniform(0.0, 2.5)))  # during the release
        else:
            times.append(float(rng.uniform(3.0, stop)))
    if n >= 2 and rng.uniform() < 0.2:
        times[1] = times[0]  # two faults in one period
    pause = float(rng.uniform(10.0, stop - 8.0)) if rng.uniform() < 0.2 else None
    return FaultCase(seed=seed, protocol=str(rng.choice(PROTOCOLS)),
                     body_weight_kg=round(float(rng.uniform(40.0, 180.0)), 1),
                     rate_hz=float(rng.choice(RATES)),
                     faults=tuple(_fault_spec(rng, t) for t in sorted(times)),
                     stop_at_s=round(stop, 3), pause_at_s=None if pause is None else round(pause, 3))


def run_fault_case(case: FaultCase) -> FaultResult:
    """Run one fault case on its plant and judge it."""
    proto = get_protocol(case.protocol)
    res = resolve(proto, case.body_weight_kg)
    plant = draw_plant(res.region, case.body_weight_kg, case.seed, max_force_n=res.cap_n)
    table = SimulatedTable(PatientModel(res.region, case.body_weight_kg, seed=case.seed,
                                        plant=plant), angle_deg=proto.angle_deg)
    eng = SessionEngine(table, res, rate_hz=case.rate_hz, clock=SimClock(1.0 / case.rate_hz))
    faults = [parse_fault(f) for f in case.faults]
    for f in faults:
        eng.inject(f)
    if case.pause_at_s is not None:
        eng.schedule(case.pause_at_s, Command(kind="pause", reason="campaign", user="campaign"))
        eng.schedule(case.pause_at_s + 5.0, Command(kind="resume", reason="campaign",
                                                    user="campaign"))
    eng.schedule(case.stop_at_s, Command(kind="stop", reason="campaign: shortened",
                                         user="campaign"))
    eng.setup(confirm_high_force=True)
    out = eng.run()
    tel = out.telemetry
    t = tel[:, COL["t"]]
    true = tel[:, COL["force_true_n"]]
    spasm = sum((f.arg or 25.0) for f in faults if f.kind == "overforce-spike")
    limit = limits_for(res.region).force.absolute.hi
    bound_n = limit * (1.0 + TRANSIENT_MARGIN) + plant.cable_stiffness_n_mm * spasm
    first = faults[0]
    alarms = [a for a in out.alarms if a.kind != "end-of-session"]
    after = [a for a in alarms if a.t >= first.t - 1e-9]
    detect = after[0].t - first.t if after else None
    trip_t = out.trip_t
    safe_after = bound_s = None
    if trip_t is not None and alarms:
        i0 = int(np.searchsorted(t, trip_t))
        below = np.flatnonzero(true[i0:] <= eng.safety.safe_n)
        if below.size:
            safe_after = float(t[i0 + below[0]] - trip_t)
        f_trip = float(min(true[min(i0, len(true) - 1)], out.clamp_n))
        # A soft patient behind a slow drive cannot shed force at the release rate: the
        # table's own pay-out speed times the stiffness bounds how fast force can fall.
        shed = min(eng.safety.release_rate_n_s, plant.stiffness_at_cell_n_mm * plant.vmax_mm_s)
        # Plus the drive's own response: lag, dead time, and reaching pay-out speed.
        bound_s = f_trip / shed + 1.0 + plant.motor_lag_s + plant.transport_delay_s + \
            min(plant.vmax_mm_s / plant.amax_mm_s2, 1.0)
        if any(f.kind == "motor-stall" for f in faults) or "release-stalled" in \
                [a.kind for a in alarms]:
            # The drive cut: the reel freewheels against its damping b, force decays with
            # time constant b / k from the force at the cut down to the safe level.
            k = plant.stiffness_at_cell_n_mm
            bound_s += eng.safety.stall_s + 1.0 + plant.freewheel_damping / k * math.log(
                max(f_trip, eng.safety.safe_n) / eng.safety.safe_n)
    stalls = [f.t for f in faults if f.kind == "motor-stall"]
    missing = [f.label() for f in faults if f.kind in MUST_ALARM and f.t < case.stop_at_s
               and not any(a.t >= f.t - 1e-9 for a in alarms)
               and not (out.trip_t is not None and out.trip_t < f.t)
               # a runaway behind a jammed winch, or one the monitor's pull caps kept from
               # loading the patient, made no hazard to report
               and not (f.kind == "controller-runaway" and (
                   any(ts <= f.t for ts in stalls)
                   or float(np.max(true[t >= f.t], initial=0.0)) <= eng.safety.safe_n))]
    return FaultResult(
        case=case, end_state=out.end_state.value, alarms=[a.kind for a in alarms],
        first_fault_kind=first.kind, first_fault_t=first.t, trip_t=trip_t, detect_s=detect,
        safe_after_s=safe_after, bound_s=bound_s,
        final_force_n=float(true[-1]) if true.size else 0.0, motor_off=out.motor_off,
        max_force_n=float(np.nanmax(true)) if true.size else 0.0, force_bound_n=bound_n,
        missing_alarm=missing)
