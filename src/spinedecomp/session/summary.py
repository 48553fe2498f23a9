"""Session summary: the numbers a clinician and a table maker look at first.

Accuracy metrics use the simulator's true cable force where it is known (what the patient
feels), otherwise the mean of the two load cells.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from spinedecomp.control.protocol import ResolvedProtocol
from spinedecomp.control.trajectory import Phase
from spinedecomp.session.engine import SessionResult
from spinedecomp.session.telemetry import COL

F64 = npt.NDArray[np.float64]
SETTLE_S = 1.0  # hold samples right after a ramp top are settling, not holding
OVERSHOOT_WINDOW_S = 5.0


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
    guarding_episodes: int = 0
    guarding: list[GuardingOut] = []


def force_column(tel: F64) -> F64:
    """True force where known, else the mean of the load cells."""
    true = tel[:, COL["force_true_n"]]
    if tel.shape[0] and not np.all(np.isnan(true)):
        return true
    return 0.5 * (tel[:, COL["force_a_n"]] + tel[:, COL["force_b_n"]])


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index pairs of True runs."""
    if mask.size == 0:
        return []
    d = np.diff(mask.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def hold_rms_error_pct(tel: F64, rate_hz: float) -> float | None:
    """RMS of (force - target) over hold phases after settling, as % of the mean target."""
    phase = tel[:, COL["phase"]]
    f = force_column(tel)
    tgt = tel[:, COL["target_n"]]
    settle = int(SETTLE_S * rate_hz)
    err: list[F64] = []
    tg: list[F64] = []
    for a, b in _runs(phase == Phase.HOLD):
        if b - a > settle + 1:
            err.append(f[a + settle:b] - tgt[a + settle:b])
            tg.append(tgt[a + settle:b])
    if not err:
        return None
    e = np.concatenate(err)
    return float(np.sqrt(np.mean(e * e)) / np.mean(np.concatenate(tg)) * 100.0)


def max_overshoot_pct(tel: F64, rate_hz: float) -> float | None:
    """Largest overshoot above the peak set-point in the seconds after each ramp top."""
    phase = tel[:, COL["phase"]]
    f = force_column(tel)
    tgt = tel[:, COL["target_n"]]
    win = int(OVERSHOOT_WINDOW_S * rate_hz)
    worst: float | None = None
    for a, b in _runs(phase == Phase.HOLD):
        end = min(b, a + win)
        if end <= a:
            continue
        peak_t = float(np.max(tgt[max(0, a - 1):end]))
        if peak_t <= 0:
            continue
        ov = (float(np.max(f[a:end])) - peak_t) / peak_t * 100.0
        worst = ov if worst is None else max(worst, ov)
    return None if worst is None else max(0.0, worst)


def summarize(result: SessionResult, resolved: ResolvedProtocol) -> SessionSummary:
    """Summary numbers of a finished session."""
    tel = result.telemetry
    f = force_column(tel) if tel.shape[0] else np.zeros(0)
    dist = tel[:, COL["distraction_mm"]] if tel.shape[0] else np.zeros(0)
    peak_dist = float(np.nanmax(dist)) if dist.size and not np.all(np.isnan(dist)) else None
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
        peak_force_n=round(float(np.nanmax(f)), 2) if f.size else 0.0,
        hold_rms_error_pct=fin(hold_rms_error_pct(tel, result.rate_hz)),
        max_overshoot_pct=fin(max_overshoot_pct(tel, result.rate_hz)),
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
        guarding_episodes=len(result.guarding),
        guarding=[GuardingOut(t=g.t, duration_s=g.duration_s, peak_excess_n=g.peak_excess_n,
                              payout_mm=g.payout_mm, next_ramp_s=g.ramp_s)
                  for g in result.guarding],
    )
