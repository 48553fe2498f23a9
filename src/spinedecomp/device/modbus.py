"""`ModbusTable`: a real traction table over Modbus TCP, behind the `Table` protocol.

The register map is `docs/device-protocol.md` (data in `modbus_registers`); all pymodbus use
is in `modbus_adapter`. The session engine drives this class exactly as it drives the
simulator, one period at a time:

    read() -> controller -> safety monitor -> write(cmd) -> advance(dt) -> wait

Per period there is one batched read of the readings block (function 4, 21 registers) and
one batched write of the command block (function 16, 8 registers, heartbeat included), as the
`Table` protocol states: the engine calls `read` exactly once per period, and every call reads
the table. The frame the controller saw is the one recorded as telemetry.

Link faults never raise out of `read`/`write`: every timeout, refused or dropped connection,
malformed reply or exception answer becomes a `SensorFrame` with `comm_ok=False` carrying the
last values, so the safety monitor's communication-lost check (>= 50 ms) trips and releases.

Reconnect policy (documented in docs/device-protocol.md, tested in tests/device):
- after a link error the socket is closed at once (a late reply can never be matched to the
  next request) and the driver tries to reconnect, at most `reconnect_attempts` times per
  outage, with exponential backoff from `backoff_s` to `backoff_max_s`, each attempt bounded
  by the I/O timeout; between attempts `read` returns at once (comm_ok=False);
- a link that was lost stays "lost" for the rest of the session: after a reconnect, frames
  carry live values (so the release is supervised with real readings) but `comm_ok` stays
  False, so the monitor trips and the treatment never resumes by itself. A new session (a
  new `connect`) is the only way back to treatment;
- the driver never sends FAULT_RESET except in `connect`: a table that released on its own
  (heartbeat watchdog) stays released across a reconnect;
- after the last attempt the driver gives up; the table's own watchdog has released it.

The table's own RELEASE (docs/device-protocol.md sections 4.2 and 5.4) is the last resort:
- `release()` orders it at once, reconnecting first if the link is down (one attempt bounded
  by the I/O timeout, even after the driver gave up: an explicit order is worth one more
  try), and from then on every command write carries RELEASE instead of ENABLE (latched in
  the driver as it is on the table);
- an order that could not be delivered stays pending: the first write after a reconnect
  delivers it, and `close()` makes a last few bounded attempts;
- `close()` also orders it when the link was lost in this session, even if nobody called
  `release()`: an outage shorter than WATCHDOG_MS leaves a table that holds its cable on a
  disabled drive (a brake) unreleased otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

from spinedecomp.core.errors import DeviceError
from spinedecomp.core.units import Region
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.modbus_adapter import DeviceRefused, LinkError, ModbusClient
from spinedecomp.device.table import ActuatorCommand, SensorFrame, TableDynamics, TableInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkPolicy:
    """Timeouts, retries and the reconnect policy of the driver."""

    connect_timeout_s: float = 1.0  # each attempt of the initial connect
    connect_retries: int = 3  # extra attempts of the initial connect
    # Each transaction in the control loop, and each reconnect attempt. 20 ms is two periods
    # at 100 Hz: ample for a table on a direct cable (replies in 1-5 ms) on a controller that
    # runs nothing else; a shared or loaded machine needs more (the tests use 250 ms).
    io_timeout_s: float = 0.02
    reconnect_attempts: int = 8  # per outage, in the control loop
    backoff_s: float = 0.02  # first wait before a reconnect attempt
    backoff_max_s: float = 1.0
    watchdog_ms: int = mr.WATCHDOG_DEFAULT_MS  # table-side heartbeat watchdog
    stale_s: float = 0.05  # a SAMPLE counter that stops this long = the table is not sampling
    switch_test_timeout_s: float = 30.0  # the patient presses and releases within this
    # Attempts `close()` makes to deliver a pending RELEASE (each bounded by io_timeout_s,
    # waits doubling from backoff_s): bounded, since the table's watchdog releases anyway.
    release_attempts: int = 3


@dataclass
class LinkStats:
    """What the link has been through (for logs, the bench and tests)."""

    reads: int = 0
    writes: int = 0
    failures: int = 0  # link errors (timeouts, closed or refused connections, bad replies)
    refused: int = 0  # exception answers from the table
    reconnect_attempts: int = 0
    reconnects: int = 0
    gave_up: bool = False
    last_error: str = ""


def _info(ident: mr.Identity) -> TableInfo:
    regions = tuple(r for r, cap in ((Region.LUMBAR, mr.Capability.LUMBAR),
                                     (Region.CERVICAL, mr.Capability.CERVICAL)) if ident.has(cap))
    return TableInfo(
        name=ident.name,
        firmware=ident.firmware,
        simulated=ident.has(mr.Capability.SIMULATED),
        regions=regions,
        force_limit_n=ident.force_limit_n,
        angle_min_deg=ident.angle_min_deg,
        angle_max_deg=ident.angle_max_deg,
        travel_max_mm=ident.travel_max_mm,
        dynamics=_dynamics(ident),
    )


def _dynamics(ident: mr.Identity) -> TableDynamics | None:
    """The drive dynamics the table declares, or None if it declares none. A partial
    declaration keeps what is declared; the controller takes the worst case for the rest."""
    lag, delay, k = ident.motor_lag_s, ident.transport_delay_s, ident.stiffness_max_n_per_mm
    k_ok = math.isfinite(k) and k > 0.0  # 0 N/mm is no stiffness at all: not a declaration
    if math.isnan(lag) and math.isnan(delay) and not k_ok:
        return None
    return TableDynamics(motor_lag_s=None if math.isnan(lag) else lag,
                         transport_delay_s=None if math.isnan(delay) else delay,
                         stiffness_max_n_per_mm=k if k_ok else None)


def _frame(r: mr.Readings, comm_ok: bool) -> SensorFrame:
    return SensorFrame(
        force_a_n=r.force_a_n,
        force_b_n=r.force_b_n,
        position_mm=r.position_mm,
        angle_deg=r.angle_deg,
        switch_a=float(r.switch_a),
        switch_b=float(r.switch_b),
        motor_enabled=r.motor_state == mr.MotorState.ENABLED,
        comm_ok=comm_ok,
        force_true_n=r.force_true_n,
        distraction_mm=r.distraction_mm,
        guarding=r.guarding,
    )


class ModbusTable:
    """A traction table reached over Modbus TCP (implements `Table`)."""

    def __init__(self, client: ModbusClient, identity: mr.Identity, readings: mr.Readings,
                 policy: LinkPolicy) -> None:
        """Use `ModbusTable.connect`; this wraps an already checked connection."""
        self._client = client
        self.identity = identity
        self.policy = policy
        self.stats = LinkStats()
        self._info = _info(identity)
        self._frame = _frame(readings, True)
        self._hb = 0
        self._released = False  # RELEASE ordered: every later write carries it
        self._release_pending = False  # ordered but not yet acknowledged by the table
        self._link_lost = False  # latched for the life of this object (one session)
        self._write_failed = False
        self._attempts = 0
        self._backoff = policy.backoff_s
        self._next_attempt = 0.0
        self._sample = readings.sample
        self._sample_t = time.monotonic()
        self._faults = readings.faults
        self._warned_stale = False
        self._warned_refused = False
        self._last_cmd = ActuatorCommand(0.0, self._frame.angle_deg if math.isfinite(
            self._frame.angle_deg) else 0.0, False, 0)

    @property
    def url(self) -> str:
        """modbus://HOST:PORT of this table."""
        return f"modbus://{self._client.host}:{self._client.port}"

    # ---- connecting ------------------------------------------------------------------------
    @classmethod
    def connect(cls, host: str, port: int, *, timeout_s: float = 1.0, retries: int = 3,
                policy: LinkPolicy | None = None, unit_id: int = mr.UNIT_ID) -> ModbusTable:
        """Connect to a table, check it speaks this register map, and leave it disabled.

        Tries 1 + `retries` times, each bounded by `timeout_s`. Raises `DeviceError` with a
        clear message if the table cannot be reached or is not a spinedecomp-map table; there
        is never a fallback to the simulator.
        """
        pol = replace(policy or LinkPolicy(), connect_timeout_s=timeout_s,
                      connect_retries=retries)
        url = f"modbus://{host}:{port}"
        client = ModbusClient(host, port, timeout_s=pol.connect_timeout_s, unit_id=unit_id)
        last = ""
        backoff = pol.backoff_s * 5
        for attempt in range(1 + max(0, pol.connect_retries)):
            if attempt:
                time.sleep(backoff)  # connect runs before any treatment: waiting is harmless
                backoff = min(2 * backoff, pol.backoff_max_s)
            try:
                client.open()
                ident = mr.decode_identity(client.read_input(mr.IDENTITY.address,
                                                             mr.IDENTITY.count))
            except (LinkError, DeviceRefused) as exc:
                client.close()
                last = str(exc)
                log.warning("table at %s: connect attempt %d failed: %s", url, attempt + 1, last)
                continue
            if ident.magic != mr.MAGIC:
                client.close()
                raise DeviceError(f"device at {url} is not a spinedecomp table: identity register "
                                  f"{mr.IDENTITY.address} reads {ident.magic:#06x}, expected "
                                  f"{mr.MAGIC:#06x} (see docs/device-protocol.md)")
            if ident.map_version != mr.MAP_VERSION:
                client.close()
                raise DeviceError(f"table at {url} implements register map version "
                                  f"{ident.map_version}; this software speaks version "
                                  f"{mr.MAP_VERSION}")
            try:
                table = cls._prepare(client, ident, pol)
            except (LinkError, DeviceRefused) as exc:
                client.close()
                last = f"set-up failed: {exc}"
                log.warning("table at %s: %s", url, last)
                continue
            log.info("connected to %s: %s, firmware %s, serial %s%s", url, ident.name,
                     ident.firmware, ident.serial,
                     " (a simulator)" if ident.has(mr.Capability.SIMULATED) else "")
            return table
        raise DeviceError(f"cannot reach the table at {url} after {1 + max(0, pol.connect_retries)} "
                          f"attempt(s) ({last}). Check that the table is on and connected and "
                          "the address is right; to use the simulator, choose it explicitly "
                          "(--device sim).")

    @classmethod
    def _prepare(cls, client: ModbusClient, ident: mr.Identity, pol: LinkPolicy) -> ModbusTable:
        readings = mr.decode_readings(client.read_input(mr.READINGS.address, mr.READINGS.count))
        client.write_holding(mr.CONFIG.field("WATCHDOG_MS").address, [pol.watchdog_ms])
        # A new session acknowledges what the table latched in a previous one; ENABLE stays 0
        # (the table refuses a reset with ENABLE set) and the angle set-point is the angle the
        # table is at, so nothing moves until the session commands it.
        angle = readings.angle_deg if math.isfinite(readings.angle_deg) else 0.0
        for control in (mr.Control.FAULT_RESET, 0):
            client.write_holding(mr.COMMAND.address, mr.encode_command(
                mr.Command(heartbeat=0, control=int(control), angle_deg=angle)))
        if readings.faults & (mr.Fault.HEARTBEAT_LOST | mr.Fault.RELEASED):
            log.warning("table reported latched faults %#06x from an earlier session; reset",
                        readings.faults)
        readings = mr.decode_readings(client.read_input(mr.READINGS.address, mr.READINGS.count))
        client.set_timeout(pol.io_timeout_s)
        return cls(client, ident, readings, pol)

    # ---- Table protocol ----------------------------------------------------------------------
    @property
    def info(self) -> TableInfo:
        """Identity and capabilities, as the table reported them."""
        return self._info

    def read(self) -> SensorFrame:
        """Raw sensors now (one Modbus read per period; see the module docstring)."""
        return self._fresh()

    def write(self, cmd: ActuatorCommand) -> None:
        """Send the period's command and a new heartbeat in one write."""
        self._hb = (self._hb + 1) & 0xFFFF
        control = int(mr.Control.ENABLE) if cmd.enable else 0
        if self._released:
            # Latched: once ordered, RELEASE replaces ENABLE in every write of the session.
            control = int(mr.Control.RELEASE)
        self._last_cmd = cmd
        regs = mr.encode_command(mr.Command(heartbeat=self._hb, control=control,
                                            velocity_mm_s=cmd.velocity_mm_s,
                                            angle_deg=cmd.angle_deg))
        if not self._client.is_open:
            return  # the link is down; `read` owns the reconnect policy
        try:
            self._client.write_holding(mr.COMMAND.address, regs)
        except DeviceRefused as exc:
            self.stats.refused += 1
            self._write_failed = True
            self._refused(str(exc))
        except LinkError as exc:
            self._link_failed(time.monotonic(), str(exc))
        else:
            self.stats.writes += 1
            if self._released and self._release_pending:
                self._release_delivered()

    def advance(self, dt: float) -> None:
        """A real table runs on its own: nothing to do (the engine's clock waits)."""

    def test_patient_switch(self) -> bool:
        """Set-up check: the switch is idle, then the patient presses and releases it (the
        table prompts the patient when it has the SWITCH_PROMPT capability; otherwise the
        operator asks). Both channels must change state."""
        fr = self._fresh()
        if not fr.comm_ok:
            log.error("patient switch test: no valid reading from the table")
            return False
        if not (fr.switch_a == 1.0 and fr.switch_b == 0.0):
            log.error("patient switch test: switch not idle (A=%g, B=%g): unplugged, pressed or "
                      "a wiring fault", fr.switch_a, fr.switch_b)
            return False
        prompt = self.identity.has(mr.Capability.SWITCH_PROMPT)
        if not prompt:
            log.warning("ask the patient to press and release the stop switch now")
        pressed = False
        ok = False
        try:
            if prompt:
                # Only a table that advertises the capability is sent the bit (section 3.5).
                self._write_control(int(mr.Control.SWITCH_PROMPT))
            deadline = time.monotonic() + self.policy.switch_test_timeout_s
            while time.monotonic() < deadline:
                fr = self._fresh()
                if not fr.comm_ok:
                    break
                if fr.switch_a == 0.0 and fr.switch_b == 1.0:
                    pressed = True
                elif pressed and fr.switch_a == 1.0 and fr.switch_b == 0.0:
                    ok = True
                    break
                time.sleep(0.005)  # polling a human: 5 ms is far below any press
        except (LinkError, DeviceRefused) as exc:
            log.error("patient switch test: %s", exc)
            return False
        finally:
            try:
                if prompt:
                    self._write_control(0)
            except (LinkError, DeviceRefused) as exc:
                log.error("patient switch test: could not clear the prompt: %s", exc)
                ok = False
        if not ok:
            log.error("patient switch test failed: %s", "press seen but no release" if pressed
                      else "no press seen on both channels")
        return ok

    def release(self) -> None:
        """Order the table's own release now (sections 4.2, 5.4): one attempt, reconnecting
        first if the link is down, bounded by the I/O timeout. Every later write carries
        RELEASE; an order not delivered now is delivered by the first write after a
        reconnect, or by `close()`. If it never arrives, the table's heartbeat watchdog
        releases anyway."""
        if not self._released:
            log.warning("ordering the table's own release (%s)", self.url)
        self._released = True
        self._release_pending = True
        self._deliver_release()

    @property
    def release_ordered(self) -> bool:
        """True once the table's own RELEASE was ordered in this session (latched)."""
        return self._released

    @property
    def release_delivered(self) -> bool:
        """True once a write carrying RELEASE was acknowledged by the table."""
        return self._released and not self._release_pending

    def close(self) -> None:
        """Disable the drive (best effort) and close the connection. After a lost link, or
        with a RELEASE ordered but not yet delivered, order the table's own RELEASE (a few
        bounded attempts) instead of merely disabling."""
        try:
            if self._link_lost and not self._released:
                log.warning("the link to %s was lost in this session: ordering the table's own "
                            "release on close", self.url)
                self._released = True
                self._release_pending = True
            if self._release_pending:
                wait = self.policy.backoff_s
                for attempt in range(max(1, self.policy.release_attempts)):
                    if attempt:
                        time.sleep(wait)  # the session is over: waiting costs nothing
                        wait = min(2.0 * wait, self.policy.backoff_max_s)
                    if self._deliver_release():
                        break
            elif self._client.is_open:
                self._write_control(int(mr.Control.RELEASE) if self._released else 0)
        except (LinkError, DeviceRefused) as exc:
            log.warning("could not disable the drive on close (%s); the table's watchdog "
                        "releases on its own", exc)
        finally:
            self._client.close()
        if self._release_pending:
            log.error("the RELEASE order never reached %s; the table's watchdog releases on its "
                      "own within %d ms of the last heartbeat", self.url, self.policy.watchdog_ms)
        if self.stats.failures or self.stats.refused:
            log.warning("link to %s: %d link error(s), %d refused request(s), %d reconnect(s) "
                        "in %d attempt(s); last error: %s", self.url, self.stats.failures,
                        self.stats.refused, self.stats.reconnects, self.stats.reconnect_attempts,
                        self.stats.last_error)

    # ---- internals ---------------------------------------------------------------------------
    @property
    def link_lost(self) -> bool:
        """True once the link failed in this session (latched)."""
        return self._link_lost

    def _write_control(self, control: int) -> None:
        self._client.write_holding(mr.COMMAND.field("CONTROL").address, [control])

    def _deliver_release(self) -> bool:
        """One attempt to write the whole command block with RELEASE (and a new heartbeat);
        True once delivered. Reconnects first if needed, even after the driver gave up."""
        if not self._release_pending:
            return True
        self._hb = (self._hb + 1) & 0xFFFF
        c = self._last_cmd
        regs = mr.encode_command(mr.Command(heartbeat=self._hb, control=int(mr.Control.RELEASE),
                                            angle_deg=c.angle_deg))
        try:
            if not self._client.is_open:
                self._client.open()
            self._client.write_holding(mr.COMMAND.address, regs)
        except (LinkError, DeviceRefused) as exc:
            if isinstance(exc, LinkError):
                self._client.close()
            self.stats.last_error = str(exc)
            log.error("release order could not be delivered to %s (%s); retried on the next "
                      "reconnect and on close", self.url, exc)
            return False
        self.stats.writes += 1
        self._release_delivered()
        return True

    def _release_delivered(self) -> None:
        self._release_pending = False
        log.warning("the table at %s acknowledged the RELEASE order", self.url)

    def _fresh(self) -> SensorFrame:
        self._frame = self._fetch(time.monotonic())
        return self._frame

    def _stale(self) -> SensorFrame:
        return replace(self._frame, comm_ok=False)

    def _refused(self, msg: str) -> None:
        self.stats.last_error = msg
        if not self._warned_refused:
            self._warned_refused = True
            log.error("table refused a request: %s; reporting communication lost", msg)

    def _fetch(self, now: float) -> SensorFrame:
        if not self._client.is_open and not self._reconnect(now):
            return self._stale()
        try:
            regs = self._client.read_input(mr.READINGS.address, mr.READINGS.count)
        except DeviceRefused as exc:
            # The link works but the table cannot answer: not latched (the monitor's 50 ms
            # filter decides), no reconnect (it would not help).
            self.stats.refused += 1
            self._refused(str(exc))
            return self._stale()
        except LinkError as exc:
            self._link_failed(now, str(exc))
            return self._stale()
        self.stats.reads += 1
        r = mr.decode_readings(regs)
        ok = not self._link_lost and not self._write_failed
        self._write_failed = False
        if r.faults != self._faults:
            changed = r.faults ^ self._faults
            names = [f.name for f in mr.Fault if changed & f]
            log.warning("table fault bits now %#06x (changed: %s)", r.faults, ", ".join(names))
            self._faults = r.faults
        if r.faults & mr.Fault.HEARTBEAT_LOST:
            # The table stopped hearing us and released on its own: the link is not working
            # from its side, whatever ours says.
            ok = False
        if r.sample != self._sample:
            self._sample = r.sample
            self._sample_t = now
            self._warned_stale = False
        elif now - self._sample_t > self.policy.stale_s:
            ok = False
            if not self._warned_stale:
                self._warned_stale = True
                log.error("table SAMPLE counter stuck for %.0f ms: the table is not sampling",
                          (now - self._sample_t) * 1000.0)
        return _frame(r, ok)

    def _link_failed(self, now: float, reason: str) -> None:
        self._client.close()
        self.stats.failures += 1
        self.stats.last_error = reason
        if not self._link_lost:
            log.error("link to the table at %s lost (%s): reporting communication lost; the "
                      "session releases and will not resume", self.url, reason)
        self._link_lost = True
        self._attempts = 0
        self._backoff = self.policy.backoff_s
        self._next_attempt = now + self._backoff

    def _reconnect(self, now: float) -> bool:
        """One reconnect attempt if one is due; True if the link is back."""
        if self.stats.gave_up or now < self._next_attempt:
            return False
        if self._attempts >= self.policy.reconnect_attempts:
            self.stats.gave_up = True
            log.error("giving up on %s after %d reconnect attempts; the table's own watchdog "
                      "has released it", self.url, self._attempts)
            return False
        self._attempts += 1
        self.stats.reconnect_attempts += 1
        try:
            self._client.open()
            head = self._client.read_input(mr.IDENTITY.address, 2)
            if head[0] != mr.MAGIC:
                self._client.close()
                raise LinkError(f"another device answers at {self.url} (magic {head[0]:#06x})")
        except (LinkError, DeviceRefused) as exc:
            self._client.close()
            self.stats.last_error = str(exc)
            self._backoff = min(2.0 * self._backoff, self.policy.backoff_max_s)
            self._next_attempt = time.monotonic() + self._backoff
            log.info("reconnect attempt %d/%d to %s failed: %s", self._attempts,
                     self.policy.reconnect_attempts, self.url, exc)
            return False
        self.stats.reconnects += 1
        log.warning("reconnected to %s after %d attempt(s); the treatment stays stopped "
                    "(the link was lost in this session)", self.url, self._attempts)
        self._attempts = 0
        self._backoff = self.policy.backoff_s
        if self._release_pending:
            # A RELEASE ordered while the link was down goes out first thing.
            self._deliver_release()
        return self._client.is_open
