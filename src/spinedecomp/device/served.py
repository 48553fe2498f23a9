"""The served simulator: the physics simulator behind a real Modbus TCP server.

`ServedTable` is the reference implementation of the table side of `docs/device-protocol.md`:
a `SimulatedTable` whose physics advances in wall time on its own thread (fixed steps of
1/rate_hz, 1 kHz by default, catching up if the thread was late so that physics time tracks
wall time), with commands taken from the holding registers and readings answered from the
live state. It runs the same `physics_step` as the in-process simulator.

The table side of the safety design lives here too:
- the heartbeat watchdog: while the drive is enabled, if the HEARTBEAT register has not
  changed for WATCHDOG_MS, the table releases on its own (drive disabled, the reel
  freewheels and pays out), sets `HEARTBEAT_LOST` and stays released until a FAULT_RESET;
- a RELEASE command latches the same way;
- FAULT_RESET is honoured only with ENABLE = 0, so a reset can never re-enable the drive by
  itself: the controller must enable it again in a later write. In one write FAULT_RESET is
  applied before RELEASE, so a write carrying both leaves the table released;
- the table's own FORCE_LIMIT: at it the table releases and latches `FORCE_LIMIT`;
- the end of travel: no pull beyond TRAVEL_MAX, `TRAVEL_END` while the cable is there;
- the angle of pull is clamped to ANGLE_MIN..ANGLE_MAX, follows its set-point with the drive
  on or off, and holds still while the table is released;
- SWITCH_PROMPT is obeyed only when the capability is advertised (`switch_prompt=True`).

`ServedSimulator` puts a `ServedTable` behind a `RegisterServer` (the pymodbus adapter). Its
server can be stopped and restarted while the table keeps running, which is what a broken
cable looks like from the table's side.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from spinedecomp.core.units import limits_for
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device import physics as ph
from spinedecomp.device.modbus_adapter import RegisterServer
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import ActuatorCommand

log = logging.getLogger(__name__)

FIRMWARE = f"served-sim-{mr.MAP_VERSION}"
# How far physics may fall behind wall time before the backlog is dropped (the process was
# suspended): beyond this, catching up would only replay a pause the patient never had.
MAX_CATCH_UP_S = 0.5


@dataclass(frozen=True)
class ServedStatus:
    """A snapshot of the served table, for tests, the CLI and table makers."""

    t_s: float
    samples: int
    enabled: bool
    motor_state: int
    faults: int
    heartbeat: int
    watchdog_s: float
    force_true_n: float
    position_mm: float
    angle_deg: float
    velocity_cmd_mm_s: float


def _or_nan(x: float | None) -> float:
    return math.nan if x is None else x


class ServedTable:
    """A simulated table that serves the register map (implements `RegisterBank`)."""

    def __init__(self, model: PatientModel, *, angle_deg: float = 0.0, rate_hz: float = 1000.0,
                 name: str = "spinedecomp served simulator", serial: str = "SIM-0001",
                 switch_press_delay_s: float = 0.1, switch_press_s: float = 0.2,
                 switch_prompt: bool = True) -> None:
        """A served table for `model`; `switch_prompt=False` leaves the SWITCH_PROMPT
        capability out (the table then ignores the bit, and nobody presses the switch unless a
        test sets the physics fault)."""
        if not 100.0 <= rate_hz <= 10000.0:
            raise ValueError(f"rate_hz must be within 100-10000 Hz, got {rate_hz:g}")
        self.sim = SimulatedTable(model, angle_deg=angle_deg)
        self.rate_hz = rate_hz
        self.step_s = 1.0 / rate_hz
        lim = limits_for(model.region)
        dyn = self.sim.info.dynamics
        self.identity = mr.Identity(
            capabilities=int(mr.Capability.LUMBAR | mr.Capability.CERVICAL
                             | mr.Capability.SIMULATED
                             | (mr.Capability.SWITCH_PROMPT if switch_prompt else 0)),
            force_limit_n=lim.force.absolute.hi,
            angle_min_deg=lim.angle.absolute.lo,
            angle_max_deg=lim.angle.absolute.hi,
            travel_max_mm=lim.travel.absolute.hi,
            velocity_max_mm_s=float(self.sim.params[ph.P_VMAX]),
            sample_rate_hz=round(rate_hz),
            name=name,
            firmware=FIRMWARE,
            serial=serial,
            # The simulated drive declares its dynamics as a real table should (NaN = not).
            motor_lag_s=_or_nan(dyn.motor_lag_s if dyn else None),
            transport_delay_s=_or_nan(dyn.transport_delay_s if dyn else None),
            stiffness_max_n_per_mm=_or_nan(dyn.stiffness_max_n_per_mm if dyn else None),
        )
        self._identity_regs = mr.encode_identity(self.identity)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._cmd = mr.Command(heartbeat=0, control=0, angle_deg=angle_deg)
        self._cmd_regs = mr.encode_command(self._cmd)
        self._watchdog_reg = 0
        self._hb_t = self._t0
        self._armed = False
        self._latched = 0  # latched fault bits (mr.FAULTS_LATCHED)
        self._bad_command = False
        self._enabled = False
        self._samples = 0
        self._prompt_t: float | None = None
        self._switch_delay_s = switch_press_delay_s
        self._switch_press_s = switch_press_s
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        # Link-fault injection for tests and for table makers' hosts: answer every read of
        # the input registers with exception 04 (device failure) while set.
        self.fail_reads = False

    # ---- physics thread --------------------------------------------------------------------
    def start(self) -> None:
        """Start advancing physics in wall time."""
        if self._thread is not None:
            return
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="served-table-physics",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the physics thread (the table is switched off)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        t_phys = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            due = int((now - t_phys) / self.step_s)
            if due * self.step_s > MAX_CATCH_UP_S:
                log.warning("served table: physics %.0f ms behind wall time; dropping the "
                            "backlog", (now - t_phys) * 1000.0)
                t_phys = now - self.step_s
                due = 1
            if due > 0:
                with self._lock:
                    for _ in range(due):
                        t_phys += self.step_s
                        self._step(t_phys)
            else:
                time.sleep(max(0.0, t_phys + self.step_s - time.monotonic()))

    def _step(self, now: float) -> None:
        """One physics step at wall time `now` (lock held)."""
        c = self._cmd
        want = bool(c.control & mr.Control.ENABLE)
        if want and not self._armed:
            self._armed = True
            self._hb_t = now  # the watchdog period starts when the drive is enabled
        elif not want:
            self._armed = False
        wd = mr.watchdog_s(self._watchdog_reg)
        if self._armed and not self._latched & mr.Fault.HEARTBEAT_LOST and now - self._hb_t > wd:
            self._latched |= mr.Fault.HEARTBEAT_LOST
            log.error("served table: no heartbeat for %.0f ms; released on its own (drive "
                      "disabled, reel paying out) until a fault reset", (now - self._hb_t) * 1e3)
        if float(self.sim.state[ph.S_T]) >= self.identity.force_limit_n \
                and not self._latched & mr.Fault.FORCE_LIMIT:
            # The table's own limit, on its own force measurement (here the true tension),
            # independent of the controller: release and latch.
            self._latched |= mr.Fault.FORCE_LIMIT
            log.error("served table: force limit %.0f N reached; released on its own until a "
                      "fault reset", self.identity.force_limit_n)
        enable = want and not self._latched and c.mode == mr.Mode.VELOCITY
        self._enabled = enable
        v = c.velocity_mm_s if enable else 0.0
        if self._at_travel_end():
            v = min(v, 0.0)  # end of travel: pay-out only
        if self._latched:
            angle = float(self.sim.state[ph.S_ANGLE])  # a released table moves nothing
        else:
            angle = min(max(c.angle_deg, self.identity.angle_min_deg), self.identity.angle_max_deg)

        flt = self.sim.faults
        if self._prompt_t is not None:
            el = now - self._prompt_t
            pressed = self._switch_delay_s <= el < self._switch_delay_s + self._switch_press_s
            flt[ph.FLT_SWITCH_PRESSED] = 1.0 if pressed else 0.0

        self.sim.write(ActuatorCommand(v, angle, enable, c.heartbeat))
        self.sim.advance(self.step_s)
        self._samples += 1

    # ---- register bank ---------------------------------------------------------------------
    def _faults(self) -> int:
        bits = self._latched
        if self._bad_command:
            bits |= mr.Fault.BAD_COMMAND
        if self._at_travel_end():
            bits |= mr.Fault.TRAVEL_END
        if self._enabled and self.sim.faults[ph.FLT_MOTOR_STALL] > 0.5:
            bits |= mr.Fault.MOTOR  # a real drive sees a following error
        return int(bits)

    def _at_travel_end(self) -> bool:
        return float(self.sim.state[ph.S_XM]) >= self.identity.travel_max_mm

    def _motor_state(self) -> int:
        if self._latched:
            return int(mr.MotorState.RELEASED)
        return int(mr.MotorState.ENABLED if self._enabled else mr.MotorState.DISABLED)

    def _readings_regs(self) -> list[int]:
        s = self.sim.state
        return mr.encode_readings(mr.Readings(
            sample=self._samples,
            force_a_n=float(s[ph.S_LC_A]),
            force_b_n=float(s[ph.S_LC_B]),
            position_mm=float(s[ph.S_XM]),
            angle_deg=float(s[ph.S_ANGLE]),
            switch_a=1 if s[ph.S_SW_A] > 0.5 else 0,
            switch_b=1 if s[ph.S_SW_B] > 0.5 else 0,
            motor_state=self._motor_state(),
            faults=self._faults(),
            heartbeat_echo=self._cmd.heartbeat,
            uptime_ms=int((time.monotonic() - self._t0) * 1000.0),
            force_true_n=float(s[ph.S_T]),
            distraction_mm=float(s[ph.S_DIST]),
            guarding=float(s[ph.S_G]),
        ))

    def read_input(self, address: int, count: int) -> list[int] | int:
        """Input registers: readings (live) and identity."""
        if not mr.valid_span(mr.RegisterTable.INPUT, address, count):
            return mr.EXC_ILLEGAL_ADDRESS
        if self.fail_reads:
            return mr.EXC_DEVICE_FAILURE
        if address >= mr.IDENTITY.address:
            off = address - mr.IDENTITY.address
            return self._identity_regs[off:off + count]
        with self._lock:
            regs = self._readings_regs()
        return regs[address:address + count]

    def read_holding(self, address: int, count: int) -> list[int] | int:
        """Holding registers: the command and configuration as last written."""
        if not mr.valid_span(mr.RegisterTable.HOLDING, address, count):
            return mr.EXC_ILLEGAL_ADDRESS
        with self._lock:
            regs = [*self._cmd_regs, self._watchdog_reg]
        return regs[address:address + count]

    def write_holding(self, address: int, values: Sequence[int]) -> int | None:
        """Commands and configuration; rejects what the table cannot do with exception 03."""
        n = len(values)
        if not mr.valid_span(mr.RegisterTable.HOLDING, address, n):
            return mr.EXC_ILLEGAL_ADDRESS
        with self._lock:
            regs = [*self._cmd_regs, self._watchdog_reg]
            regs[address:address + n] = [int(v) & 0xFFFF for v in values]
            cmd = mr.decode_command(regs[:mr.COMMAND.count])
            wd = regs[mr.CONFIG.address]
            reason = self._invalid(cmd, wd)
            if reason:
                self._bad_command = True
                log.warning("served table: command rejected: %s", reason)
                return mr.EXC_ILLEGAL_VALUE
            now = time.monotonic()
            self._bad_command = False
            if cmd.heartbeat != self._cmd.heartbeat:
                self._hb_t = now
            if cmd.control & mr.Control.FAULT_RESET and self._latched:
                log.warning("served table: fault reset (cleared %#06x)", self._latched)
                self._latched = 0
            if cmd.control & mr.Control.RELEASE and not self._latched & mr.Fault.RELEASED:
                self._latched |= mr.Fault.RELEASED
                log.warning("served table: RELEASE ordered by the controller: drive disabled")
            # Without the capability the bit is accepted and ignored (section 3.5).
            prompt = bool(cmd.control & mr.Control.SWITCH_PROMPT) and \
                self.identity.has(mr.Capability.SWITCH_PROMPT)
            if prompt and self._prompt_t is None:
                self._prompt_t = now
                log.info("served table: prompting the patient to press the stop switch")
            elif not prompt and self._prompt_t is not None:
                self._prompt_t = None
                self.sim.faults[ph.FLT_SWITCH_PRESSED] = 0.0
            self._cmd = cmd
            self._cmd_regs = regs[:mr.COMMAND.count]
            self._watchdog_reg = wd
        return None

    @staticmethod
    def _invalid(cmd: mr.Command, watchdog_reg: int) -> str | None:
        if cmd.control & ~mr.CONTROL_KNOWN & 0xFFFF:
            return f"unknown CONTROL bits {cmd.control:#06x}"
        if cmd.control & mr.Control.FAULT_RESET and cmd.control & mr.Control.ENABLE:
            return "FAULT_RESET needs ENABLE = 0 in the same write"
        if cmd.mode != mr.Mode.VELOCITY:
            return f"MODE {cmd.mode} not supported (no FORCE_MODE capability)"
        if watchdog_reg and not mr.WATCHDOG_MIN_MS <= watchdog_reg <= mr.WATCHDOG_MAX_MS:
            return f"WATCHDOG_MS {watchdog_reg} outside {mr.WATCHDOG_MIN_MS}-{mr.WATCHDOG_MAX_MS}"
        if not math.isfinite(cmd.angle_deg):
            return "ANGLE_SETPOINT invalid"
        return None

    # ---- inspection and fault injection (simulator only) -----------------------------------
    def status(self) -> ServedStatus:
        """A consistent snapshot of the table."""
        with self._lock:
            s = self.sim.state
            return ServedStatus(
                t_s=float(s[ph.S_T_S]),
                samples=self._samples,
                enabled=self._enabled,
                motor_state=self._motor_state(),
                faults=self._faults(),
                heartbeat=self._cmd.heartbeat,
                watchdog_s=mr.watchdog_s(self._watchdog_reg),
                force_true_n=float(s[ph.S_T]),
                position_mm=float(s[ph.S_XM]),
                angle_deg=float(s[ph.S_ANGLE]),
                velocity_cmd_mm_s=self._cmd.velocity_mm_s,
            )

    def set_param(self, index: int, value: float) -> None:
        """Set one physics parameter (`spinedecomp.device.physics.P_*`), e.g. a faster angle
        actuator or a looser harness for a test of the table's own limits."""
        with self._lock:
            self.sim.params[index] = value

    def set_fault(self, index: int, value: float) -> None:
        """Set one physics fault flag (`spinedecomp.device.physics.FLT_*`)."""
        with self._lock:
            self.sim.faults[index] = value


