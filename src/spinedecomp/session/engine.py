"""The session engine: runs a resolved protocol on a table, closed-loop, with the safety
monitor, live edits, scheduled faults, events and telemetry.

Two loops share the same compiled control law and safety monitor:
- the fused loop, for the simulated table: whole blocks of periods in one compiled call, so
  a 30-minute session at 1 kHz simulates in seconds;
- the step loop, for any other `Table` (a real table over Modbus): read, control, check,
  write, one period at a time, paced by the clock.

Whatever happens - a trip, an unhandled exception, a signal, the end of the protocol - the
session ends through a controlled release (`finally:`), and every step of the way is an event.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from spinedecomp.control import law as cl
from spinedecomp.control.config import (
    RATE_MAX_HZ,
    RATE_MIN_HZ,
    ControllerConfig,
    DriveEnvelope,
    envelope,
)
from spinedecomp.control.protocol import ResolvedProtocol
from spinedecomp.control.trajectory import Phase, Trajectory
from spinedecomp.core.clock import Clock, SimClock
from spinedecomp.core.errors import ProtocolError, SessionError
from spinedecomp.device import physics as ph
from spinedecomp.device.simulated import SimulatedTable
from spinedecomp.device.table import ActuatorCommand, Table
from spinedecomp.safety import codes
from spinedecomp.safety import law as zl
from spinedecomp.safety.alarms import spec
from spinedecomp.safety.config import SafetyConfig
from spinedecomp.session import fused
from spinedecomp.session.model import (
    TRANSITIONS,
    Alarm,
    Command,
    Event,
    Fault,
    SessionState,
)
from spinedecomp.session.telemetry import COL, N_COL, BlockSink, Recorder

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
RELEASE_TIMEOUT_S = 60.0
# A pause holds force on the patient; nobody should be left under traction by a forgotten
# pause, so after this long the session ends with its normal ramp-down.
MAX_PAUSE_S = 300.0
# The harness must be snug this soon after start, or something is not attached (at least;
# a slow approach on a table of unknown dynamics gets longer, see SessionEngine).
SLACK_TIMEOUT_S = 15.0
# How bad a load-cell fault mode is: of two on one cell, the worse one shows.
_LC_SEVERITY = {ph.LC_OK: 0, ph.LC_DRIFT: 1, ph.LC_SPIKE: 1, ph.LC_FREEZE: 2,
                ph.LC_STUCK_VALUE: 2, ph.LC_NAN: 3}
# A release loop that fails this many times in a row is left to the table's own release.
MAX_RELEASE_FAILURES = 20
SLACK_MAX_MM = 100.0  # the longest slack the envelope allows, with margin
TARE_WINDOW_S = 0.5  # load cells are averaged this long at set-up


@dataclass(frozen=True)
class GuardingEpisode:
    """Muscle guarding the controller detected and backed off from."""

    t: float  # start, session time s
    duration_s: float
    peak_excess_n: float  # largest force above the set-point
    payout_mm: float  # cable paid out to back off
    ramp_s: float  # the next ramp-up's length after it


def check_rate(rate_hz: float) -> None:
    """Refuse a control rate the loop cannot hold safely, naming the allowed range."""
    if not (math.isfinite(rate_hz) and RATE_MIN_HZ <= rate_hz <= RATE_MAX_HZ):
        raise ProtocolError("rate_hz", f"must be within {RATE_MIN_HZ:g}-{RATE_MAX_HZ:g} Hz, got "
                            f"{rate_hz:g} (below {RATE_MIN_HZ:g} Hz a contact cannot be stopped "
                            "within its force budget nor a fault filtered over two periods)")


class SoftwareFault(RuntimeError):
    """Raised by the `controller-crash` fault: stands for any unhandled error."""


class SessionInterrupted(BaseException):
    """Raised from a SIGTERM handler so the session's `finally:` releases the table."""


@dataclass
class SessionResult:
    """What a finished session leaves behind."""

    end_state: SessionState
    events: list[Event]
    alarms: list[Alarm]
    telemetry: F64
    rate_hz: float
    simulated_s: float
    wall_s: float
    clamp_n: float
    faults: list[Fault]
    release_started_after_ms: float | None
    force_below_safe_after_s: float | None
    trip_t: float | None
    release_cmd_t: float | None
    motor_off: bool
    safe_n: float
    abort_reason: str | None
    guarding: list[GuardingEpisode] = field(default_factory=list)


