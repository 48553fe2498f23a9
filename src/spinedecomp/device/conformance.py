"""The conformance suite: does a table obey the table side of docs/device-protocol.md?

`spinedecomp device conformance modbus://HOST:PORT` runs every rule below against any table
over Modbus TCP and prints pass or fail per rule; the exit code is non-zero if any rule
failed. It talks to the table transaction by transaction (no controller, no safety monitor),
so each rule sees exactly what the table does with one kind of write.

It moves the cable and the angle of pull: run it with **no patient on the table**, a test
load (a spring or a strap to a fixed point) on the harness, and the operator at the table's
own emergency stop. Rule `limits` pulls at full speed until the table stops the pull at its
force limit or at its end of travel.

Every rule starts from a reset table (FAULT_RESET with the drive off, the angle set-point at
the measured angle, then CONTROL = 0, force paid out) and leaves the drive disabled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.modbus_adapter import DeviceRefused, LinkError, ModbusClient

# Slack allowed for the controller-side view: a rule polls the table over the network, so
# "within WATCHDOG_MS" is checked as "within WATCHDOG_MS plus this".
POLL_MARGIN_S = 0.4
PERIOD_S = 0.01  # the suite writes like a 100 Hz controller
# A write takes effect at the table's next sample (section 4.4: at least every 10 ms); a
# state the rules expect after a write is polled for this long.
SETTLE_S = 0.1
WATCHDOG_MS = 100  # the watchdog the suite configures for its rules, unless told otherwise


class RuleFailed(Exception):
    """A rule's expectation did not hold."""


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule."""

    rule: str
    section: str
    title: str
    passed: bool
    detail: str


class Probe:
    """A Modbus connection with the few moves the rules need."""

    def __init__(self, client: ModbusClient, identity: mr.Identity,
                 watchdog_ms: int = WATCHDOG_MS) -> None:
        """Wrap an open client to a table whose identity block was read; `watchdog_ms` is
        written to WATCHDOG_MS at every reset (longer on a loaded host, where the suite's own
        process may stall between heartbeats)."""
        self.c = client
        self.ident = identity
        self.hb = 1
        self.watchdog_ms = watchdog_ms

    # ---- primitives --------------------------------------------------------------------
    def readings(self) -> mr.Readings:
        """The readings block now."""
        return mr.decode_readings(self.c.read_input(mr.READINGS.address, mr.READINGS.count))

    def command(self, control: int, *, velocity: float = 0.0, angle: float | None = None,
                same_heartbeat: bool = False, mode: int = mr.Mode.VELOCITY) -> None:
        """Write the whole command block (a new heartbeat unless `same_heartbeat`)."""
        if not same_heartbeat:
            self.hb = (self.hb + 1) & 0xFFFF
        if angle is None:
            angle = self.angle_setpoint()
        self.c.write_holding(mr.COMMAND.address, mr.encode_command(mr.Command(
            heartbeat=self.hb, control=control, mode=mode, velocity_mm_s=velocity,
            angle_deg=angle)))

    def angle_setpoint(self) -> float:
        """The ANGLE_SETPOINT the table last accepted."""
        f = mr.COMMAND.field("ANGLE_SETPOINT")
        return mr.from_counts(f, mr.unpack(f, self.c.read_holding(f.address, 1)))

    def refused(self, address: int, values: list[int]) -> int | None:
        """Write holding registers; the exception code if the table refused, else None."""
        try:
            self.c.write_holding(address, values)
        except DeviceRefused as exc:
            return exc.code
        return None

    def drive(self, seconds: float, control: int, *, velocity: float = 0.0,
              angle: float | None = None, same_heartbeat: bool = False,
              until: Callable[[mr.Readings], bool] | None = None) -> tuple[mr.Readings, bool]:
        """Write commands every PERIOD_S for up to `seconds` (stopping early once `until`
        holds); returns the last readings and whether `until` held."""
        if angle is None:
            angle = self.angle_setpoint()
        end = time.monotonic() + seconds
        r = self.readings()
        while True:
            self.command(control, velocity=velocity, angle=angle, same_heartbeat=same_heartbeat)
            r = self.readings()
            if until is not None and until(r):
                return r, True
            if time.monotonic() >= end:
                return r, False
            time.sleep(PERIOD_S)

    def watch(self, seconds: float, until: Callable[[mr.Readings], bool] | None = None,
              ) -> tuple[mr.Readings, bool]:
        """Read only (no writes, so no heartbeats) for up to `seconds`."""
        end = time.monotonic() + seconds
        while True:
            r = self.readings()
            if until is not None and until(r):
                return r, True
            if time.monotonic() >= end:
                return r, False
            time.sleep(PERIOD_S / 2)

    def settle(self, cond: Callable[[mr.Readings], bool]) -> mr.Readings:
        """Readings once `cond` holds, or the last ones after SETTLE_S."""
        return self.watch(SETTLE_S, cond)[0]

    def reset(self) -> mr.Readings:
        """Drive off, latches cleared, angle held where it is, tension paid out."""
        self.c.write_holding(mr.CONFIG.field("WATCHDOG_MS").address, [self.watchdog_ms])
        r = self.readings()
        angle = r.angle_deg if math.isfinite(r.angle_deg) else 0.0
        self.command(int(mr.Control.FAULT_RESET), angle=angle)
        self.command(0, angle=angle)
        low = max(5.0, 0.02 * self.ident.force_limit_n)
        r, _ = self.watch(8.0, lambda r: _force(r) < low)
        return r


def _force(r: mr.Readings) -> float:
    vals = [f for f in (r.force_a_n, r.force_b_n) if math.isfinite(f)]
    return max(vals) if vals else math.nan


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuleFailed(msg)


def _state(r: mr.Readings) -> str:
    try:
        state = mr.MotorState(r.motor_state).name
    except ValueError:
        state = str(r.motor_state)
    bits = [f.name for f in mr.Fault if r.faults & f]
    return f"MOTOR_STATE {state}, FAULTS {'|'.join(bits) or '0'}"


# ---- the rules --------------------------------------------------------------------------------
def rule_identity(p: Probe) -> str:
    """MAGIC 0x5344 and MAP_VERSION 1 (the controller refuses anything else)."""
    _check(p.ident.magic == mr.MAGIC, f"MAGIC reads {p.ident.magic:#06x}, expected {mr.MAGIC:#06x}")
    _check(p.ident.map_version == mr.MAP_VERSION,
           f"MAP_VERSION reads {p.ident.map_version}, expected {mr.MAP_VERSION}")
    return f"{p.ident.name!r} firmware {p.ident.firmware!r}"


def rule_identity_values(p: Probe) -> str:
    """Identity values usable by the controller: limits positive, angle range ordered,
    sampling at least 100 Hz, no reserved capability bit."""
    i = p.ident
    known = sum(int(c) for c in mr.Capability)
    _check(i.force_limit_n > 0, f"FORCE_LIMIT {i.force_limit_n:g} N")
    _check(i.angle_min_deg < i.angle_max_deg,
           f"ANGLE_MIN {i.angle_min_deg:g} >= ANGLE_MAX {i.angle_max_deg:g}")
    _check(i.travel_max_mm > 0 and i.velocity_max_mm_s > 0,
           f"TRAVEL_MAX {i.travel_max_mm:g} mm, VELOCITY_MAX {i.velocity_max_mm_s:g} mm/s")
    _check(i.sample_rate_hz >= 100, f"SAMPLE_RATE {i.sample_rate_hz} Hz (at least 100)")
    _check(not i.capabilities & ~known, f"reserved capability bits {i.capabilities:#06x}")
    _check(bool(i.capabilities & (mr.Capability.LUMBAR | mr.Capability.CERVICAL)),
           "neither LUMBAR nor CERVICAL advertised")
    return (f"force limit {i.force_limit_n:g} N, angle {i.angle_min_deg:g}..{i.angle_max_deg:g} "
            f"deg, travel {i.travel_max_mm:g} mm")


def rule_illegal_address(p: Probe) -> str:
    """Reads and writes outside the map, or across a block's end, answer exception 02."""
    ins = [(mr.READINGS.count, 1), (0, mr.READINGS.count + 1), (mr.IDENTITY.address - 1, 1),
           (mr.IDENTITY.address - 1, 2), (mr.IDENTITY.address + mr.IDENTITY.count - 1, 2),
           (mr.IDENTITY.address + mr.IDENTITY.count, 1), (1000, 1)]
    hold = mr.CONFIG.address + mr.CONFIG.count
    bad: list[str] = []
    for addr, n in ins:
        try:
            p.c.read_input(addr, n)
            bad.append(f"read input {addr}+{n} answered")
        except DeviceRefused as exc:
            if exc.code != mr.EXC_ILLEGAL_ADDRESS:
                bad.append(f"read input {addr}+{n}: exception {exc.code}")
    for addr, n in ((hold, 1), (0, hold + 1)):
        try:
            p.c.read_holding(addr, n)
            bad.append(f"read holding {addr}+{n} answered")
        except DeviceRefused as exc:
            if exc.code != mr.EXC_ILLEGAL_ADDRESS:
                bad.append(f"read holding {addr}+{n}: exception {exc.code}")
    for addr, vals in ((hold, [0]), (hold - 1, [p.watchdog_ms, 0])):
        code = p.refused(addr, vals)
        if code != mr.EXC_ILLEGAL_ADDRESS:
            bad.append(f"write holding {addr}+{len(vals)}: "
                       + ("accepted" if code is None else f"exception {code}"))
    _check(not bad, "; ".join(bad))
    return f"{len(ins) + 4} out-of-map requests answered with exception 02"