class ServedSimulator:
    """A served table plus its Modbus TCP server; use as a context manager."""

    def __init__(self, model: PatientModel, *, host: str = "127.0.0.1", port: int = 0,
                 rate_hz: float = 1000.0, angle_deg: float = 0.0,
                 switch_prompt: bool = True) -> None:
        """A served table for `model` on host:port (0 = any free port)."""
        self.table = ServedTable(model, angle_deg=angle_deg, rate_hz=rate_hz,
                                 switch_prompt=switch_prompt)
        self.host = host
        self.port = port
        self._server: RegisterServer | None = None

    @property
    def url(self) -> str:
        """The device URL the factory and the CLI accept."""
        return f"modbus://{self.host}:{self.port}"

    def start(self) -> int:
        """Start the table and its server; returns the port."""
        self.table.start()
        try:
            self.start_server()
        except OSError:
            self.table.stop()
            raise
        return self.port

    def start_server(self) -> None:
        """(Re)start the Modbus server on the same port (the table keeps running)."""
        if self._server is not None:
            return
        srv = RegisterServer(self.table, host=self.host, port=self.port)
        self.port = srv.start()
        self._server = srv

    def stop_server(self) -> None:
        """Stop the Modbus server and drop its connections; the table keeps running, so its
        watchdog sees the heartbeat stop (a cut cable)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def stop(self) -> None:
        """Stop the server and the table."""
        self.stop_server()
        self.table.stop()

    def __enter__(self) -> ServedSimulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
