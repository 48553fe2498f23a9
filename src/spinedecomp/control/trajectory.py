"""Trajectory: a resolved protocol -> force and angle set-points over time, with live edits.

Pure logic: no clock of its own. The session engine asks for the next block of `n` periods of
`dt` seconds; protocol time only advances while the session runs (not while paused, not while
slack is being taken up, not while a resumed force is being re-reached).

Cycle of the intermittent family: RAMP_UP (shape over ramp_s) -> HOLD (hold_s, with an
oscillation in cyclic mode) -> RAMP_DOWN (same shape mirrored, ramp_s) -> REST (rest_s).
Static: one RAMP_UP then HOLD to the end. Progressive: the peak steps from the rest force to
max over `progression_cycles` cycles (or by `step_force`). Regressive: the peak steps back
down over the last `progression_cycles` cycles. At the end of the duration, ENDING ramps
from wherever the set-point is to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from spinedecomp.control.protocol import Mode, RampShape, ResolvedProtocol
from spinedecomp.core.errors import ProtocolError
from spinedecomp.core.units import HOLD_REST_S, limits_for


class Phase(IntEnum):
    """Trajectory phase, recorded in telemetry."""

    SLACK = 0
    RAMP_UP = 1
    HOLD = 2
    RAMP_DOWN = 3
    REST = 4
    PAUSED = 5
    RESUMING = 6
    ENDING = 7
    DONE = 8
    RELEASE = 9


_TIMED = frozenset({Phase.RAMP_UP, Phase.HOLD, Phase.RAMP_DOWN, Phase.REST})

EDITABLE_FIELDS = ("max_force_n", "rest_force_n", "hold_s", "rest_s", "angle_deg",
                   "clinician_cap_n")


@dataclass(frozen=True)
class Settings:
    """The live, editable part of a running protocol."""

    max_force_n: float
    rest_force_n: float
    hold_s: float
    rest_s: float
    angle_deg: float
    clinician_cap_n: float


@dataclass(frozen=True)
class Block:
    """Set-points for a block of control periods."""

    target_n: npt.NDArray[np.float64]
    angle_deg: npt.NDArray[np.float64]
    phase: npt.NDArray[np.float64]
    cycle: npt.NDArray[np.float64]


def shape(kind: RampShape, u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ramp shape on u in [0, 1] -> [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    if kind is RampShape.LINEAR:
        return u
    if kind is RampShape.LOGARITHMIC:
        k = 9.0
        return np.log1p(k * u) / math.log1p(k)
    return u * u * (3.0 - 2.0 * u)


class Trajectory:
    """Set-point generator for one session."""

    def __init__(self, resolved: ResolvedProtocol) -> None:
        self.resolved = resolved
        self.protocol = resolved.protocol
        self.limits = limits_for(resolved.region)
        self.settings = Settings(
            max_force_n=resolved.max_force_n,
            rest_force_n=resolved.rest_force_n,
            hold_s=self.protocol.hold_s,
            rest_s=self.protocol.rest_s,
            angle_deg=self.protocol.angle_deg,
            clinician_cap_n=resolved.cap_n,
        )
        self.phase = Phase.SLACK
        self.phase_t = 0.0
        self.cycle = 0
        self.tau = 0.0  # protocol time elapsed, s
        self.last_target = 0.0
        self._ramp_from = 0.0
        self._paused_phase = Phase.SLACK
        self._end_from = 0.0
        self._cycle_start_tau = 0.0
        # Ramp-up length: lengthened after muscle guarding (a slower rise guards less).
        self.ramp_up_s = self.protocol.ramp_s
        self._ramp_up_next_s = self.protocol.ramp_s

    # ---- the final clamp -------------------------------------------------------------------
    @property
    def clamp_n(self) -> float:
        """min(protocol cap, clinician cap, device absolute limit)."""
        return min(self.resolved.cap_n, self.settings.clinician_cap_n,
                   self.limits.force.absolute.hi)

    # ---- live edits ------------------------------------------------------------------------
    def edit(self, field: str, value: float) -> float:
        """Change a live setting; returns the old value. Raises ProtocolError naming the field
        if the value is outside what the protocol and region allow."""
        if field not in EDITABLE_FIELDS:
            raise ProtocolError(field, f"not editable; editable fields: {', '.join(EDITABLE_FIELDS)}")
        if not math.isfinite(value):
            raise ProtocolError(field, "must be a finite number")
        s = self.settings
        old = float(getattr(s, field))
        if field == "max_force_n":
            if not s.rest_force_n < value <= self.clamp_n:
                raise ProtocolError(field, f"must be within {s.rest_force_n:.0f}-{self.clamp_n:.0f} N "
                                    "(above the rest force, at most the session cap)")
        elif field == "rest_force_n":
            if not 0.0 <= value < s.max_force_n:
                raise ProtocolError(field, f"must be within 0-{s.max_force_n:.0f} N (below max force)")
        elif field in ("hold_s", "rest_s"):
            rng = HOLD_REST_S.absolute
            if not rng.contains(value):
                raise ProtocolError(field, f"must be within {rng.lo:g}-{rng.hi:g} s")
        elif field == "angle_deg":
            rng = self.limits.angle.safe
            if not rng.contains(value):
                raise ProtocolError(field, f"must be within {rng.lo:g}-{rng.hi:g} deg")
        elif field == "clinician_cap_n":
            hi = min(self.resolved.cap_n, self.limits.force.absolute.hi)
            # Below twice the safe rest force a harness cannot even be kept snug.
            lo = 2.0 * self.limits.safe_rest_force_n
            if not lo <= value <= hi:
                raise ProtocolError(field, f"must be within {lo:.0f}-{hi:.0f} N")
        self.settings = replace(s, **{field: value})
        if field == "clinician_cap_n" and self.settings.max_force_n > value:
            self.settings = replace(self.settings, max_force_n=value,
                                    rest_force_n=min(self.settings.rest_force_n, 0.5 * value))
        return old

    def slack_taken_up(self) -> None:
        """Start protocol time: the harness is snug."""
        if self.phase is Phase.SLACK:
            self._enter(Phase.RAMP_UP, from_level=self.last_target)

    def lengthen_next_ramp(self, factor: float = 1.5, limit: float = 2.0) -> float:
        """After muscle guarding: the next ramp-up lasts `factor` times longer, at most
        `limit` times the protocol's ramp. Returns the new ramp time, s."""
        self._ramp_up_next_s = min(self._ramp_up_next_s * factor, limit * self.protocol.ramp_s)
        return self._ramp_up_next_s

    def pause(self) -> None:
        """Hold the current set-point; protocol time stops."""
        if self.phase in (Phase.PAUSED, Phase.ENDING, Phase.DONE):
            return
        self._paused_phase = self.phase
        self.phase = Phase.PAUSED

    def resume(self) -> None:
        """Leave pause: first re-reach the (possibly edited) phase level, then timing resumes."""
        if self.phase is Phase.PAUSED:
            self.phase = Phase.RESUMING

    def stop(self) -> None:
        """Controlled ramp to zero from wherever the set-point is (ends the session)."""
        if self.phase not in (Phase.ENDING, Phase.DONE):
            self._end_from = self.last_target
            self.phase = Phase.ENDING
            self.phase_t = 0.0

    @property
    def done(self) -> bool:
        """True when the final ramp-down has reached zero."""
        return self.phase is Phase.DONE

    # ---- levels ----------------------------------------------------------------------------
    def _ramp_rate(self) -> float:
        s = self.settings
        return max(5.0, (s.max_force_n - s.rest_force_n) / self.protocol.ramp_s)

    def peak(self, cycle: int) -> float:
        """Peak force of a cycle under the current settings."""
        s = self.settings
        mode = self.protocol.mode
        n = self.protocol.progression_cycles
        span = s.max_force_n - s.rest_force_n
        if mode is Mode.PROGRESSIVE:
            if self.resolved.step_force_n:
                return min(s.max_force_n, s.rest_force_n + self.resolved.step_force_n * (cycle + 1))
            return s.rest_force_n + span * min(1.0, (cycle + 1) / n)
        if mode is Mode.REGRESSIVE:
            left = self._cycles_left()
            if left <= n:
                return s.rest_force_n + span * max(1, left) / (n + 1)
            return s.max_force_n
        return s.max_force_n

    def _period(self) -> float:
        s = self.settings
        return self.ramp_up_s + self.protocol.ramp_s + s.hold_s + s.rest_s

    def _cycles_left(self) -> int:
        # Cycles that will start from now (including the current one) before the end.
        remaining = self.resolved.duration_s - self._cycle_start_tau
        return max(1, math.ceil(remaining / self._period() - 1e-9))

    def _rest_level(self) -> float:
        return self.settings.rest_force_n

    def _level_at(self, phase: Phase, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Set-point within a phase at phase times t."""
        pk = self.peak(self.cycle)
        if phase is Phase.RAMP_UP:
            u = t / self.ramp_up_s
            return self._ramp_from + (pk - self._ramp_from) * shape(self.protocol.ramp_shape, u)
        if phase is Phase.HOLD:
            out = np.full(t.shape, pk)
            if self.protocol.mode is Mode.CYCLIC and self.resolved.oscillation_n > 0.0:
                w = 2.0 * math.pi / self.protocol.oscillation_period_s
                out = out + self.resolved.oscillation_n * 0.5 * (1.0 - np.cos(w * t))
            return out
        if phase is Phase.RAMP_DOWN:
            u = t / self.protocol.ramp_s
            lo = self._rest_level()
            return pk - (pk - lo) * (1.0 - shape(self.protocol.ramp_shape, 1.0 - u))
        return np.full(t.shape, self._rest_level())

    def _phase_len(self, phase: Phase) -> float:
        s = self.settings
        if phase is Phase.RAMP_UP:
            return self.ramp_up_s
        if phase is Phase.RAMP_DOWN:
            return self.protocol.ramp_s
        if phase is Phase.HOLD:
            if self.protocol.mode is Mode.STATIC:
                return math.inf
            return s.hold_s
        if phase is Phase.REST:
            return s.rest_s
        return math.inf

    def _enter(self, phase: Phase, from_level: float | None = None) -> None:
        if phase is Phase.RAMP_UP:
            self._ramp_from = self.last_target if from_level is None else from_level
            self._cycle_start_tau = self.tau
            self.ramp_up_s = self._ramp_up_next_s
        self.phase = phase
        self.phase_t = 0.0

    def _next_phase(self) -> None:
        if self.phase is Phase.RAMP_UP:
            self._enter(Phase.HOLD)
        elif self.phase is Phase.HOLD:
            self._enter(Phase.RAMP_DOWN)
        elif self.phase is Phase.RAMP_DOWN:
            self._enter(Phase.REST)
        elif self.phase is Phase.REST:
            self.cycle += 1
            self._enter(Phase.RAMP_UP, from_level=self._rest_level())

    # ---- generation ------------------------------------------------------------------------
    def block(self, n: int, dt: float) -> Block:
        """Set-points for the next `n` periods; advances protocol time."""
        target = np.empty(n)
        phase = np.empty(n)
        cycle = np.empty(n)
        i = 0
        while i < n:
            left = n - i
            ph = self.phase
            if ph in _TIMED:
                if self.tau >= self.resolved.duration_s - 1e-9:
                    self.stop()
                    continue
                plen = self._phase_len(ph)
                to_end = self.resolved.duration_s - self.tau
                k = int(min(left, max(1, math.ceil(min(plen - self.phase_t, to_end) / dt - 1e-9))))
                t = self.phase_t + dt * np.arange(1, k + 1, dtype=np.float64)
                target[i:i + k] = self._level_at(ph, t)
                phase[i:i + k] = ph
                cycle[i:i + k] = self.cycle
                self.phase_t += k * dt
                self.tau += k * dt
                i += k
                self.last_target = float(target[i - 1])
                if self.phase_t >= plen - 1e-9:
                    self._next_phase()
            elif ph is Phase.RESUMING:
                goal = float(self._level_at(self._paused_phase, np.array([self.phase_t]))[0])
                step = self._ramp_rate() * dt
                k = 0
                lvl = self.last_target
                while k < left and lvl != goal:
                    lvl = goal if abs(goal - lvl) <= step else lvl + math.copysign(step, goal - lvl)
                    target[i + k] = lvl
                    k += 1
                phase[i:i + k] = ph
                cycle[i:i + k] = self.cycle
                i += k
                self.last_target = lvl
                if lvl == goal:
                    self.phase = self._paused_phase
            elif ph is Phase.ENDING:
                rate = max(self._ramp_rate(), 10.0)
                t_end = self.phase_t + dt * np.arange(1, left + 1, dtype=np.float64)
                ramp = np.maximum(0.0, self._end_from - rate * t_end)
                target[i:] = ramp
                phase[i:] = ph
                cycle[i:] = self.cycle
                self.phase_t += left * dt
                self.last_target = float(ramp[-1])
                if self.last_target <= 0.0:
                    self.phase = Phase.DONE
                i = n
            else:
                # SLACK, PAUSED, DONE: hold a level, protocol time stands still.
                if ph is Phase.SLACK:
                    lvl_c = self.limits.safe_rest_force_n
                elif ph is Phase.PAUSED:
                    lvl_c = self.last_target
                else:
                    lvl_c = 0.0
                target[i:] = lvl_c
                phase[i:] = ph
                cycle[i:] = self.cycle
                self.last_target = lvl_c
                i = n
        angle = np.full(n, self.settings.angle_deg)
        return Block(np.minimum(target, self.clamp_n), angle, phase, cycle)