def rule_holding_readback(p: Probe) -> str:
    """Holding registers 0-8 read back what the table last accepted."""
    p.reset()
    angle = p.angle_setpoint()
    p.command(0, angle=angle)
    want = mr.encode_command(mr.Command(heartbeat=p.hb, control=0, angle_deg=angle))
    got = p.c.read_holding(0, mr.COMMAND.count + mr.CONFIG.count)
    _check(got[:mr.COMMAND.count] == want, f"command reads back {got[:8]}, wrote {want}")
    _check(got[mr.CONFIG.address] == p.watchdog_ms, f"WATCHDOG_MS reads back {got[8]}")
    return "command block and WATCHDOG_MS read back as written"


def rule_sampling(p: Probe) -> str:
    """SAMPLE advances at least every 10 ms; UPTIME advances."""
    r0 = p.readings()
    t0 = time.monotonic()
    time.sleep(0.5)
    r1 = p.readings()
    dt = time.monotonic() - t0
    n = (r1.sample - r0.sample) & 0xFFFF_FFFF
    # Half the required rate: the polls themselves may be late on a loaded host.
    _check(n >= 0.5 * 100.0 * dt, f"SAMPLE advanced {n} in {dt * 1000:.0f} ms (100 Hz at least)")
    _check(r1.uptime_ms != r0.uptime_ms, "UPTIME does not advance")
    return f"{n / dt:.0f} samples/s"


