"""Helpers for the Modbus tests: real sockets on 127.0.0.1 only.

- `LinkProxy`: a tiny asyncio TCP proxy that passes, delays or corrupts the table's replies.
- `ServeProcess`: `spinedecomp device serve` in a child process (a table that can be killed).
- `run_session`: a short real-time session through `ModbusTable`, with a hook to inject a
  link fault at a given session time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spinedecomp.control.protocol import Protocol, ResolvedProtocol, parse_protocol, resolve
from spinedecomp.core.clock import RealClock
from spinedecomp.core.units import Region
from spinedecomp.device.modbus import LinkPolicy, ModbusTable
from spinedecomp.device.simulated import PatientModel
from spinedecomp.safety.config import SafetyConfig
from spinedecomp.session.engine import SessionEngine, SessionResult

RATE_HZ = 100.0
WEIGHT_KG = 80.0
MODEL = PatientModel(region=Region.LUMBAR, body_weight_kg=WEIGHT_KG, seed=3)
SERVED_ANGLE_DEG = 15.0  # the protocols' angle of pull: nothing moves at the start


def wait_until(cond: Callable[[], object], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Poll `cond` until it holds or the timeout passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    ev = threading.Event()
    while time.monotonic() < deadline:
        if cond():
            return True
        ev.wait(poll_s)
    return bool(cond())


def short_protocol(**over: Any) -> Protocol:
    """A one-minute lumbar intermittent protocol (the shortest a protocol may be).

    Linear ramps, slow enough (about 35 N/s) that the rate-of-rise check keeps a wide margin:
    on a real table the monitor divides force changes by the nominal period, so scheduling
    jitter of a loaded test machine inflates the measured rate; a logarithmic ramp's first
    seconds run at the controller's 120 N/s limit, only 1.5x below the monitor's."""
    base: dict[str, Any] = dict(name="modbus-test", region="lumbar", mode="intermittent",
                                max_force={"value": 45, "unit": "%bw"},
                                rest_force={"value": 50, "unit": "%max"},
                                hold_s=20, rest_s=10, ramp_s=10, ramp_shape="linear",
                                duration_min=1, angle_deg=15)
    base.update(over)
    return parse_protocol(base)


# ---- proxy ---------------------------------------------------------------------------------
class LinkProxy:
    """A TCP proxy on loopback between the driver and a served table.

    `mode` (settable at any time): "pass"; "delay" (each reply chunk waits `delay_s`);
    "corrupt-function" (replies carry an unknown function code); "corrupt-protocol" (a
    non-zero MBAP protocol id); "corrupt-count" (a wrong byte count); "drop" (replies vanish).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode = "pass"
        self.delay_s = 0.2
        self.replies = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _mangle(self, data: bytes) -> bytes | None:
        m = self.mode
        if m == "drop":
            return None
        if m == "corrupt-function" and len(data) > 7:
            return data[:7] + b"\x55" + data[8:]
        if m == "corrupt-protocol" and len(data) > 4:
            return data[:2] + b"\x12\x34" + data[4:]
        if m == "corrupt-count" and len(data) > 8:
            return data[:8] + bytes([(data[8] + 6) & 0xFF]) + data[9:]
        return data

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    replies: bool) -> None:
        try:
            while data := await reader.read(4096):
                if replies:
                    self.replies += 1
                    if self.mode == "delay":
                        await asyncio.sleep(self.delay_s)
                    out = self._mangle(data)
                    if out is None:
                        continue
                    data = out
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            return
        up = asyncio.ensure_future(self._pump(c_reader, s_writer, False))
        down = asyncio.ensure_future(self._pump(s_reader, c_writer, True))
        self._tasks.update((up, down))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            for t in (up, down):
                t.cancel()
            s_writer.close()
            c_writer.close()
            self._tasks.difference_update((up, down))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> int:
        """Start the proxy; returns its port."""
        def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(self._main())

        self._thread = threading.Thread(target=run, name="link-proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(5.0), "proxy did not start"
        return self.port

    def stop(self) -> None:
        """Stop the proxy and drop its connections."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            def close() -> None:
                server.close()
                for t in list(self._tasks):
                    t.cancel()
                for t in asyncio.all_tasks(loop):
                    t.cancel()

            loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> LinkProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- child process -------------------------------------------------------------------------
class ServeProcess:
    """`spinedecomp device serve --port 0` (or another table command) in a child process."""

    def __init__(self, *args: str, command: list[str] | None = None) -> None:
        cmd = command or [sys.executable, "-c", "from spinedecomp.cli.app import main; main()",
                          "device", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "COLUMNS": "200"})
        self.port = self._wait_port(120.0)

    @classmethod
    def from_command(cls, command: list[str]) -> ServeProcess:
        """Any command that prints 'serving modbus://HOST:PORT' once it listens."""
        return cls(command=command)

    def _wait_port(self, timeout_s: float) -> int:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.proc.stdout.readline()
                if line.startswith("serving modbus://"):
                    return int(line.strip().rsplit(":", 1)[1])
                if not line:
                    break
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        self.kill()
        raise RuntimeError(f"served simulator did not start: {err}")

    def kill(self) -> None:
        """SIGKILL: the table dies without a word."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10.0)

    def terminate(self) -> int:
        """SIGTERM: a clean stop; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10.0)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


# ---- sessions ------------------------------------------------------------------------------
class StallClock(RealClock):
    """A RealClock that also notes the periods the process itself was late for: on a shared
    test machine the scheduler can stall a process for hundreds of milliseconds, and a test
    must tell that apart from what it injected."""

    def __init__(self, dt: float) -> None:
        super().__init__(dt)
        self.stalls: list[tuple[float, float]] = []  # (session time, seconds late)
        self._start = time.monotonic()
        self._n = 0

    def wait_next(self) -> float:
        """Note how late this period ended, then wait as RealClock does."""
        self._n += 1
        late = time.monotonic() - (self._start + self._n * self.dt)
        if late > STALL_S:
            self.stalls.append((self._n * self.dt, late))
        return super().wait_next()

    def rebase(self) -> None:
        """Forget stalls so far and measure lateness from now on."""
        self.stalls.clear()
        self._start = time.monotonic() - self._n * self.dt


STALL_S = 0.1


@dataclass
class ModbusRun:
    """A session run over Modbus and what the link went through."""

    engine: SessionEngine
    result: SessionResult
    table: ModbusTable
    clock: StallClock
    fault_wall_t: float | None

    def stalled_before(self, t: float) -> bool:
        """True if the test process itself stalled before session time `t`."""
        return any(st <= t + 0.05 for st, _ in self.clock.stalls)


def resolved_protocol(p: Protocol | None = None) -> ResolvedProtocol:
    """The short protocol for the test patient."""
    return resolve(p or short_protocol(), WEIGHT_KG)


def run_session(port: int, *, policy: LinkPolicy | None = None, fault_at_s: float | None = None,
                fault: Callable[[], None] | None = None, motor_off_delay_s: float = 5.0,
                protocol: Protocol | None = None) -> ModbusRun:
    """Connect to a served table on `port` and run a real-time session at RATE_HZ; call
    `fault()` once when session time reaches `fault_at_s`."""
    res = resolved_protocol(protocol)
    table = ModbusTable.connect("127.0.0.1", port, timeout_s=2.0, retries=2, policy=policy)
    clock = StallClock(1.0 / RATE_HZ)
    safety = SafetyConfig.for_region(res.region, motor_off_delay_s=motor_off_delay_s)
    eng = SessionEngine(table, res, rate_hz=RATE_HZ, clock=clock, safety=safety)
    eng.setup(confirm_high_force=True)
    clock.rebase()  # set-up (the switch test) is not part of the session's timing
    fired: list[float] = []

    def progress(e: SessionEngine) -> None:
        if fault is not None and fault_at_s is not None and not fired and e.now >= fault_at_s:
            fired.append(time.monotonic())
            fault()

    result = eng.run(progress=progress)
    return ModbusRun(eng, result, table, clock, fired[0] if fired else None)


def run_once_more_if_stalled(attempt: Callable[[], ModbusRun], ok: Callable[[ModbusRun], bool],
                             until: Callable[[ModbusRun], float]) -> ModbusRun:
    """Run a session; if it went wrong (`ok` false) and the test process itself stalled
    before the moment it went wrong (`until`), the machine is to blame: run it once more.
    A second failure stands."""
    run = attempt()
    if ok(run) or not run.stalled_before(until(run)):
        return run
    worst = max(late for _, late in run.clock.stalls)
    warnings.warn(f"the test process stalled {worst * 1000:.0f} ms (machine load); running the "
                  "session once more", stacklevel=2)
    return attempt()