@dataclass(order=True)
class _Scheduled:
    t: float
    seq: int
    command: Command | None = field(compare=False, default=None)
    fault: Fault | None = field(compare=False, default=None)
    clear: bool = field(compare=False, default=False)


class SessionEngine:
    """Runs one session. Not thread-safe except `submit`, which any thread may call."""

    def __init__(
        self,
        table: Table,
        resolved: ResolvedProtocol,
        *,
        rate_hz: float = 1000.0,
        clock: Clock | None = None,
        safety: SafetyConfig | None = None,
        controller: ControllerConfig | None = None,
        sinks: list[BlockSink] | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_alarm: Callable[[Alarm], None] | None = None,
        block_s: float = 0.25,
    ) -> None:
        check_rate(rate_hz)
        self.table = table
        self.resolved = resolved
        self.rate_hz = rate_hz
        self.dt = 1.0 / rate_hz
        self.clock: Clock = clock if clock is not None else SimClock(self.dt)
        if abs(self.clock.dt - self.dt) > 1e-12:
            raise SessionError(f"clock period {self.clock.dt} s does not match {self.dt} s")
        self.safety = safety or SafetyConfig.for_region(resolved.region)
        self.controller = controller or ControllerConfig.for_region(resolved.region)
        self.trajectory = Trajectory(resolved)
        self.recorder = Recorder()
        self.sinks: list[BlockSink] = [self.recorder, *(sinks or [])]
        self.on_event = on_event
        self.on_alarm = on_alarm
        self.block_n = max(1, round(block_s * rate_hz)) if self.clock.simulated else 1
        self.state = SessionState.IDLE
        self.events: list[Event] = []
        self.alarms: list[Alarm] = []
        self.faults: list[Fault] = []
        self._schedule: list[_Scheduled] = []
        self._seq = 0
        self._inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        # Compiled-loop state: each part owns its own array.
        dyn = table.info.dynamics
        self.envelope: DriveEnvelope = envelope(
            resolved.region,
            dyn.motor_lag_s if dyn else None,
            dyn.transport_delay_s if dyn else None,
            dyn.stiffness_max_n_per_mm if dyn else None)
        self.c = self.controller.new_state(self.envelope)
        self.cp = self.controller.params(self.dt, self.envelope)
        self.z = zl.new_state()
        # Unloaded pulls are capped by the monitor at twice the approach speed of this
        # table's envelope (docs/safety.md, pull caps).
        self.safety = replace(self.safety,
                              slack_v_cap_mm_s=2.0 * float(self.cp[cl.CP_V_APPROACH]))
        self.zp = self.safety.params(self.dt)
        self.tare_a_n = 0.0
        self.tare_b_n = 0.0
        # The harness must be snug by the time the approach speed has covered the longest
        # slack the envelope allows (docs/control.md), or it is loose.
        v_app = float(self.cp[cl.CP_V_APPROACH])
        self.slack_timeout_s = max(SLACK_TIMEOUT_S, SLACK_MAX_MM / v_app + 5.0)
        self.guarding_episodes: list[GuardingEpisode] = []
        self.alarm_buf = np.zeros((zl.MAX_ALARMS, 4))
        self._alarms_seen = 0
        self.inp = np.zeros(fused.N_IN)
        self.inp[fused.IN_COMM_OK] = 1.0
        self._confirmed = False
        self._confirm_requested = False
        self._abort_reason: str | None = None
        self._normal_end = False
        self._steps = 0
        self._wall0 = 0.0
        self._wall = 0.0
        self._release_t0: float | None = None
        self._crash_at: float | None = None
        self._paused_at: float | None = None
        self._fused = isinstance(table, SimulatedTable)

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Session time, s."""
        return self._steps * self.dt

    def _event(self, kind: str, reason: str, field_: str | None = None,
               old: float | None = None, new: float | None = None) -> None:
        ev = Event(round(self.now, 6), kind, reason, field_, old, new)
        self.events.append(ev)
        log.info("t=%.3f %s: %s", ev.t, kind, reason)
        if self.on_event is not None:
            self.on_event(ev)

    def _transition(self, new: SessionState, reason: str) -> None:
        if new not in TRANSITIONS[self.state]:
            raise SessionError(f"cannot go from {self.state.value} to {new.value}")
        old = self.state
        self.state = new
        self.inp[fused.IN_STATE] = new.code
        self._event("state", f"{old.value} -> {new.value}: {reason}")

    # ---- set-up ----------------------------------------------------------------------------
    def setup(self, *, confirm_high_force: bool = False) -> None:
        """Set-up checks: the patient switch must be connected and tested; the angle is set."""
        if self.state is not SessionState.IDLE:
            raise SessionError(f"setup needs an idle session, not {self.state.value}")
        self._apply_due_faults(0.0)
        if not self.table.test_patient_switch():
            self._abort_reason = "patient switch not connected or failed its test"
            self._transition(SessionState.ABORTED, self._abort_reason)
            raise SessionError("cannot start: the patient stop switch is not connected or did "
                               "not pass its press/release test")
        self._event("setup", "patient switch tested: both channels respond")
        self._tare()
        if confirm_high_force:
            self.confirm_high_force("confirmed at set-up")
        self._transition(SessionState.READY, "set-up complete")

    def _tare(self) -> None:
        """Average both load cells over the tare window with the cable slack and the drive
        off; subtract each cell's offset for the session; refuse a cell whose offset or noise
        is beyond the documented fault thresholds (docs/safety.md)."""
        n = max(2, round(TARE_WINDOW_S / self.dt))
        self.table.write(ActuatorCommand(0.0, self.trajectory.settings.angle_deg, False, 0))
        vals = np.empty((n, 2))
        if not self.clock.simulated:
            self.clock.start()
        for i in range(n):
            self.table.advance(self.dt)
            if not self.clock.simulated:
                self.clock.wait_next()
            fr = self.table.read()
            vals[i] = (fr.force_a_n, fr.force_b_n)
        if not np.all(np.isfinite(vals)):
            self._refuse_start("a load cell reads NaN or infinity with the cable slack")
        off = vals.mean(axis=0)
        sd = vals.std(axis=0)
        lim, noise_lim = self.safety.tare_limit_n, self.safety.tare_noise_limit_n
        for name, o, d in (("A", off[0], sd[0]), ("B", off[1], sd[1])):
            if abs(o) > lim:
                self._refuse_start(f"load cell {name} reads {o:.1f} N with the cable slack "
                                   f"(tare allowed within +/-{lim:.0f} N)")
            if d > noise_lim:
                self._refuse_start(f"load cell {name} is noisy: {d:.1f} N sd with the cable slack "
                                   f"(allowed {noise_lim:.0f} N)")
        self.tare_a_n, self.tare_b_n = float(off[0]), float(off[1])
        noise = float(np.max(sd))
        self.cp = self.controller.params(self.dt, self.envelope, noise_sd_n=noise,
                                         tare_a_n=self.tare_a_n, tare_b_n=self.tare_b_n)
        self.safety = replace(self.safety, tare_a_n=self.tare_a_n, tare_b_n=self.tare_b_n,
                              noise_a_n=float(sd[0]), noise_b_n=float(sd[1]))
        self.zp = self.safety.params(self.dt)
        self._event("setup", f"load cells tared over {n * self.dt:.2f} s: offsets A {off[0]:.2f} N, "
                    f"B {off[1]:.2f} N; noise {sd[0]:.2f}/{sd[1]:.2f} N sd")
        self._event("setup", f"drive: lag {self.envelope.motor_lag_s * 1e3:.0f} ms, delay "
                    f"{self.envelope.transport_delay_s * 1e3:.0f} ms"
                    f"{'' if self.table.info.dynamics else ' (not declared: worst case)'}; "
                    f"loop crossover {self.cp[cl.CP_WC]:.1f} rad/s, approach "
                    f"{self.cp[cl.CP_V_APPROACH]:.1f} mm/s")

    def _refuse_start(self, reason: str) -> None:
        self._abort_reason = reason
        self._transition(SessionState.ABORTED, reason)
        raise SessionError(f"cannot start: {reason}: tare or service the table")

    def confirm_high_force(self, reason: str, user: str = "clinician") -> None:
        """Record the operator's confirmation for forces above the confirm threshold."""
        if not self._confirmed:
            self._confirmed = True
            self._event("confirm", f"{user}: forces above {self.safety.confirm_force_n:.0f} N "
                        f"confirmed ({reason})")

    def schedule(self, t: float, command: Command) -> None:
        """Deliver a command at session time t (simulation, tests)."""
        self._seq += 1
        heapq.heappush(self._schedule, _Scheduled(t, self._seq, command=command))

    def inject(self, fault: Fault) -> None:
        """Schedule a fault."""
        self._seq += 1
        heapq.heappush(self._schedule, _Scheduled(fault.t, self._seq, fault=fault))
        if fault.duration_s is not None:
            self._seq += 1
            heapq.heappush(self._schedule, _Scheduled(fault.t + fault.duration_s, self._seq,
                                                      fault=fault, clear=True))

    def submit(self, command: Command) -> None:
        """Deliver a command as soon as possible (any thread)."""
        self._inbox.put(command)

    # ---- the clamp -------------------------------------------------------------------------
    @property
    def clamp_n(self) -> float:
        """The final clamp now: min(protocol cap, clinician cap, device limit) and, until
        confirmed, the operator-confirm threshold."""
        clamp = min(self.trajectory.clamp_n, self.safety.abs_limit_n)
        if not self._confirmed:
            clamp = min(clamp, self.safety.confirm_force_n)
        return clamp

    # ---- commands and faults ---------------------------------------------------------------
    def _handle(self, cmd: Command) -> None:
        if self.state.terminal:
            return
        try:
            self._apply(cmd)
        except (ProtocolError, SessionError) as exc:
            self._event("rejected", f"{cmd.kind} by {cmd.user}: {exc}", cmd.field)

    def _apply(self, cmd: Command) -> None:
        releasing = self.state is SessionState.RELEASING
        if cmd.kind == "operator-stop":
            self.inp[fused.IN_OP_STOP] = 1.0
            self._event("command", f"operator stop by {cmd.user}: {cmd.reason or 'STOP pressed'}")
            if cmd.reason and self._abort_reason is None and self.z[zl.Z_TRIPPED] == 0.0:
                # Who stopped and why (the store ordering a release says what failed), not
                # only the alarm's generic "operator pressed STOP".
                self._abort_reason = f"operator-stop by {cmd.user}: {cmd.reason}"
        elif cmd.kind == "acknowledge":
            self.acknowledge(cmd.user)
        elif releasing:
            raise SessionError(f"{cmd.kind} not allowed while releasing")
        elif cmd.kind == "edit":
            if cmd.field is None or cmd.value is None:
                raise SessionError("edit needs a field and a value")
            old = self.trajectory.edit(cmd.field, cmd.value)
            self._event("edit", f"{cmd.user}: {cmd.reason or 'live adjustment'}", cmd.field, old,
                        cmd.value)
        elif cmd.kind == "pause":
            if self.state is not SessionState.RUNNING:
                raise SessionError("pause needs a running session")
            self.trajectory.pause()
            self._paused_at = self.now
            self._transition(SessionState.PAUSED, cmd.reason or f"paused by {cmd.user}")
        elif cmd.kind == "resume":
            if self.state is not SessionState.PAUSED:
                raise SessionError("resume needs a paused session")
            self.trajectory.resume()
            self._transition(SessionState.RUNNING, cmd.reason or f"resumed by {cmd.user}")
        elif cmd.kind == "stop":
            self.trajectory.stop()
            if self.state is SessionState.PAUSED:
                self._transition(SessionState.RUNNING, "stopping")
            self._event("command", f"session ended early by {cmd.user}: {cmd.reason or 'stop'}")
        elif cmd.kind == "confirm":
            self.confirm_high_force(cmd.reason or "confirmed", cmd.user)

    def acknowledge(self, user: str) -> int:
        """Acknowledge every latched alarm; returns how many."""
        n = 0
        for a in self.alarms:
            if not a.acknowledged:
                a.acknowledged = True
                a.acknowledged_by = user
                n += 1
        if n:
            self._event("acknowledge", f"{n} alarm(s) acknowledged by {user}")
        return n

    def _set_fault(self, f: Fault, on: bool) -> None:
        flt = self.table.faults if isinstance(self.table, SimulatedTable) else None
        k = f.kind
        v = 1.0 if on else 0.0
        ch_mode = ph.FLT_LC_A_MODE if f.channel == "a" else ph.FLT_LC_B_MODE
        ch_arg = ph.FLT_LC_A_ARG if f.channel == "a" else ph.FLT_LC_B_ARG
        engine_faults = {"controller-hang": fused.IN_CTRL_HUNG,
                         "controller-runaway": fused.IN_CTRL_RUNAWAY,
                         "operator-stop": fused.IN_OP_STOP}
        if k in engine_faults:
            self.inp[engine_faults[k]] = v
        elif k == "comm-lost":
            self.inp[fused.IN_COMM_OK] = 0.0 if on else 1.0
        elif k == "controller-crash":
            self._crash_at = f.t
        elif flt is None:
            raise SessionError(f"fault {k} can only be injected into the simulated table")
        elif k == "patient-switch":
            flt[ph.FLT_SWITCH_PRESSED] = v
        elif k == "switch-disagree":
            flt[ph.FLT_SWITCH_B_STUCK] = v
        elif k == "switch-unplugged":
            flt[ph.FLT_SWITCH_UNPLUGGED] = v
        elif k == "motor-stall":
            flt[ph.FLT_MOTOR_STALL] = v
        elif k == "angle-stuck":
            flt[ph.FLT_ANGLE_STUCK] = v
        elif k == "overforce-spike":
            flt[ph.FLT_JERK_MM] = (f.arg or 0.0) if on else 0.0
        elif k == "harness-detach":
            assert isinstance(self.table, SimulatedTable)
            self.table.params[ph.P_SLACK] += (f.arg or 0.0) if on else -(f.arg or 0.0)
        else:
            modes = {"loadcell-freeze": ph.LC_FREEZE, "loadcell-nan": ph.LC_NAN,
                     "loadcell-drift": ph.LC_DRIFT, "loadcell-offset": ph.LC_SPIKE,
                     "loadcell-spike": ph.LC_SPIKE}
            if on and _LC_SEVERITY[int(flt[ch_mode])] > _LC_SEVERITY[modes[k]]:
                # Two faults on one cell (even in one period): the more severe one shows (a
                # NaN cell stays NaN whatever else is added); never a silent overwrite.
                log.warning("fault %s on cell %s: the cell already has a more severe fault, "
                            "which stays", k, f.channel)
                return
            if not on and int(flt[ch_mode]) != modes[k]:
                return  # the end of a fault that did not show (a worse one did): leave that
            flt[ch_mode] = modes[k] if on else ph.LC_OK
            flt[ch_arg] = (f.arg or 0.0) if on else 0.0

    def _apply_due_faults(self, t: float) -> None:
        eps = 0.5 * self.dt
        while self._schedule and self._schedule[0].t <= t + eps:
            item = heapq.heappop(self._schedule)
            if item.fault is not None:
                self._set_fault(item.fault, not item.clear)
                if not item.clear:
                    self.faults.append(item.fault)
                    self._event("fault", f"injected {item.fault.label()}")
            elif item.command is not None:
                self._handle(item.command)

    # ---- running ---------------------------------------------------------------------------
    def run(self, progress: Callable[[SessionEngine], None] | None = None,
            until_s: float | None = None) -> SessionResult:
        """Start (from ready) and run to the end: completed or aborted. `until_s` stops early
        (tests) by an operator stop at that time."""
        if self.state is SessionState.IDLE:
            self.setup()
        if self.state is not SessionState.READY:
            raise SessionError(f"run needs a ready session, not {self.state.value}")
        self._wall0 = time.perf_counter()
        self.clock.start()
        self._transition(SessionState.RUNNING, "treatment started")
        last_progress = 0.0
        try:
            while not self.state.terminal:
                self._cycle()
                if until_s is not None and self.now >= until_s and not self.state.terminal:
                    self.inp[fused.IN_OP_STOP] = 1.0
                if progress is not None and time.perf_counter() - last_progress > 0.1:
                    last_progress = time.perf_counter()
                    progress(self)
        except BaseException as exc:
            reason = ("signal: " + type(exc).__name__ if isinstance(
                exc, KeyboardInterrupt | SessionInterrupted | SystemExit)
                else f"unhandled {type(exc).__name__}: {exc}")
            log.error("session fault, releasing: %s", reason)
            self._software_fault(reason)
            self._emergency_release(reason)
            if not isinstance(exc, SoftwareFault):
                raise
        finally:
            if not self.state.terminal:
                self._emergency_release("session loop ended unexpectedly")
            self._wall = time.perf_counter() - self._wall0
            self.table.close()
        return self.result()

    def _software_fault(self, reason: str) -> None:
        z = self.z
        if z[zl.Z_TRIPPED] == 0.0:
            z[zl.Z_TRIPPED] = codes.SOFTWARE_FAULT
            z[zl.Z_TRIP_T] = z[zl.Z_T]
            f = min(float(z[zl.Z_FILT]), self.clamp_n)
            z[zl.Z_REL_F0] = f
            z[zl.Z_REL_TARGET] = f
        n = int(z[zl.Z_NALARM])
        if n < zl.MAX_ALARMS:
            self.alarm_buf[n] = (codes.SOFTWARE_FAULT, z[zl.Z_T], 0.0, z[zl.Z_FILT])
            z[zl.Z_NALARM] = n + 1
        self._abort_reason = reason
        self._collect_alarms()

    def _emergency_release(self, reason: str) -> None:
        """Release after the main loop failed: run only the monitor's release law until force
        has stayed safe. The monitor owns the release to the end: a further fault, exception
        or signal during it re-arms it (the table's own release is ordered as well, never
        instead); only if the release loop itself keeps failing does the session end on the
        table's own release."""
        failures = 0
        while not self.state.terminal:
            try:
                if self.state is not SessionState.RELEASING:
                    self._transition(SessionState.RELEASING, reason)
                self.inp[fused.IN_CTRL_HUNG] = 1.0  # the controller is not trusted any more
                self._crash_at = None
                if self._release_t0 is None:
                    self._release_t0 = self.now
                while not self.state.terminal:
                    self._cycle()
            except BaseException as exc:  # a release is never abandoned
                failures += 1
                log.error("release interrupted (%s: %s); re-arming it and ordering the "
                          "table's own release as well (%d)", type(exc).__name__, exc, failures)
                self._order_table_release()
                self._event("fault", f"release interrupted by {type(exc).__name__}; re-armed "
                            "and the table's own release ordered as well")
                if failures >= MAX_RELEASE_FAILURES:
                    log.critical("the release loop failed %d times; the table's own release "
                                 "is all that is left", failures)
                    self.state = SessionState.ABORTED
                    self._event("state", f"aborted: {reason}; release loop failed "
                                f"{failures} times, table firmware release ordered")

    def _order_table_release(self) -> None:
        try:
            self.table.release()
        except BaseException:  # the caller goes on releasing regardless
            log.exception("ordering the table's own release failed")

    def _cycle(self) -> None:
        """One block: commands and faults due, set-points, the loop, then the bookkeeping."""
        while True:
            try:
                self._handle(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._apply_due_faults(self.now)
        if self._crash_at is not None and self.now >= self._crash_at - 0.5 * self.dt:
            self._crash_at = None
            raise SoftwareFault("controller-crash fault injected")
        n = self.block_n
        if self._schedule:
            due = self._schedule[0].t - self.now
            n = max(1, min(n, round(due / self.dt)))
        if self.trajectory.phase is Phase.SLACK and self.state is SessionState.RUNNING:
            n = min(n, max(1, round(0.02 / self.dt)))
        if self.state is SessionState.RELEASING:
            tgt = np.zeros(n)
            blk_angle = np.full(n, self.trajectory.settings.angle_deg)
            blk_phase = np.full(n, float(Phase.RELEASE))
            blk_cycle = np.full(n, float(self.trajectory.cycle))
        else:
            blk = self.trajectory.block(n, self.dt)
            tgt, blk_angle, blk_phase, blk_cycle = blk.target_n, blk.angle_deg, blk.phase, blk.cycle
            if not self._confirmed and not self._confirm_requested and \
                    float(np.max(tgt, initial=0.0)) > self.safety.confirm_force_n:
                self._confirm_requested = True
                self._event("confirm-needed", f"set-point above {self.safety.confirm_force_n:.0f} N "
                            "held until the operator confirms")
        clamp = self.clamp_n
        out = np.empty((n, N_COL))
        t0 = self.now
        if self._fused:
            assert isinstance(self.table, SimulatedTable)
            tb = self.table
            fused.run_block(n, t0, self.dt, tgt, blk_angle, blk_phase, blk_cycle, tb.noise(n),
                            clamp, tb.state, tb.params, tb.faults, self.c, self.cp, self.z,
                            self.zp, self.alarm_buf, self.inp, out)
            self._steps += n
            if self.clock.simulated:
                assert isinstance(self.clock, SimClock)
                self.clock.advance(n)
            else:
                self.clock.wait_next()
        else:
            self._step_block(n, t0, tgt, blk_angle, blk_phase, blk_cycle, clamp, out)
        for sink in self.sinks:
            sink(out)
        self._after_block(out)

    def _step_block(self, n: int, t0: float, tgt: F64, angle: F64, phase: F64, cycle: F64,
                    clamp: float, out: F64) -> None:
        """The step loop for a table that is not the simulator."""
        c, cp, z, zp, inp = self.c, self.cp, self.z, self.zp, self.inp
        for i in range(n):
            fr = self.table.read()
            comm = 1.0 if (fr.comm_ok and inp[fused.IN_COMM_OK] > 0.5) else 0.0
            if inp[fused.IN_CTRL_HUNG] > 0.5:
                v_ctrl = float(c[cl.C_CMD])
            else:
                v_ctrl = cl.controller_step(c, cp, self.dt, float(tgt[i]), 1.0, clamp,
                                            fr.force_a_n, fr.force_b_n, fr.position_mm)
            v = zl.safety_step(z, zp, self.alarm_buf, self.dt, fr.force_a_n, fr.force_b_n,
                               fr.position_mm, fr.angle_deg, float(angle[i]), fr.switch_a,
                               fr.switch_b, inp[fused.IN_OP_STOP], c[cl.C_HEARTBEAT], comm,
                               clamp, v_ctrl, float(tgt[i]), inp[fused.IN_TRIP_CODE],
                               fr.effort_n)
            tripped = z[zl.Z_TRIPPED] != 0.0
            enable = z[zl.Z_MOTOR_OFF] < 0.5
            self.table.write(ActuatorCommand(v, float(angle[i]), enable, int(c[cl.C_HEARTBEAT])))
            self.table.advance(self.dt)
            # One read per period (the Table contract): the row records what the loop saw.
            out[i] = (t0 + (i + 1) * self.dt, c[cl.C_TARGET], fr.force_a_n, fr.force_b_n,
                      fr.force_true_n, fr.position_mm, fr.distraction_mm, fr.angle_deg,
                      angle[i], v if enable else math.nan,
                      phase[i] if not tripped else float(Phase.RELEASE),
                      inp[fused.IN_STATE] if not tripped else SessionState.RELEASING.code,
                      fr.guarding, cycle[i])
            self._steps += 1
            if not self.clock.simulated:
                self.clock.wait_next()
            elif isinstance(self.clock, SimClock):
                self.clock.advance(1)

    def _collect_alarms(self) -> None:
        n = int(self.z[zl.Z_NALARM])
        while self._alarms_seen < n:
            row = self.alarm_buf[self._alarms_seen]
            self._alarms_seen += 1
            sp = spec(int(row[zl.A_CODE]))
            alarm = Alarm(t=round(float(row[zl.A_T]), 6), kind=sp.kind, code=sp.code,
                          priority=sp.priority, technical=sp.technical, condition=sp.condition,
                          value=float(row[zl.A_VALUE]), force_n=float(row[zl.A_FORCE]),
                          action=sp.action)
            self.alarms.append(alarm)
            self._event("alarm", f"{sp.priority.value} priority: {sp.condition} "
                        f"(value {alarm.value:.4g}); {sp.action}")
            log.warning("ALARM %s (%s) at t=%.3f: %s", sp.kind, sp.priority.value, alarm.t,
                        sp.condition)
            if self.on_alarm is not None:
                self.on_alarm(alarm)

    def _collect_guarding(self) -> None:
        for t0, dur, peak, payout in cl.new_episodes(self.c, len(self.guarding_episodes)):
            ramp = self.trajectory.lengthen_next_ramp()
            ep = GuardingEpisode(round(t0, 3), round(dur, 3), round(peak, 2), round(payout, 2),
                                 round(ramp, 2))
            self.guarding_episodes.append(ep)
            self._event("guarding", f"muscle guarding at t={t0:.1f} s for {dur:.1f} s: force "
                        f"{peak:.1f} N above the set-point; backed off {payout:.1f} mm, "
                        f"progression held; next ramp {ramp:.1f} s", "force_n", None, peak)

    def _after_block(self, out: F64) -> None:
        z = self.z
        self._collect_alarms()
        self._collect_guarding()
        tripped = int(z[zl.Z_TRIPPED])
        if tripped and self.state in (SessionState.RUNNING, SessionState.PAUSED):
            if tripped == codes.END_OF_SESSION:
                self._transition(SessionState.RELEASING, "end of session: final release")
            else:
                sp = spec(tripped)
                self._abort_reason = self._abort_reason or f"{sp.kind}: {sp.condition}"
                self._transition(SessionState.RELEASING, f"safety trip: {sp.condition}")
            self._release_t0 = self.now
        if self.state is SessionState.RUNNING and self.trajectory.phase is Phase.SLACK:
            meas = 0.5 * (out[-1, COL["force_a_n"]] - self.tare_a_n +
                          out[-1, COL["force_b_n"]] - self.tare_b_n)
            if meas >= 0.8 * min(self.safety.safe_n, self.clamp_n):
                self.trajectory.slack_taken_up()
                self._event("slack", f"slack taken up at {out[-1, COL['position_mm']]:.1f} mm")
            elif self.now > self.slack_timeout_s:
                self.inp[fused.IN_TRIP_CODE] = codes.SLACK_TIMEOUT
        overrun = self.resolved.duration_s + MAX_PAUSE_S + self.slack_timeout_s + 120.0
        if self.state in (SessionState.RUNNING, SessionState.PAUSED) and self.now > overrun:
            self.inp[fused.IN_TRIP_CODE] = codes.OVERRUN
        if self.state is SessionState.PAUSED and self._paused_at is not None and \
                self.now - self._paused_at > MAX_PAUSE_S:
            self._paused_at = None
            self.trajectory.stop()
            self._transition(SessionState.RUNNING, f"pause longer than {MAX_PAUSE_S:.0f} s: "
                             "ending the session with its ramp-down")
        if self.state is SessionState.RUNNING and self.trajectory.done and not self._normal_end:
            self._normal_end = True
            z[zl.Z_RELEASE_REQ] = 1.0
            self._event("end", "protocol finished; final release")
        if self.state is SessionState.RELEASING:
            if z[zl.Z_DONE] > 0.5:
                if tripped == codes.END_OF_SESSION and not self.alarms:
                    self._transition(SessionState.COMPLETED, "released; motor disabled")
                else:
                    self._transition(SessionState.ABORTED, self._abort_reason or "released after alarm")
            elif self._release_t0 is not None and self.now - self._release_t0 > RELEASE_TIMEOUT_S:
                # The monitor's own release must have ended long before; if not, hand over to
                # the table's firmware and say so.
                log.error("release did not complete in %.0f s: ordering the table's own release",
                          RELEASE_TIMEOUT_S)
                self.table.release()
                self._abort_reason = (f"release did not complete in {RELEASE_TIMEOUT_S:.0f} s; "
                                      "table firmware release ordered")
                self._transition(SessionState.ABORTED, self._abort_reason)

    # ---- result ----------------------------------------------------------------------------
    def result(self) -> SessionResult:
        """Everything a finished (or running) session has produced."""
        z = self.z
        trip_t = float(z[zl.Z_TRIP_T]) if z[zl.Z_TRIPPED] not in (0.0, codes.END_OF_SESSION) else None
        rel_ms: float | None = None
        below: float | None = None
        if trip_t is not None:
            onset = min([f.t for f in self.faults if f.t <= trip_t + 1e-9], default=trip_t)
            if z[zl.Z_FIRST_CMD_T] >= 0.0:
                rel_ms = (float(z[zl.Z_FIRST_CMD_T]) - onset) * 1000.0
            if z[zl.Z_BELOW_SAFE_T] >= 0.0:
                below = float(z[zl.Z_BELOW_SAFE_T]) - trip_t
        return SessionResult(
            end_state=self.state,
            events=list(self.events),
            alarms=list(self.alarms),
            telemetry=self.recorder.array(),
            rate_hz=self.rate_hz,
            simulated_s=self.now,
            wall_s=self._wall,
            clamp_n=self.clamp_n,
            faults=list(self.faults),
            release_started_after_ms=rel_ms,
            force_below_safe_after_s=below,
            trip_t=trip_t,
            release_cmd_t=float(z[zl.Z_FIRST_CMD_T]) if z[zl.Z_FIRST_CMD_T] >= 0.0 else None,
            motor_off=bool(z[zl.Z_MOTOR_OFF] > 0.5),
            safe_n=self.safety.safe_n,
            abort_reason=self._abort_reason if self.state is SessionState.ABORTED else None,
            guarding=list(self.guarding_episodes),
        )