def rule_readings_at_rest(p: Probe) -> str:
    """At rest after a reset: valid forces, position and angle; switch idle (A=1, B=0);
    drive DISABLED; simulator-only fields answer the sentinel on a real table."""
    r = p.reset()
    for name, v in (("FORCE_A", r.force_a_n), ("FORCE_B", r.force_b_n),
                    ("POSITION", r.position_mm), ("ANGLE", r.angle_deg)):
        _check(math.isfinite(v), f"{name} reads the sentinel (no valid value) at rest")
    _check((r.switch_a, r.switch_b) == (1, 0),
           f"patient switch not idle: A={r.switch_a} B={r.switch_b} (expected A=1, B=0)")
    _check(r.motor_state == mr.MotorState.DISABLED and not r.faults & mr.FAULTS_LATCHED,
           f"after a reset: {_state(r)}")
    if not p.ident.has(mr.Capability.SIMULATED):
        _check(all(math.isnan(v) for v in (r.force_true_n, r.distraction_mm, r.guarding)),
               "a real table must answer the sentinel in TRUE_FORCE, DISTRACTION, GUARDING")
    return f"forces {r.force_a_n:.2f}/{r.force_b_n:.2f} N, angle {r.angle_deg:.2f} deg"


def rule_refused_reserved_bit(p: Probe) -> str:
    """A reserved CONTROL bit refuses the whole write (exception 03, BAD_COMMAND, heartbeat
    not applied); the next accepted write clears BAD_COMMAND."""
    p.reset()
    before = p.c.read_holding(0, mr.COMMAND.count)
    regs = list(before)
    regs[0] = (regs[0] + 7) & 0xFFFF
    regs[1] = 0x0100
    code = p.refused(0, regs)
    _check(code == mr.EXC_ILLEGAL_VALUE, f"reserved bit 8: {'accepted' if code is None else code}")
    r = p.settle(lambda r: bool(r.faults & mr.Fault.BAD_COMMAND))
    _check(bool(r.faults & mr.Fault.BAD_COMMAND), "BAD_COMMAND not set after a refused write")
    after = p.c.read_holding(0, mr.COMMAND.count)
    _check(after == before, f"a refused write was partly applied: {before} -> {after}")
    p.command(0)
    r = p.settle(lambda r: not r.faults & mr.Fault.BAD_COMMAND)
    _check(not r.faults & mr.Fault.BAD_COMMAND, "BAD_COMMAND not cleared by an accepted write")
    return "refused whole; BAD_COMMAND set, then cleared"


