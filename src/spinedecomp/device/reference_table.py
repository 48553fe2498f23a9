"""A reference table side of the spinedecomp Modbus map (docs/device-protocol.md), to start from.

This module is meant to be copied out of spinedecomp by a table maker: it depends on the
Python standard library and pymodbus (3.16) only, and carries its own copy of the register
map. It implements every table-side rule of the document with a trivial mechanical model in
place of a real drive:

- cable: a first-order velocity drive (time constant `drive_lag_s`) following VELOCITY within
  VELOCITY_MAX while enabled; a freewheeling reel (tension pays the cable out, never in) when
  the drive is off or released; force = stiffness x (position - slack), both load cells alike;
- angle of pull: moves towards ANGLE_SETPOINT clamped to ANGLE_MIN..ANGLE_MAX at a fixed rate,
  with the drive on or off, and holds still while released;
- the table's own limits: FORCE_LIMIT (releases, FAULTS.FORCE_LIMIT latched) and TRAVEL_MAX
  (no pull beyond it, FAULTS.TRAVEL_END while there, not latched);
- heartbeat watchdog, RELEASE, FAULT_RESET and refused writes exactly as section 4 says;
- SWITCH_PROMPT (advertised by default): a simulated patient presses the stop switch 0.3 s
  after the prompt starts and lets go 0.3 s later.

In real firmware, replace `_mechanics` with the drive, the encoders and the load cells; keep
the rest. Run it with `spinedecomp device reference --port 5021` (or `python -m
spinedecomp.device.reference_table --port 5021`) and check it, or your own table, with
`spinedecomp device conformance modbus://127.0.0.1:5021`.

`watchdog=False` builds a deliberately broken table (no heartbeat watchdog) that the
conformance suite must fail; never ship such a thing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger(__name__)

# ---- the register map (docs/device-protocol.md section 3) ------------------------------------
MAGIC = 0x5344
MAP_VERSION = 1
READINGS_AT, READINGS_N = 0, 21  # input registers
IDENTITY_AT, IDENTITY_N = 100, 47  # input registers
HOLDING_N = 9  # holding 0-7 command, 8 WATCHDOG_MS

# CONTROL bits
ENABLE, RELEASE, FAULT_RESET, SWITCH_PROMPT = 1, 2, 4, 8
CONTROL_KNOWN = ENABLE | RELEASE | FAULT_RESET | SWITCH_PROMPT
# FAULTS bits
HEARTBEAT_LOST, RELEASED, BAD_COMMAND, TRAVEL_END = 1, 2, 4, 8
LOADCELL, MOTOR, ANGLE, SWITCH, FORCE_LIMIT = 16, 32, 64, 128, 256
LATCHED = HEARTBEAT_LOST | RELEASED | FORCE_LIMIT  # each one releases the table
# MOTOR_STATE values
DISABLED, ENABLED, RELEASED_STATE, FAULT_STATE = 0, 1, 2, 3
# CAPABILITIES bits
CAP_LUMBAR, CAP_CERVICAL, CAP_FORCE_MODE, CAP_SIMULATED, CAP_SWITCH_PROMPT = 1, 2, 4, 8, 16

WATCHDOG_DEFAULT_MS, WATCHDOG_MIN_MS, WATCHDOG_MAX_MS = 100, 20, 2000
EXC_ILLEGAL_ADDRESS, EXC_ILLEGAL_VALUE = 2, 3
SENTINEL_I32, SENTINEL_U16 = -0x8000_0000, 0xFFFF


def _i32(value: float, scale: float) -> list[int]:
    """A signed 32-bit value in `scale` steps, high word first; saturates short of the
    sentinel (which means 'no valid value')."""
    n = SENTINEL_I32 if math.isnan(value) else min(max(round(value / scale), -0x7FFF_FFFF),
                                                       0x7FFF_FFFF)
    u = n & 0xFFFF_FFFF
    return [u >> 16, u & 0xFFFF]


def _u32(n: int) -> list[int]:
    u = n & 0xFFFF_FFFF
    return [u >> 16, u & 0xFFFF]


def _i16(value: float, scale: float) -> int:
    return min(max(round(value / scale), -0x7FFF), 0x7FFF) & 0xFFFF


def _s16(reg: int) -> int:
    return reg - 0x1_0000 if reg & 0x8000 else reg


def _s32(hi: int, lo: int) -> int:
    u = (hi << 16) | lo
    return u - 0x1_0000_0000 if u & 0x8000_0000 else u


def _text(text: str, regs: int) -> list[int]:
    raw = text.encode("ascii", errors="replace")[: 2 * regs].ljust(2 * regs, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, 2 * regs, 2)]


class ReferenceTable:
    """The table side: registers, rules and a trivial mechanical model on a 1 kHz thread."""

    def __init__(self, *, force_limit_n: float = 980.0, travel_max_mm: float = 300.0,
                 velocity_max_mm_s: float = 100.0, angle_min_deg: float = -2.0,
                 angle_max_deg: float = 35.0, angle_deg: float = 15.0,
                 angle_rate_deg_s: float = 10.0, stiffness_n_per_mm: float = 10.0,
                 slack_mm: float = 20.0, drive_lag_s: float = 0.02, rate_hz: float = 1000.0,
                 switch_prompt: bool = True, watchdog: bool = True,
                 serial: str = "REF-0001") -> None:
        """A reference table; `watchdog=False` disables the heartbeat watchdog (a broken
        table for the conformance suite to catch)."""
        self.force_limit_n = force_limit_n
        self.travel_max_mm = travel_max_mm
        self.velocity_max_mm_s = velocity_max_mm_s
        self.angle_min_deg, self.angle_max_deg = angle_min_deg, angle_max_deg
        self.angle_rate_deg_s = angle_rate_deg_s
        self.stiffness = stiffness_n_per_mm
        self.slack_mm = slack_mm
        self.drive_lag_s = drive_lag_s
        self.step_s = 1.0 / rate_hz
        self.switch_prompt = switch_prompt
        self.watchdog = watchdog
        caps = CAP_LUMBAR | (CAP_SWITCH_PROMPT if switch_prompt else 0)
        self._identity = [MAGIC, MAP_VERSION, caps, *_i32(force_limit_n, 0.01),
                          _i16(angle_min_deg, 0.01), _i16(angle_max_deg, 0.01),
                          *_i32(travel_max_mm, 0.01), *_i32(velocity_max_mm_s, 0.01),
                          round(rate_hz), *_text("spinedecomp reference table", 16),
                          *_text(f"reference-{MAP_VERSION}", 8), *_text(serial, 8),
                          # Declared drive: lag in 0.1 ms, no transport delay, stiffness.
                          round(drive_lag_s * 10000.0), 0, round(stiffness_n_per_mm * 100.0)]
        assert len(self._identity) == IDENTITY_N
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        # Holding registers as last accepted: command 0-7, WATCHDOG_MS at 8.
        self._holding = [0] * HOLDING_N
        self._holding[7] = _i16(angle_deg, 0.01)
        self._x = 0.0  # cable position, mm
        self._v = 0.0  # cable velocity, mm/s
        self._angle = angle_deg
        self._latched = 0
        self._bad_command = False
        self._enabled = False
        self._armed = False
        self._hb_t = self._t0
        self._samples = 0
        self._prompt_t: float | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the table's own loop -----------------------------------------------------------
    def start(self) -> None:
        """Start sampling and running the drive in wall time."""
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="reference-table", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (the table is switched off)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        t = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            if now - t > 0.5:  # suspended: do not replay a pause
                t = now - self.step_s
            if now - t >= self.step_s:
                with self._lock:
                    while now - t >= self.step_s:
                        t += self.step_s
                        self._step(t)
            else:
                time.sleep(t + self.step_s - now)

    def _force(self) -> float:
        return self.stiffness * max(0.0, self._x - self.slack_mm)

    def _step(self, now: float) -> None:
        """One sample period (lock held): watchdog, limits, drive, angle, switch."""
        control = self._holding[1]
        want = bool(control & ENABLE)
        if want and not self._armed:
            self._armed = True
            self._hb_t = now  # the first heartbeat gets a whole watchdog period to arrive
        elif not want:
            self._armed = False
        wd_s = (self._holding[8] or WATCHDOG_DEFAULT_MS) / 1000.0
        if self.watchdog and self._armed and not self._latched & HEARTBEAT_LOST \
                and now - self._hb_t > wd_s:
            self._latched |= HEARTBEAT_LOST
            log.error("reference table: no new heartbeat for %.0f ms: released", wd_s * 1e3)
        if self._force() >= self.force_limit_n and not self._latched & FORCE_LIMIT:
            self._latched |= FORCE_LIMIT
            log.error("reference table: force limit %.0f N reached: released", self.force_limit_n)
        self._enabled = want and not self._latched and self._holding[2] == 0
        self._mechanics(self.step_s)
        self._samples += 1

    def _mechanics(self, dt: float) -> None:
        """The trivial model; real firmware drives the motor and reads its sensors here."""
        if self._enabled:
            v_cmd = _s32(self._holding[3], self._holding[4]) * 0.01
            v_cmd = min(max(v_cmd, -self.velocity_max_mm_s), self.velocity_max_mm_s)
            if self._x >= self.travel_max_mm:
                v_cmd = min(v_cmd, 0.0)  # end of travel: pay-out only
            self._v += (v_cmd - self._v) * min(1.0, dt / self.drive_lag_s)
            if self._x >= self.travel_max_mm:
                self._v = min(self._v, 0.0)
        else:
            # Drive off or released: the reel freewheels, tension pays the cable out.
            self._v = max(-self._force() / 4.0, -4.0 * self.velocity_max_mm_s)
        self._x = min(max(self._x + self._v * dt, 0.0), self.travel_max_mm + 10.0)
        if not self._latched:
            target = min(max(_s16(self._holding[7]) * 0.01, self.angle_min_deg),
                         self.angle_max_deg)
            step = self.angle_rate_deg_s * dt
            self._angle += min(max(target - self._angle, -step), step)

    def _pressed(self) -> bool:
        if self._prompt_t is None:
            return False
        el = time.monotonic() - self._prompt_t
        return 0.3 <= el < 0.6

    # ---- registers ----------------------------------------------------------------------
    def _faults(self) -> int:
        bits = self._latched | (BAD_COMMAND if self._bad_command else 0)
        if self._x >= self.travel_max_mm:
            bits |= TRAVEL_END
        return bits

    def _motor_state(self) -> int:
        if self._latched:
            return RELEASED_STATE
        return ENABLED if self._enabled else DISABLED

    def _readings(self) -> list[int]:
        f = self._force()
        pressed = self._pressed()
        return [*_u32(self._samples), *_i32(f, 0.01), *_i32(f, 0.01), *_i32(self._x, 0.01),
                _i16(self._angle, 0.01), 0 if pressed else 1, 1 if pressed else 0,
                self._motor_state(), self._faults(), self._holding[0],
                *_u32(int((time.monotonic() - self._t0) * 1000.0)),
                # Simulator-only values: a real table answers the sentinel.
                *_i32(math.nan, 0.01), *_i32(math.nan, 0.01), SENTINEL_U16]

    def read_input(self, address: int, count: int) -> list[int] | int:
        """Function 4: readings 0-20 or identity 100-146, never across blocks."""
        if count < 1:
            return EXC_ILLEGAL_ADDRESS
        if address >= READINGS_AT and address + count <= READINGS_AT + READINGS_N:
            with self._lock:
                regs = self._readings()
            return regs[address - READINGS_AT:address - READINGS_AT + count]
        if address >= IDENTITY_AT and address + count <= IDENTITY_AT + IDENTITY_N:
            return self._identity[address - IDENTITY_AT:address - IDENTITY_AT + count]
        return EXC_ILLEGAL_ADDRESS

    def read_holding(self, address: int, count: int) -> list[int] | int:
        """Function 3: what the table last accepted in holding 0-8."""
        if count < 1 or address < 0 or address + count > HOLDING_N:
            return EXC_ILLEGAL_ADDRESS
        with self._lock:
            return self._holding[address:address + count]

    def write_holding(self, address: int, values: Sequence[int]) -> int | None:
        """Functions 6 and 16: applied as a whole or refused as a whole (exception 03)."""
        n = len(values)
        if n < 1 or address < 0 or address + n > HOLDING_N:
            return EXC_ILLEGAL_ADDRESS
        with self._lock:
            regs = list(self._holding)
            regs[address:address + n] = [int(v) & 0xFFFF for v in values]
            control, mode, wd = regs[1], regs[2], regs[8]
            reason = None
            if control & ~CONTROL_KNOWN:
                reason = f"reserved CONTROL bits {control:#06x}"
            elif control & FAULT_RESET and control & ENABLE:
                reason = "FAULT_RESET with ENABLE set"
            elif mode != 0:
                reason = f"MODE {mode} not supported"
            elif wd and not WATCHDOG_MIN_MS <= wd <= WATCHDOG_MAX_MS:
                reason = f"WATCHDOG_MS {wd} outside {WATCHDOG_MIN_MS}-{WATCHDOG_MAX_MS}"
            if reason is not None:
                # Nothing of a refused write is applied, the heartbeat included.
                self._bad_command = True
                log.warning("reference table: write refused: %s", reason)
                return EXC_ILLEGAL_VALUE
            now = time.monotonic()
            self._bad_command = False
            if regs[0] != self._holding[0]:
                self._hb_t = now  # only a changed heartbeat feeds the watchdog
            # Order inside one write: FAULT_RESET first, then RELEASE, so a write carrying
            # both leaves the table released (RELEASE always wins).
            if control & FAULT_RESET and self._latched:
                log.warning("reference table: fault reset (cleared %#06x)", self._latched)
                self._latched = 0
            if control & RELEASE and not self._latched & RELEASED:
                self._latched |= RELEASED
                log.warning("reference table: RELEASE ordered")
            prompt = bool(control & SWITCH_PROMPT) and self.switch_prompt
            if prompt and self._prompt_t is None:
                self._prompt_t = now
            elif not prompt:
                self._prompt_t = None
            self._holding = regs
        return None


class ReferenceServer:
    """A `ReferenceTable` behind a pymodbus TCP server on its own thread."""

    def __init__(self, table: ReferenceTable, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve `table` on host:port (0 = any free port)."""
        self.table = table
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The device URL of this table."""
        return f"modbus://{self.host}:{self.port}"

    def _device(self) -> SimDevice:
        table = self.table

        async def action(func_code: int, start_address: int, address: int, count: int,
                         current: list[int], values: list[int] | list[bool] | None
                         ) -> ExcCodes | None:
            # pymodbus calls this before answering; the table decides every value.
            if values is not None and func_code in (6, 16, 23):
                rc = table.write_holding(address, [int(v) for v in values])
                return ExcCodes(rc) if rc else None
            res = (table.read_input(address, count) if func_code == 4
                   else table.read_holding(address, count))
            if isinstance(res, int):
                return ExcCodes(res)
            off = address - start_address
            current[off:off + count] = res
            return None

        holding = [SimData(address=0, count=HOLDING_N, values=0, datatype=DataType.REGISTERS)]
        inputs = [SimData(address=READINGS_AT, count=READINGS_N, values=0,
                          datatype=DataType.REGISTERS),
                  SimData(address=IDENTITY_AT, count=IDENTITY_N, values=0,
                          datatype=DataType.REGISTERS)]
        bits = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(0, simdata=(bits, list(bits), holding, inputs), action=action)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
            sockets = getattr(server.transport, "sockets", None)
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def start(self) -> int:
        """Start the table and its server; returns the bound port (OSError if it cannot)."""
        self.table.start()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="reference-server", daemon=True)
        self._thread.start()
        if not self._started.wait(5.0) or self._error is not None:
            self.stop()
            raise OSError(f"cannot serve on {self.host}:{self.port}: {self._error}")
        return self.port

    def stop(self) -> None:
        """Stop the server and the table."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.table.stop()

    def __enter__(self) -> ReferenceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve a reference table until SIGINT or SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5021)
    ap.add_argument("--no-watchdog", action="store_true",
                    help="a deliberately broken table, for testing the conformance suite")
    args = ap.parse_args(argv)
    srv = ReferenceServer(ReferenceTable(watchdog=not args.no_watchdog), host=args.host,
                          port=args.port)
    srv.start()
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.stdout.write(f"serving {srv.url}\n")
    sys.stdout.flush()
    try:
        while not done.wait(0.5):
            pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
