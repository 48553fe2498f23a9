"""Modbus TCP on loopback: how fast can the closed loop run, and how steady is it?

The served simulator runs in its own process (`spinedecomp device serve`), like a table on
the other end of a cable; this process is the controller. Measured:

1. round trips back to back: one read of the readings block (function 4, 21 registers), one
   write of the command block (function 16, 8 registers), and one control period's worth of
   traffic (read + write): rate, p50/p99/max latency;
2. the closed loop paced by `RealClock` at candidate rates, each period doing what the
   session engine's step loop does (read, controller, safety monitor, write): period jitter
   (start-to-start interval minus the period, p50/p99/max), start lateness, overruns, and
   whether the table's heartbeat watchdog stayed quiet;
3. the rate to run a real table at, and why.

Run: `.venv/bin/python -m benchmarks.bench_modbus` (or as part of `make bench`).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.control import law as cl
from spinedecomp.control.config import ControllerConfig
from spinedecomp.core.clock import RealClock
from spinedecomp.core.units import Region
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.modbus import LinkPolicy, ModbusTable
from spinedecomp.device.modbus_adapter import ModbusClient
from spinedecomp.device.table import ActuatorCommand
from spinedecomp.safety import law as zl
from spinedecomp.safety.config import SafetyConfig

F64 = npt.NDArray[np.float64]
ROUND_TRIPS = 3000
LOOP_S = 3.0
RATES_HZ = (50.0, 100.0, 200.0, 250.0, 500.0, 1000.0)


@dataclass
class Latency:
    """Latency statistics of one kind of transaction."""

    name: str
    n: int
    per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class LoopResult:
    """One paced closed-loop run."""

    rate_hz: float
    periods: int
    jitter_p50_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float
    late_p99_ms: float
    overruns: int
    busy_p99_pct: float  # p99 of (work in the period) / period
    watchdog_tripped: bool
    comm_failures: int


def _serve() -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-c", "from spinedecomp.cli.app import main; main()", "device",
           "serve", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline and sel.select(timeout=deadline - time.monotonic()):
        line = proc.stdout.readline()
        if line.startswith("serving modbus://"):
            return proc, int(line.strip().rsplit(":", 1)[1])
        if not line:
            break
    proc.kill()
    raise RuntimeError("served simulator did not start")


def _latency(name: str, fn: Callable[[], object], n: int) -> Latency:
    lat = np.empty(n)
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        lat[i] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    ms = lat * 1e3
    return Latency(name, n, n / total, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                   float(ms.max()))


def _loop(table: ModbusTable, probe: ModbusClient, rate_hz: float, seconds: float) -> LoopResult:
    dt = 1.0 / rate_hz
    ccfg = ControllerConfig.for_region(Region.LUMBAR)
    c, cp = ccfg.new_state(), ccfg.params(dt)
    z, zp = zl.new_state(), SafetyConfig.for_region(Region.LUMBAR).params()
    alarms = np.zeros((zl.MAX_ALARMS, 4))
    n = max(10, int(seconds * rate_hz))
    starts = np.empty(n)
    busy = np.empty(n)
    failures0 = table.stats.failures + table.stats.refused
    # Warm the compiled kernels (loaded from numba's cache on first call) on scratch state.
    cl.controller_step(ccfg.new_state(), cp, dt, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    zl.safety_step(zl.new_state(), zp, np.zeros_like(alarms), dt, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
                   0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    clock = RealClock(dt)
    t0 = time.monotonic()
    for i in range(n):
        ts = time.monotonic()
        starts[i] = ts
        fr = table.read()
        # The real work of a period: the compiled controller and safety monitor. Target 0 N
        # keeps the patient untouched; the drive is enabled so the table's watchdog is armed.
        v = cl.controller_step(c, cp, dt, 0.0, 1.0, 0.0, fr.force_a_n, fr.force_b_n,
                               fr.position_mm)
        v = zl.safety_step(z, zp, alarms, dt, fr.force_a_n, fr.force_b_n, fr.position_mm,
                           fr.angle_deg, fr.angle_deg, fr.switch_a, fr.switch_b, 0.0,
                           c[cl.C_HEARTBEAT], 1.0 if fr.comm_ok else 0.0, 0.0, v, 0.0)
        table.write(ActuatorCommand(min(v, 0.0), fr.angle_deg, True, int(c[cl.C_HEARTBEAT])))
        table.advance(dt)
        table.read()
        busy[i] = time.monotonic() - ts
        clock.wait_next()
    deadlines = t0 + np.arange(n) * dt
    jitter = np.abs(np.diff(starts) - dt) * 1e3
    late = np.maximum(starts - deadlines, 0.0) * 1e3
    r = mr.decode_readings(probe.read_input(0, mr.READINGS.count))
    return LoopResult(
        rate_hz=rate_hz, periods=n,
        jitter_p50_ms=float(np.percentile(jitter, 50)),
        jitter_p99_ms=float(np.percentile(jitter, 99)),
        jitter_max_ms=float(jitter.max()),
        late_p99_ms=float(np.percentile(late[1:], 99)),
        overruns=clock.overruns,
        busy_p99_pct=float(np.percentile(busy / dt, 99) * 100.0),
        watchdog_tripped=bool(r.faults & mr.Fault.HEARTBEAT_LOST),
        comm_failures=table.stats.failures + table.stats.refused - failures0,
    )


def run() -> tuple[list[Latency], list[LoopResult]]:
    """Measure; returns the round-trip and closed-loop results."""
    proc, port = _serve()
    try:
        # A generous I/O timeout: the bench measures latency, it must not turn a slow reply
        # into a link fault and reconnect in the middle of a measurement.
        policy = LinkPolicy(io_timeout_s=0.5, watchdog_ms=100)
        client = ModbusClient("127.0.0.1", port, timeout_s=0.5)  # raw transactions
        client.open()
        cmd = mr.encode_command(mr.Command(heartbeat=0, control=0, angle_deg=0.0))
        for _ in range(200):  # warm up sockets, caches and the server's code paths
            client.read_input(0, mr.READINGS.count)

        def period() -> None:
            client.read_input(0, mr.READINGS.count)
            client.write_holding(0, cmd)

        lats = [
            _latency("read readings (fc 4, 21 regs)",
                     lambda: client.read_input(0, mr.READINGS.count), ROUND_TRIPS),
            _latency("write command (fc 16, 8 regs)",
                     lambda: client.write_holding(0, cmd), ROUND_TRIPS),
            _latency("one period: read + write", period, ROUND_TRIPS),
        ]
        loops: list[LoopResult] = []
        for rate in RATES_HZ:
            # A fresh connect per rate: it resets the table's latched faults.
            table = ModbusTable.connect("127.0.0.1", port, policy=policy)
            try:
                loops.append(_loop(table, client, rate, LOOP_S))
            finally:
                table.close()
        client.close()
        return lats, loops
    finally:
        proc.terminate()
        proc.wait(10.0)


def _recommend(loops: list[LoopResult]) -> tuple[float, float]:
    """(highest rate that kept up cleanly, recommended rate)."""
    clean = [lr.rate_hz for lr in loops
             if lr.overruns <= 0.01 * lr.periods and not lr.watchdog_tripped
             and lr.comm_failures == 0]
    best = max(clean, default=0.0)
    return best, 100.0


def main() -> None:
    """Run the benchmark and print the results."""
    print("Modbus TCP on loopback: controller (this process) <-> served simulator (child process)")
    lats, loops = run()
    load = os.getloadavg()
    print(f"  {os.cpu_count()} CPU(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}: "
          "tails move with machine load")
    print("\nRound trips, back to back:")
    print(f"  {'transaction':32s} {'per s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for lt in lats:
        print(f"  {lt.name:32s} {lt.per_s:8.0f} {lt.p50_ms:8.3f} {lt.p99_ms:8.3f} {lt.max_ms:8.2f}")
    period = lats[-1]
    print(f"  => at most ~{period.per_s:.0f} control periods/s if the loop did nothing else")
    print("\nClosed loop paced by RealClock (read, controller, safety monitor, write):")
    print(f"  {'rate Hz':>7s} {'jitter p50':>10s} {'p99':>7s} {'max':>7s} {'late p99':>9s} "
          f"{'overruns':>9s} {'busy p99':>9s} {'watchdog':>9s} {'link err':>8s}")
    for lr in loops:
        print(f"  {lr.rate_hz:7.0f} {lr.jitter_p50_ms:8.3f}ms {lr.jitter_p99_ms:7.3f} "
              f"{lr.jitter_max_ms:7.2f} {lr.late_p99_ms:9.3f} {lr.overruns:5d}/{lr.periods:<4d}"
              f"{lr.busy_p99_pct:8.0f}% {'TRIPPED' if lr.watchdog_tripped else 'quiet':>9s} "
              f"{lr.comm_failures:8d}")
    best, rec = _recommend(loops)
    print(f"\nHighest rate that kept up here (<= 1% overrun periods, no link error, table "
          f"watchdog quiet): {best:.0f} Hz")
    print("Jitter = |start-to-start interval - period|; its tail is the scheduler waking two "
          "processes on a shared machine, not the link (see the p50).")
    print(f"Recommended rate for a real table: {rec:.0f} Hz (10 ms period). Why:")
    print("  - the force loop's crossover is 12 rad/s (~2 Hz) and the motor lag 20 ms: 100 Hz is")
    print("    50x the loop bandwidth; in the simulator the hold error at 100 Hz is within a few")
    print("    hundredths of a percent of 1 kHz, and over Modbus it matches in-process (tests/device);")
    print("  - the safety monitor's filters (over-force 20 ms, rate 30 ms, comm-lost 50 ms) are")
    print("    2-5 periods at 100 Hz, so a trip still needs more than one bad sample;")
    print("  - a real table's Modbus stack answers in ~1-5 ms, not the loopback's "
          f"{period.p50_ms:.2f} ms: two")
    print("    transactions per period must fit with margin; 10 ms leaves >= 2x headroom on a")
    print("    direct Ethernet link, while 200+ Hz would leave none on a slow firmware stack;")
    print("  - the table's heartbeat watchdog (100 ms) then spans 10 periods: one late period")
    print("    never releases a patient, a dead controller always does.")


if __name__ == "__main__":
    main()