def rule_refused_reset_with_enable(p: Probe) -> str:
    """FAULT_RESET together with ENABLE is refused (exception 03) and enables nothing."""
    p.reset()
    code = p.refused(mr.COMMAND.field("CONTROL").address,
                     [int(mr.Control.FAULT_RESET | mr.Control.ENABLE)])
    _check(code == mr.EXC_ILLEGAL_VALUE, f"FAULT_RESET|ENABLE: "
           f"{'accepted' if code is None else f'exception {code}'}")
    _, on = p.watch(SETTLE_S, lambda r: r.motor_state == mr.MotorState.ENABLED)
    _check(not on, "the drive was enabled")
    p.command(0)
    return "refused with exception 03"


def rule_refused_mode(p: Probe) -> str:
    """MODE 1 is refused (exception 03) by a table without FORCE_MODE."""
    p.reset()
    if p.ident.has(mr.Capability.FORCE_MODE):
        return "FORCE_MODE advertised: MODE 1 allowed (not checked)"
    code = p.refused(mr.COMMAND.field("MODE").address, [int(mr.Mode.FORCE)])
    _check(code == mr.EXC_ILLEGAL_VALUE,
           f"MODE 1: {'accepted' if code is None else f'exception {code}'}")
    p.command(0)
    return "refused with exception 03"


def rule_refused_watchdog_range(p: Probe) -> str:
    """WATCHDOG_MS outside 20-2000 (0 = default) is refused; the bounds are accepted."""
    p.reset()
    a = mr.CONFIG.field("WATCHDOG_MS").address
    bad: list[str] = []
    for v in (10, 19, 2001, 65535):
        code = p.refused(a, [v])
        if code != mr.EXC_ILLEGAL_VALUE:
            bad.append(f"{v}: {'accepted' if code is None else f'exception {code}'}")
    for v in (0, mr.WATCHDOG_MIN_MS, mr.WATCHDOG_MAX_MS):
        code = p.refused(a, [v])
        if code is not None:
            bad.append(f"{v} refused with exception {code}")
    p.c.write_holding(a, [p.watchdog_ms])
    _check(not bad, "; ".join(bad))
    return "10, 19, 2001, 65535 refused; 0, 20, 2000 accepted"


def rule_enable(p: Probe) -> str:
    """ENABLE with fresh heartbeats runs the drive (MOTOR_STATE ENABLED, the cable follows
    a pull); ENABLE = 0 disables it."""
    r0 = p.reset()
    v = min(20.0, p.ident.velocity_max_mm_s)
    r, _ = p.drive(0.6, int(mr.Control.ENABLE), velocity=v)
    _check(r.motor_state == mr.MotorState.ENABLED, f"with ENABLE: {_state(r)}")
    _check(r.position_mm > r0.position_mm + 0.2 * v * 0.6,
           f"POSITION {r0.position_mm:.2f} -> {r.position_mm:.2f} mm pulling at {v:g} mm/s")
    p.command(0)
    r = p.settle(lambda r: r.motor_state == mr.MotorState.DISABLED)
    _check(r.motor_state == mr.MotorState.DISABLED, f"after ENABLE = 0: {_state(r)}")
    return f"pulled {r.position_mm - r0.position_mm:.1f} mm in 0.6 s"


def rule_watchdog_idle(p: Probe) -> str:
    """The watchdog sleeps while ENABLE = 0: no heartbeat for 3 x WATCHDOG_MS is no fault."""
    p.reset()
    r, tripped = p.watch(3 * p.watchdog_ms / 1000.0,
                         lambda r: bool(r.faults & mr.Fault.HEARTBEAT_LOST))
    _check(not tripped, f"HEARTBEAT_LOST set with the drive disabled ({_state(r)})")
    return f"quiet for {3 * p.watchdog_ms} ms with the drive off"


def _enable_then(p: Probe, feed: Callable[[], None], seconds: float) -> tuple[float, mr.Readings]:
    """Enable with heartbeats for 0.3 s, then call `feed` every period (or not) until the
    table releases; returns the time from the last fresh heartbeat to the release."""
    r, lost = p.drive(0.3, int(mr.Control.ENABLE), velocity=0.0,
                      until=lambda r: bool(r.faults & mr.FAULTS_LATCHED))
    _check(not lost, f"released while heartbeats were arriving ({_state(r)})")
    _check(r.motor_state == mr.MotorState.ENABLED, f"not enabled: {_state(r)}")
    t_last = time.monotonic()
    end = t_last + seconds
    while time.monotonic() < end:
        feed()
        r = p.readings()
        if r.faults & mr.Fault.HEARTBEAT_LOST:
            return time.monotonic() - t_last, r
        time.sleep(PERIOD_S / 2)
    raise RuleFailed(f"no release {seconds * 1000:.0f} ms after the last new heartbeat "
                     f"(WATCHDOG_MS {p.watchdog_ms}; {_state(r)})")


