"""Modbus TCP on loopback: how fast can the closed loop run, and how steady is it?

The served simulator runs in its own process (`spinedecomp device serve`), like a table on
the other end of a cable; this process is the controller. Measured:

1. round trips back to back: one read of the readings block (function 4, 21 registers), one
   write of the command block (function 16, 8 registers), and one control period's worth of
   traffic (read + write): rate, p50/p99/max latency;
2. a real session through `ModbusTable` (the session engine's step loop: read, controller,
   safety monitor, write, paced by `RealClock`) at candidate rates, a few seconds each:
   period jitter (wake-to-wake interval minus the period, p50/p99/max), lateness, periods
   whose work overran the period, and whether the table's heartbeat watchdog stayed quiet;
3. the rate to run a real table at, and why.

Run: `.venv/bin/python -m benchmarks.bench_modbus` (or as part of `make bench`).
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spinedecomp.control.protocol import parse_protocol, resolve
from spinedecomp.core.clock import RealClock
from spinedecomp.core.units import Region
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.modbus import LinkPolicy, ModbusTable
from spinedecomp.device.modbus_adapter import ModbusClient
from spinedecomp.safety.config import SafetyConfig
from spinedecomp.session.engine import SessionEngine

ROUND_TRIPS = 3000
LOOP_S = 4.0
# A generous I/O timeout: the bench measures latency, it must not turn a slow reply into a
# link fault in the middle of a measurement. The watchdog stays at its default.
POLICY = LinkPolicy(io_timeout_s=0.5)
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


class _TimedClock(RealClock):
    """RealClock that notes when each period's work ended and when the next one woke up."""

    def __init__(self, dt: float) -> None:
        super().__init__(dt)
        self.work_end: list[float] = []
        self.wake: list[float] = []

    def wait_next(self) -> float:
        self.work_end.append(time.monotonic())
        t = super().wait_next()
        self.wake.append(time.monotonic())
        return t


def _loop(port: int, probe: ModbusClient, rate_hz: float, seconds: float) -> LoopResult:
    """A real session (the engine's step loop: read, controller, safety monitor, write) at
    `rate_hz`, stopped by the operator after `seconds`; its treatment periods measured."""
    dt = 1.0 / rate_hz
    res = resolve(parse_protocol(dict(
        name="bench", region="lumbar", mode="static", max_force={"value": 30, "unit": "%bw"},
        ramp_s=10, ramp_shape="linear", duration_min=1, angle_deg=10)), 80.0)
    # A fresh connect per rate: it also resets the table's latched faults.
    table = ModbusTable.connect("127.0.0.1", port, policy=POLICY)
    clock = _TimedClock(dt)
    eng = SessionEngine(table, res, rate_hz=rate_hz, clock=clock,
                        safety=SafetyConfig.for_region(Region.LUMBAR, motor_off_delay_s=0.5))
    eng.setup(confirm_high_force=True)
    n0 = len(clock.wake)
    eng.run(until_s=seconds)  # closes the table
    # The treatment periods only: skip the catch-up after set-up (the clock started before
    # the switch test) and the release after the stop.
    wake = np.array(clock.wake[n0:])
    work_end = np.array(clock.work_end[n0:])
    settled = wake > wake[0] + 0.5
    i0 = int(np.argmax(settled))
    i1 = i0 + int((seconds - 0.5) * rate_hz * 0.8)
    wake, work_end = wake[i0:i1], work_end[i0 + 1:i1 + 1]
    n = min(len(wake), len(work_end))
    wake, work_end = wake[:n], work_end[:n]
    jitter = np.abs(np.diff(wake) - dt) * 1e3
    deadlines = wake[0] + np.arange(n) * dt
    late = np.maximum(wake - deadlines, 0.0) * 1e3
    busy = (work_end - wake) / dt
    r = mr.decode_readings(probe.read_input(0, mr.READINGS.count))
    return LoopResult(
        rate_hz=rate_hz, periods=n,
        jitter_p50_ms=float(np.percentile(jitter, 50)),
        jitter_p99_ms=float(np.percentile(jitter, 99)),
        jitter_max_ms=float(jitter.max()),
        late_p99_ms=float(np.percentile(late, 99)),
        overruns=int(np.sum(busy > 1.0)),
        busy_p99_pct=float(np.percentile(busy, 99) * 100.0),
        watchdog_tripped=bool(r.faults & mr.Fault.HEARTBEAT_LOST),
        comm_failures=table.stats.failures + table.stats.refused,
    )


def run() -> tuple[list[Latency], list[LoopResult]]:
    """Measure; returns the round-trip and closed-loop results."""
    proc, port = _serve()
    try:
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
            loops.append(_loop(port, client, rate, LOOP_S))
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
    # The driver logs link events for operators; here the table below reports them.
    logging.getLogger("spinedecomp").setLevel(logging.ERROR)
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
    print("\nSession engine step loop through ModbusTable, paced by RealClock:")
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
    print("Jitter = |wake-to-wake interval - period|; its tail is the scheduler waking two "
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
