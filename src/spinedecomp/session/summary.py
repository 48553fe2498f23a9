"""Session summary: the numbers a clinician and a table maker look at first.

Accuracy metrics use the simulator's true cable force where it is known (what the patient
feels), otherwise the mean of the two load cells.

Only valid samples count (docs/control.md, "Summary"). A force reading is valid when it is
finite and within `PLAUSIBLE_FORCE_FACTOR` times the region's absolute device limit either
way: NaN (a cell the driver marked invalid: Modbus decodes the sentinel 0x8000_0000 to NaN) and
absurd values (the sentinel taken as a number, +/-21,474,836 N, a saturated register) are
excluded. On a real table a sample with one invalid cell uses the other; a sample with no valid
reading is left out of the peak force, the hold RMS error and the overshoot, and counted in
`invalid_samples`. Real over-forces (a spasm at 1.5x the device limit) are far inside the range
and always reported.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from spinedecomp.control.protocol import ResolvedProtocol
from spinedecomp.control.trajectory import Phase
from spinedecomp.core.units import Region, limits_for
from spinedecomp.session.engine import SessionResult
from spinedecomp.session.telemetry import COL

F64 = npt.NDArray[np.float64]
SETTLE_S = 1.0  # hold samples right after a ramp top are settling, not holding
OVERSHOOT_WINDOW_S = 5.0
# A force reading beyond 10x the device's absolute limit (9.8 kN lumbar, 2.7 kN cervical) is
# no force a table and a body produce: the worst real transient seen in the fault campaign is
# about 1.5x. Above it a reading is an encoding artefact (the Modbus sentinel 0x8000_0000 read
# as a number is 21,474,836 N) and would swamp every statistic it enters.
PLAUSIBLE_FORCE_FACTOR = 10.0


class EventOut(BaseModel):
    """An event in the JSON summary."""

    t: float
    kind: str
    reason: str
    field: str | None = None
    old: float | None = None
    new: float | None = None


class AlarmOut(BaseModel):
    """An alarm in the JSON summary."""

    t: float
    kind: str
    priority: str
    technical: bool
    value: float | None
    force_n: float | None
    action: str
    acknowledged: bool


class GuardingOut(BaseModel):
    """A muscle-guarding episode the controller detected and backed off from."""

    t: float
    duration_s: float
    peak_excess_n: float
    payout_mm: float
    next_ramp_s: float


class SessionSummary(BaseModel):
    """The JSON summary of a session (`spinedecomp session simulate --json`)."""

    protocol: str
    region: str
    mode: str
    body_weight_kg: float
    rate_hz: float
    simulated_s: float
    wall_s: float
    speedup: float
    cap_n: float
    max_force_n: float
    peak_force_n: float
    hold_rms_error_pct: float | None
    max_overshoot_pct: float | None
    peak_distraction_mm: float | None
    cycles: int
    end_state: str
    abort_reason: str | None
    events: list[EventOut]
    alarms: list[AlarmOut]
    faults: list[str]
    release_started_after_ms: float | None
    force_below_safe_after_s: float | None
    final_force_n: float | None
    motor_disabled: bool
    samples: int
    # Samples whose force reading was not valid (NaN or beyond the plausible range) and so were
    # left out of peak_force_n, hold_rms_error_pct and max_overshoot_pct.
    invalid_samples: int = 0
    guarding_episodes: int = 0
    guarding: list[GuardingOut] = []


def plausible_force_n(region: Region) -> float:
    """The largest force magnitude (N) a valid reading may have in this region."""
    return PLAUSIBLE_FORCE_FACTOR * limits_for(region).force.absolute.hi


def _valid(x: F64, bound: float) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & (np.abs(x) <= bound)


def force_column(tel: F64, bound: float = math.inf) -> F64:
    """Force per sample: the true force where the simulator knows it, else the mean of the
    load cells, NaN where no reading is valid (finite and at most `bound` N either way).

    On a real table a sample with one valid cell takes that cell: one cell reading the sentinel
    must not make the sample the mean of a force and 21 million newtons."""
    true = tel[:, COL["force_true_n"]]
    ok_true = _valid(true, bound)
    # A simulator reports the truth; a real table NaN throughout (then a stray value there is
    # no reason to distrust both cells).
    if np.any(ok_true):
        return np.where(ok_true, true, np.nan)
    a = tel[:, COL["force_a_n"]]
    b = tel[:, COL["force_b_n"]]
    ok_a = _valid(a, bound)
    ok_b = _valid(b, bound)
    both = np.where(ok_a & ok_b, 0.5 * (a + b), np.nan)
    return np.where(ok_a & ~ok_b, a, np.where(ok_b & ~ok_a, b, both))


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index pairs of True runs."""
    if mask.size == 0:
        return []
    d = np.diff(mask.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def hold_rms_error_pct(tel: F64, rate_hz: float, bound: float = math.inf) -> float | None:
    """RMS of (force - target) over hold phases after settling, as % of the mean target;
    over valid samples only (`force_column`)."""
    phase = tel[:, COL["phase"]]
    f = force_column(tel, bound)
    tgt = tel[:, COL["target_n"]]
    settle = int(SETTLE_S * rate_hz)
    err: list[F64] = []
    tg: list[F64] = []
    for a, b in _runs(phase == Phase.HOLD):
        if b - a > settle + 1:
            fa, ta = f[a + settle:b], tgt[a + settle:b]
            ok = np.isfinite(fa) & np.isfinite(ta)
            err.append(fa[ok] - ta[ok])
            tg.append(ta[ok])
    if not err:
        return None
    e = np.concatenate(err)
    t = np.concatenate(tg)
    if e.size == 0 or np.mean(t) <= 0.0:
        return None
    return float(np.sqrt(np.mean(e * e)) / np.mean(t) * 100.0)


def max_overshoot_pct(tel: F64, rate_hz: float, bound: float = math.inf) -> float | None:
    """Largest overshoot above the peak set-point in the seconds after each ramp top; over
    valid samples only (`force_column`)."""
    phase = tel[:, COL["phase"]]
    f = force_column(tel, bound)
    tgt = tel[:, COL["target_n"]]
    win = int(OVERSHOOT_WINDOW_S * rate_hz)
    worst: float | None = None
    for a, b in _runs(phase == Phase.HOLD):
        end = min(b, a + win)
        window = f[a:end]
        if end <= a or not np.any(np.isfinite(window)):
            continue
        peak_t = float(np.max(tgt[max(0, a - 1):end]))
        if peak_t <= 0:
            continue
        ov = (float(np.nanmax(window)) - peak_t) / peak_t * 100.0
        worst = ov if worst is None else max(worst, ov)
    return None if worst is None else max(0.0, worst)


def summarize(result: SessionResult, resolved: ResolvedProtocol) -> SessionSummary:
    """Summary numbers of a finished session, over its valid samples (module docstring):
    `peak_force_n` is 0 and `final_force_n` None when no (last) force reading is valid, and
    `invalid_samples` counts the samples left out."""
    tel = result.telemetry
    bound = plausible_force_n(resolved.region)
    f = force_column(tel, bound) if tel.shape[0] else np.zeros(0)
    valid_f = np.isfinite(f)
    dist = tel[:, COL["distraction_mm"]] if tel.shape[0] else np.zeros(0)
    # Distraction comes from the simulator's model; the same plausibility applies (no spine
    # distracts by more than the cable can travel).
    dist = dist[_valid(dist, limits_for(resolved.region).travel.absolute.hi)]
    peak_dist = float(np.max(dist)) if dist.size else None
    cycles = int(np.nanmax(tel[:, COL["cycle"]])) + 1 if tel.shape[0] else 0

    def fin(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x, 4)

    return SessionSummary(
        protocol=resolved.protocol.name,
        region=resolved.region.value,
        mode=resolved.protocol.mode.value,
        body_weight_kg=resolved.body_weight_kg,
        rate_hz=result.rate_hz,
        simulated_s=round(result.simulated_s, 3),
        wall_s=round(result.wall_s, 3),
        speedup=round(result.simulated_s / result.wall_s, 1) if result.wall_s > 0 else 0.0,
        cap_n=round(result.clamp_n, 2),
        max_force_n=round(resolved.max_force_n, 2),
        peak_force_n=round(float(np.max(f[valid_f])), 2) if np.any(valid_f) else 0.0,
        hold_rms_error_pct=fin(hold_rms_error_pct(tel, result.rate_hz, bound)),
        max_overshoot_pct=fin(max_overshoot_pct(tel, result.rate_hz, bound)),
        peak_distraction_mm=fin(peak_dist),
        cycles=cycles,
        end_state=result.end_state.value,
        abort_reason=result.abort_reason,
        events=[EventOut(t=e.t, kind=e.kind, reason=e.reason, field=e.field, old=e.old, new=e.new)
                for e in result.events],
        alarms=[AlarmOut(t=a.t, kind=a.kind, priority=a.priority.value, technical=a.technical,
                         value=fin(a.value), force_n=fin(a.force_n), action=a.action,
                         acknowledged=a.acknowledged) for a in result.alarms],
        faults=[f_.label() for f_ in result.faults],
        release_started_after_ms=fin(result.release_started_after_ms),
        force_below_safe_after_s=fin(result.force_below_safe_after_s),
        final_force_n=fin(float(f[-1])) if f.size else None,
        motor_disabled=result.motor_off,
        samples=int(tel.shape[0]),
        invalid_samples=int(np.count_nonzero(~valid_f)),
        guarding_episodes=len(result.guarding),
        guarding=[GuardingOut(t=g.t, duration_s=g.duration_s, peak_excess_n=g.peak_excess_n,
                              payout_mm=g.payout_mm, next_ramp_s=g.ramp_s)
                  for g in result.guarding],
    )