def rule_watchdog_release(p: Probe) -> str:
    """Heartbeat stops while enabled: the table releases on its own within WATCHDOG_MS
    (HEARTBEAT_LOST, MOTOR_STATE RELEASED)."""
    p.reset()
    took, r = _enable_then(p, lambda: None, p.watchdog_ms / 1000.0 + POLL_MARGIN_S)
    _check(r.motor_state == mr.MotorState.RELEASED, f"HEARTBEAT_LOST but {_state(r)}")
    return f"released {took * 1000:.0f} ms after the last heartbeat (WATCHDOG_MS {p.watchdog_ms})"


def rule_watchdog_same_heartbeat(p: Probe) -> str:
    """Writes that repeat the same HEARTBEAT do not feed the watchdog."""
    p.reset()

    def same() -> None:
        p.command(int(mr.Control.ENABLE), same_heartbeat=True)

    took, _ = _enable_then(p, same, p.watchdog_ms / 1000.0 + POLL_MARGIN_S)
    return f"released {took * 1000:.0f} ms after the heartbeat stopped changing"


def rule_watchdog_latched(p: Probe) -> str:
    """HEARTBEAT_LOST is latched: fresh heartbeats with ENABLE do not re-enable; FAULT_RESET
    (ENABLE = 0) clears it without enabling; a later ENABLE enables."""
    p.reset()
    _enable_then(p, lambda: None, p.watchdog_ms / 1000.0 + POLL_MARGIN_S)
    r, back = p.drive(0.3, int(mr.Control.ENABLE),
                      until=lambda r: r.motor_state == mr.MotorState.ENABLED
                      or not r.faults & mr.Fault.HEARTBEAT_LOST)
    _check(not back, f"fresh heartbeats with ENABLE cleared the release: {_state(r)}")
    p.command(int(mr.Control.FAULT_RESET))
    r = p.settle(lambda r: not r.faults & mr.FAULTS_LATCHED
                 and r.motor_state == mr.MotorState.DISABLED)
    _check(not r.faults & mr.FAULTS_LATCHED and r.motor_state == mr.MotorState.DISABLED,
           f"after FAULT_RESET: {_state(r)}")
    p.command(0)
    r, on = p.drive(0.2, int(mr.Control.ENABLE),
                    until=lambda r: r.motor_state == mr.MotorState.ENABLED)
    _check(on, f"ENABLE after the reset did not enable: {_state(r)}")
    p.command(0)
    return "latched until FAULT_RESET; the reset did not enable"


def rule_release_latched(p: Probe) -> str:
    """RELEASE releases and latches RELEASED: ENABLE is ignored, pull commands are ignored,
    a write with FAULT_RESET and RELEASE leaves it released; FAULT_RESET alone clears it."""
    p.reset()
    p.drive(0.2, int(mr.Control.ENABLE))
    p.command(int(mr.Control.RELEASE | mr.Control.ENABLE))
    r = p.settle(lambda r: bool(r.faults & mr.Fault.RELEASED)
                 and r.motor_state == mr.MotorState.RELEASED)
    _check(bool(r.faults & mr.Fault.RELEASED) and r.motor_state == mr.MotorState.RELEASED,
           f"after RELEASE|ENABLE: {_state(r)}")
    x0 = r.position_mm
    r, _ = p.drive(0.4, int(mr.Control.ENABLE), velocity=min(50.0, p.ident.velocity_max_mm_s))
    _check(r.motor_state == mr.MotorState.RELEASED and bool(r.faults & mr.Fault.RELEASED),
           f"ENABLE after RELEASE: {_state(r)}")
    _check(r.position_mm <= x0 + 0.5, f"a released drive pulled: POSITION {x0:.2f} -> "
           f"{r.position_mm:.2f} mm")
    p.command(int(mr.Control.FAULT_RESET | mr.Control.RELEASE))
    time.sleep(SETTLE_S)  # a table that let the reset win shows it by now
    r = p.readings()
    _check(r.motor_state == mr.MotorState.RELEASED and bool(r.faults & mr.Fault.RELEASED),
           f"FAULT_RESET|RELEASE in one write must leave the table released: {_state(r)}")
    p.command(int(mr.Control.FAULT_RESET))
    r = p.settle(lambda r: r.motor_state == mr.MotorState.DISABLED
                 and not r.faults & mr.FAULTS_LATCHED)
    _check(r.motor_state == mr.MotorState.DISABLED and not r.faults & mr.FAULTS_LATCHED,
           f"after FAULT_RESET: {_state(r)}")
    p.command(0)
    return "latched; ENABLE and pulls ignored; RELEASE wins over FAULT_RESET in one write"


def rule_release_pays_out(p: Probe) -> str:
    """A released table pays the cable out under tension: force falls with no command."""
    p.reset()
    target = min(100.0, 0.1 * p.ident.force_limit_n)
    r, loaded = p.drive(10.0, int(mr.Control.ENABLE),
                        velocity=min(40.0, p.ident.velocity_max_mm_s),
                        until=lambda r: _force(r) >= target)
    p.command(int(mr.Control.RELEASE))
    _check(loaded, f"could not load the cable to {target:.0f} N in 10 s (force "
           f"{_force(r):.1f} N): put a test load on the harness")
    f0 = _force(r)
    r, fell = p.watch(3.0, lambda r: _force(r) < 0.2 * f0)
    _check(fell, f"force {f0:.1f} N -> {_force(r):.1f} N 3 s after RELEASE")
    p.reset()
    return f"{f0:.0f} N fell below {0.2 * f0:.0f} N"


def _settle_angle(p: Probe, setpoint: float, control: int = 0) -> tuple[float, float]:
    """Hold `setpoint` until the measured angle stops moving; (last angle, extreme seen)."""
    p.command(control, angle=setpoint)
    r = p.readings()
    extreme = r.angle_deg
    last, still_since = r.angle_deg, time.monotonic()
    end = time.monotonic() + 60.0
    while time.monotonic() < end:
        time.sleep(0.05)
        r = p.readings()
        a = r.angle_deg
        extreme = max(extreme, a) if setpoint > last else min(extreme, a)
        if abs(a - last) > 0.02:
            last, still_since = a, time.monotonic()
        elif time.monotonic() - still_since > 0.5:
            break
    return last, extreme


def rule_angle_clamp(p: Probe) -> str:
    """ANGLE_SETPOINT beyond ANGLE_MIN..ANGLE_MAX is clamped (the angle moves with the
    drive off and stops at the limit)."""
    p.reset()
    lo, hi = p.ident.angle_min_deg, p.ident.angle_max_deg
    start = p.readings().angle_deg
    tol = 0.1
    order = [(hi, hi + 10.0), (lo, lo - 10.0)]
    if abs(start - lo) < abs(start - hi):
        order.reverse()  # the nearer limit first
    seen: list[str] = []
    for limit, sp in order:
        last, extreme = _settle_angle(p, max(min(sp, 327.0), -327.0))
        over = extreme > limit + tol if sp > limit else extreme < limit - tol
        _check(not over, f"set-point {sp:g} deg: the angle reached {extreme:.2f} deg "
               f"(limit {limit:g})")
        _check(abs(last - limit) <= 0.5, f"set-point {sp:g} deg: the angle stopped at "
               f"{last:.2f} deg, not at the limit {limit:g} (does it move with the drive off?)")
        seen.append(f"{last:.2f}")
    p.command(0, angle=p.readings().angle_deg)
    return f"stopped at {' and '.join(seen)} deg"


def rule_angle_holds_released(p: Probe) -> str:
    """A released table moves nothing: the angle holds while RELEASED is latched."""
    r = p.reset()
    a0 = r.angle_deg
    lo, hi = p.ident.angle_min_deg, p.ident.angle_max_deg
    sp = a0 + 5.0 if a0 + 5.0 <= hi else a0 - 5.0
    sp = min(max(sp, lo), hi)
    p.command(int(mr.Control.RELEASE), angle=a0)
    p.command(int(mr.Control.RELEASE), angle=sp)
    r, moved = p.watch(0.6, lambda r: abs(r.angle_deg - a0) > 0.1)
    p.command(int(mr.Control.FAULT_RESET), angle=r.angle_deg)
    p.command(0, angle=r.angle_deg)
    _check(not moved, f"released, the angle moved {a0:.2f} -> {r.angle_deg:.2f} deg")
    return f"held at {a0:.2f} deg with a set-point of {sp:.2f}"


def rule_switch_prompt(p: Probe) -> str:
    """SWITCH_PROMPT: with the capability the table prompts and the press (A=0, B=1) and its
    release show on both channels; without it the bit is accepted and ignored."""
    p.reset()
    prompt = int(mr.Control.SWITCH_PROMPT)
    if not p.ident.has(mr.Capability.SWITCH_PROMPT):
        code = p.refused(mr.COMMAND.field("CONTROL").address, [prompt])
        p.command(0)
        _check(code is None, f"SWITCH_PROMPT without the capability refused ({code})")
        return "capability not advertised: bit accepted and ignored"
    p.command(prompt)
    try:
        r, pressed = p.watch(30.0, lambda r: (r.switch_a, r.switch_b) == (0, 1))
        _check(pressed, f"no press on both channels within 30 s (A={r.switch_a} B={r.switch_b})")
        r, released = p.watch(30.0, lambda r: (r.switch_a, r.switch_b) == (1, 0))
        _check(released, "press seen, no release within 30 s")
    finally:
        p.command(0)
    return "press and release seen on both channels"


def rule_limits(p: Probe) -> str:
    """Pulling at VELOCITY_MAX, the table stops the pull on its own: at FORCE_LIMIT (released,
    FORCE_LIMIT latched until FAULT_RESET) or at TRAVEL_MAX (TRAVEL_END, pay-out still
    followed, TRAVEL_END not latched)."""
    r0 = p.reset()
    i = p.ident
    v = i.velocity_max_mm_s
    budget = 3.0 * max(i.travel_max_mm - r0.position_mm, 0.0) / v + 5.0
    peak = [0.0, -math.inf]

    def stopped(r: mr.Readings) -> bool:
        peak[0] = max(peak[0], _force(r))
        peak[1] = max(peak[1], r.position_mm)
        return bool(r.faults & (mr.Fault.FORCE_LIMIT | mr.Fault.TRAVEL_END))

    def keep_pulling(r: mr.Readings) -> bool:
        stopped(r)  # the peak is tracked on; the table must hold its stop
        return False

    r, hit = p.drive(budget, int(mr.Control.ENABLE), velocity=v, until=stopped)
    if not hit:
        p.command(int(mr.Control.RELEASE))
        p.reset()
        raise RuleFailed(f"pulling {budget:.0f} s at {v:g} mm/s: neither FORCE_LIMIT nor "
                         f"TRAVEL_END (force {_force(r):.0f} N, position {r.position_mm:.1f} mm)")
    if r.faults & mr.Fault.FORCE_LIMIT:
        r, _ = p.drive(0.3, int(mr.Control.ENABLE), velocity=v, until=keep_pulling)
        _check(r.motor_state == mr.MotorState.RELEASED and bool(r.faults & mr.Fault.FORCE_LIMIT),
               f"at the force limit: {_state(r)}")
        _check(peak[0] <= 1.1 * i.force_limit_n + 20.0,
               f"force reached {peak[0]:.0f} N (FORCE_LIMIT {i.force_limit_n:.0f} N)")
        r, _ = p.watch(5.0, lambda r: _force(r) < 0.3 * i.force_limit_n)
        _check(bool(r.faults & mr.Fault.FORCE_LIMIT), "FORCE_LIMIT not latched after the force "
               "fell")
        p.command(int(mr.Control.FAULT_RESET))
        r = p.settle(lambda r: not r.faults & mr.Fault.FORCE_LIMIT)
        _check(not r.faults & mr.Fault.FORCE_LIMIT, "FAULT_RESET did not clear FORCE_LIMIT")
        p.reset()
        return f"released at {peak[0]:.0f} N (FORCE_LIMIT {i.force_limit_n:.0f} N), latched"
    r, _ = p.drive(0.3, int(mr.Control.ENABLE), velocity=v, until=keep_pulling)
    _check(bool(r.faults & mr.Fault.TRAVEL_END), f"TRAVEL_END dropped while still pulling "
           f"({r.position_mm:.1f} mm)")
    _check(peak[1] <= i.travel_max_mm * 1.02 + 1.0,
           f"POSITION reached {peak[1]:.1f} mm (TRAVEL_MAX {i.travel_max_mm:g} mm)")
    r, cleared = p.drive(3.0, int(mr.Control.ENABLE), velocity=-v,
                         until=lambda r: not r.faults & mr.Fault.TRAVEL_END)
    _check(cleared and r.position_mm < i.travel_max_mm,
           f"paying out from the end of travel: {_state(r)}, {r.position_mm:.1f} mm")
    p.reset()
    return f"stopped at {peak[1]:.1f} mm (TRAVEL_MAX {i.travel_max_mm:g} mm), not latched"


@dataclass(frozen=True)
class Rule:
    """One rule of the suite."""

    name: str
    section: str
    check: Callable[[Probe], str]

    @property
    def title(self) -> str:
        """The first line of the rule's docstring."""
        doc = self.check.__doc__ or self.name
        return " ".join(doc.split())


RULES: tuple[Rule, ...] = (
    Rule("identity", "3.2", rule_identity),
    Rule("identity-values", "3.2", rule_identity_values),
    Rule("illegal-address", "3.4", rule_illegal_address),
    Rule("holding-readback", "4.3", rule_holding_readback),
    Rule("sampling", "4.4", rule_sampling),
    Rule("readings-at-rest", "4.4", rule_readings_at_rest),
    Rule("refused-reserved-bit", "4.3", rule_refused_reserved_bit),
    Rule("refused-reset-with-enable", "4.3", rule_refused_reset_with_enable),
    Rule("refused-mode", "4.3", rule_refused_mode),
    Rule("refused-watchdog-range", "4.3", rule_refused_watchdog_range),
    Rule("enable", "4.3", rule_enable),
    Rule("watchdog-idle", "4.1", rule_watchdog_idle),
    Rule("watchdog-release", "4.1", rule_watchdog_release),
    Rule("watchdog-same-heartbeat", "4.1", rule_watchdog_same_heartbeat),
    Rule("watchdog-latched", "4.1", rule_watchdog_latched),
    Rule("release-latched", "4.2", rule_release_latched),
    Rule("release-pays-out", "4.2", rule_release_pays_out),
    Rule("angle-clamp", "4.3", rule_angle_clamp),
    Rule("angle-holds-released", "4.3", rule_angle_holds_released),
    Rule("switch-prompt", "4.5", rule_switch_prompt),
    Rule("limits", "4.3", rule_limits),
)
RULE_NAMES = tuple(r.name for r in RULES)


def run_conformance(host: str, port: int, *, timeout_s: float = 1.0,
                    only: tuple[str, ...] = (), watchdog_ms: int = WATCHDOG_MS,
                    report: Callable[[RuleResult], None] | None = None) -> list[RuleResult]:
    """Run the rules (all, or those named in `only`) against the table at host:port; call
    `report` after each. A table that cannot be reached or does not speak the map fails
    every rule with the reason. `watchdog_ms` (20-2000) is the watchdog the rules run with."""
    if not mr.WATCHDOG_MIN_MS <= watchdog_ms <= mr.WATCHDOG_MAX_MS:
        raise ValueError(f"watchdog_ms must be within {mr.WATCHDOG_MIN_MS}-{mr.WATCHDOG_MAX_MS}, "
                         f"got {watchdog_ms}")
    unknown = [n for n in only if n not in RULE_NAMES]
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(unknown)}; rules: {', '.join(RULE_NAMES)}")
    rules = [r for r in RULES if not only or r.name in only]
    results: list[RuleResult] = []

    def add(rule: Rule, passed: bool, detail: str) -> None:
        res = RuleResult(rule.name, rule.section, rule.title, passed, detail)
        results.append(res)
        if report is not None:
            report(res)

    client = ModbusClient(host, port, timeout_s=timeout_s)
    try:
        client.open()
        ident = mr.decode_identity(client.read_input(mr.IDENTITY.address, mr.IDENTITY.count))
    except (LinkError, DeviceRefused) as exc:
        client.close()
        for rule in rules:
            add(rule, False, f"not run: cannot read the identity block: {exc}")
        return results
    probe = Probe(client, ident, watchdog_ms)
    speaks = ident.magic == mr.MAGIC and ident.map_version == mr.MAP_VERSION
    try:
        for rule in rules:
            if not speaks and rule.name != "identity":
                add(rule, False, "not run: the table does not speak map version "
                    f"{mr.MAP_VERSION} (magic {ident.magic:#06x}, version {ident.map_version})")
                continue
            try:
                if not client.is_open:
                    client.open()
                detail = rule.check(probe)
            except RuleFailed as exc:
                add(rule, False, str(exc))
            except DeviceRefused as exc:
                add(rule, False, f"unexpected refusal: {exc}")
            except LinkError as exc:
                add(rule, False, f"link failed: {exc}")
            else:
                add(rule, True, detail)
    finally:
        try:
            if client.is_open:
                probe.reset()
        except (LinkError, DeviceRefused):
            pass  # the table's watchdog sleeps with the drive off; nothing is left enabled
        client.close()
    return results
