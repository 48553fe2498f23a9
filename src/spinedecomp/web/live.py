"""The live table: a control process per session and the fan-out of its data to viewers.

Why a process: the control loop (`SessionEngine` on a `RealClock` at 1 kHz) must never wait for
the web server. A thread would share the GIL with request handling, JSON encoding and
WebSocket writes; a separate process (spawned, so no state is inherited from the server) has
its own interpreter, and the server can only talk to it through two queues:

- commands in (`LiveCommand`): the child's command thread hands them to `engine.submit`, and
  the engine applies them at the start of its next control period;
- data out: decimated frames (`frame_hz`, default 50 per second), events, alarms, the end and
  the loop's timing statistics. The child never blocks on this queue (its feeder thread
  does the writing), so a slow reader cannot slow the loop.

In the server, one reader thread drains the out-queue and fans each message out to every
viewer's bounded asyncio queue; a viewer that falls behind loses its oldest frames, never
delays anyone else. All viewers get the same messages in the same order.

Only one clinician holds control at a time (`LiveManager.controller`): the one who started
the session, until they hand over or another clinician explicitly takes control (logged).

If the server process dies, the child sees its parent gone and orders an operator stop: a
table nobody can watch or stop from the dashboard is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.core.units import n_to_lb
from spinedecomp.session.telemetry import Recorder

log = logging.getLogger(__name__)

# Frame layout sent to viewers (one JSON list per frame, to keep messages small).
FRAME_FIELDS: tuple[str, ...] = ("wall", "t", "target_n", "force_n", "force_a_n", "force_b_n",
                                 "angle_deg", "angle_target_deg", "phase", "cycle", "state",
                                 "time_left_s")
PHASE_NAMES = ("slack", "ramp up", "hold", "ramp down", "rest", "paused", "resuming", "ending",
               "done", "release")
STATE_NAMES = ("idle", "ready", "running", "paused", "releasing", "completed", "aborted")
HISTORY_FRAMES = 50 * 60  # what a viewer who joins late gets: the last minute
VIEWER_QUEUE = 500


class StartRequest(BaseModel):
    """What the clinician chose on the set-up panel."""

    model_config = ConfigDict(extra="forbid")

    protocol: str = Field(min_length=1, max_length=64)
    patient_id: int | None = None
    plan_id: int | None = None
    body_weight_kg: float = Field(default=80.0, gt=20.0, le=300.0)
    angle_deg: float | None = Field(default=None, ge=0.0, le=45.0)
    switch_tested: bool = Field(description="The patient holds the stop switch and it was "
                                "pressed and released once.")
    harness_checked: bool = Field(description="Harness fitted and snug.")
    confirm_high_force: bool = True


CommandKind = Literal["edit", "pause", "resume", "stop", "operator-stop", "acknowledge",
                      "confirm"]


class LiveCommand(BaseModel):
    """A clinician's command to the running session (API body)."""

    model_config = ConfigDict(extra="forbid")

    kind: CommandKind
    field: Literal["max_force_n", "rest_force_n", "hold_s", "rest_s", "angle_deg",
                   "clinician_cap_n"] | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    unit: Literal["N", "lb", "s", "deg"] | None = None
    reason: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class ChildConfig:
    """Everything the control process needs (picklable)."""

    request: StartRequest
    user: str
    rate_hz: float
    frame_hz: float
    database_url: str | None
    record: bool
    data_dir: str | None


# ---------------------------------------------------------------------------------------------
# The control process
# ---------------------------------------------------------------------------------------------
class _FramePublisher:
    """Engine sink in the control process: every k-th period becomes a frame; also records the
    wall time of every period, for the jitter statistics."""

    def __init__(self, out: Any, rate_hz: float, frame_hz: float, duration_s: float) -> None:
        self.out = out
        self.k = max(1, round(rate_hz / frame_hz))
        self.n = 0
        self.duration_s = duration_s
        self.tau = 0.0
        self.ticks: list[float] = []
        self._buf = np.empty(200_000)
        self._i = 0

    def __call__(self, block: npt.NDArray[np.float64]) -> None:
        now = time.perf_counter()
        if self._i >= self._buf.shape[0]:
            self.ticks.extend(self._buf.tolist())
            self._i = 0
        self._buf[self._i] = now
        self._i += 1
        self.n += block.shape[0]
        if self.n < self.k:
            return
        self.n = 0
        r = block[-1]
        # Columns per spinedecomp.session.telemetry.COLUMNS.
        fa, fb = float(r[2]), float(r[3])
        force = 0.5 * (fa + fb)
        self.out.put(("frame", [time.time(), float(r[0]), float(r[1]), force, fa, fb, float(r[7]),
                                float(r[8]), int(r[10]), int(r[13]), int(r[11]),
                                max(0.0, self.duration_s - self.tau)]))

    def periods_ms(self) -> list[float]:
        """Intervals between consecutive periods, ms."""
        t = np.array(self.ticks + self._buf[: self._i].tolist())
        return (np.diff(t) * 1000.0).tolist() if t.shape[0] > 1 else []


def _jitter(periods_ms: list[float], dt_ms: float) -> dict[str, float]:
    if not periods_ms:
        return {}
    d = np.abs(np.array(periods_ms) - dt_ms)
    return {"periods": float(len(periods_ms)), "p50_ms": float(np.percentile(d, 50)),
            "p99_ms": float(np.percentile(d, 99)), "p999_ms": float(np.percentile(d, 99.9)),
            "max_ms": float(d.max())}


def control_process_main(cfg: ChildConfig, commands: Any, out: Any) -> None:
    """Entry point of the control process: set up, run, release, report."""
    import os

    from spinedecomp.control.library import get_protocol
    from spinedecomp.core.errors import SpinedecompError
    from spinedecomp.session.model import Alarm, Command, Event
    from spinedecomp.session.run import SessionSpec, build_engine
    from spinedecomp.session.summary import summarize

    logging.basicConfig(level=logging.INFO, format="table: %(message)s")
    # Ask for a real-time slot when the OS allows it; without privileges this fails and the
    # loop runs at normal priority (the bench measures what that gives).
    with contextlib.suppress(AttributeError, PermissionError, OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    req = cfg.request
    recorder = None
    try:
        proto = get_protocol(req.protocol)
        if req.angle_deg is not None:
            proto = type(proto).model_validate({**proto.model_dump(), "angle_deg": req.angle_deg})
        spec = SessionSpec(protocol=proto, body_weight_kg=req.body_weight_kg, rate_hz=cfg.rate_hz,
                           speed=1.0, confirm_high_force=req.confirm_high_force)

        def on_event(ev: Event) -> None:
            out.put(("event", {"t": ev.t, "kind": ev.kind, "reason": ev.reason, "field": ev.field,
                               "old": ev.old, "new": ev.new}))

        def on_alarm(a: Alarm) -> None:
            out.put(("alarm", {"t": a.t, "kind": a.kind, "code": a.code,
                               "priority": a.priority.value, "condition": a.condition,
                               "action": a.action, "value": a.value}))

        engine = build_engine(spec, on_event=on_event, on_alarm=on_alarm)
        pub = _FramePublisher(out, cfg.rate_hz, cfg.frame_hz, engine.resolved.duration_s)
        # The engine keeps every sample in memory; at one row per block (wall clock) that is
        # millions of small arrays in 30 minutes, so keep them compacted.
        compact = _CompactingRecorder()
        engine.sinks = [compact if s is engine.recorder else s for s in engine.sinks] + [pub]
        engine.recorder = compact
        if cfg.record:
            from spinedecomp.store.api import Store
            from spinedecomp.store.recorder import SessionRecorder
            from spinedecomp.store.settings import StoreSettings

            settings = StoreSettings() if cfg.data_dir is None else StoreSettings(data_dir=cfg.data_dir)
            store = Store.open(settings, url=cfg.database_url, recover=False)
            recorder = SessionRecorder.begin(store, actor=cfg.user, spec=spec,
                                             resolved=engine.resolved, patient_id=req.patient_id,
                                             plan_id=req.plan_id, reason="live session from the "
                                             "dashboard")
            recorder.attach(engine)
            out.put(("session", {"id": recorder.session_id}))
        engine.setup(confirm_high_force=req.confirm_high_force)
        out.put(("resolved", {"max_force_n": engine.resolved.max_force_n,
                              "rest_force_n": engine.resolved.rest_force_n,
                              "clamp_n": engine.clamp_n, "duration_s": engine.resolved.duration_s,
                              "hold_s": proto.hold_s, "rest_s": proto.rest_s,
                              "angle_deg": proto.angle_deg}))
    except (SpinedecompError, ValueError) as exc:
        log.error("session not started: %s", exc)
        if recorder is not None:
            recorder.abandon(str(exc))
        out.put(("error", {"message": str(exc)}))
        out.put(("end", {"state": "aborted", "reason": str(exc)}))
        return

    stop_reader = threading.Event()

    def read_commands() -> None:
        parent = mp.parent_process()
        while not stop_reader.is_set():
            try:
                kind, fld, value, reason, user = commands.get(timeout=0.2)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    log.error("web server gone: operator stop")
                    engine.submit(Command(kind="operator-stop", reason="dashboard server ended",
                                          user="system"))
                    return
                continue
            except (EOFError, OSError):
                return
            engine.submit(Command(kind=kind, field=fld, value=value, reason=reason, user=user))

    reader = threading.Thread(target=read_commands, name="commands", daemon=True)
    reader.start()

    def progress(e: Any) -> None:
        pub.tau = float(e.trajectory.tau)

    try:
        engine.run(progress=progress)
    finally:
        stop_reader.set()
        result = engine.result()
        summary = summarize(result, engine.resolved)
        if recorder is not None:
            report = recorder.finish(result, summary)
            recorder.store.close()
            if not report.stored:  # the clinician must not take the record for granted
                out.put(("error", {"message": f"session {report.session_id} NOT stored: "
                                              f"{report.problem}"}))
        out.put(("stats", _jitter(pub.periods_ms(), 1000.0 / cfg.rate_hz)))
        out.put(("end", {"state": result.end_state.value, "reason": result.abort_reason}))


class _CompactingRecorder(Recorder):
    """Like the engine's `Recorder`, but joins its blocks every few thousand rows."""

    def __init__(self) -> None:
        super().__init__()
        self._since = 0

    def __call__(self, block: npt.NDArray[np.float64]) -> None:
        super().__call__(block)
        self._since += 1
        if self._since >= 5000:
            self._since = 0
            self.array()


# ---------------------------------------------------------------------------------------------
# The server side
# ---------------------------------------------------------------------------------------------
class LiveError(Exception):
    """A live-session request that cannot be done now (maps to HTTP 409)."""


@dataclass(eq=False)
class Viewer:
    """One WebSocket viewer: its own bounded queue on the server's event loop."""

    user: str
    loop: asyncio.AbstractEventLoop
    q: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE))
    dropped: int = 0

    def offer(self, text: str) -> None:
        """Called on the event loop: enqueue, dropping the oldest message if full."""
        if self.q.full():
            self.q.get_nowait()
            self.dropped += 1
        self.q.put_nowait(text)


@dataclass
class LiveStatus:
    """What the live page shows before any frame arrives."""

    active: bool
    state: str
    controller: str | None
    session_id: int | None
    protocol: str | None
    patient_id: int | None
    events: list[dict[str, Any]]
    alarms: list[dict[str, Any]]
    resolved: dict[str, Any] | None
    error: str | None
    stats: dict[str, float] | None


class LiveManager:
    """The one table of this server: starts its control process, relays commands, fans out."""

    def __init__(self, *, rate_hz: float, frame_hz: float, database_url: str | None,
                 record: bool, data_dir: str | None = None) -> None:
        self.rate_hz = rate_hz
        self.frame_hz = frame_hz
        self.database_url = database_url
        self.record = record
        self.data_dir = data_dir
        self._ctx = mp.get_context("spawn")
        # Re-entrant: a message is stored and fanned out under one hold of the lock, so a viewer
        # joining (snapshot + registration, also under it) sees each message exactly once.
        self._lock = threading.RLock()
        self._proc: BaseProcess | None = None
        self._cmd_q: Any = None
        self._out_q: Any = None
        self._reader: threading.Thread | None = None
        self._viewers: set[Viewer] = set()
        self._history: deque[list[float]] = deque(maxlen=HISTORY_FRAMES)
        self.controller: str | None = None
        self.state = "idle"
        self.session_id: int | None = None
        self.protocol: str | None = None
        self.patient_id: int | None = None
        self.events: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []
        self.resolved: dict[str, Any] | None = None
        self.error: str | None = None
        self.stats: dict[str, float] | None = None
        self.last_stats: dict[str, float] | None = None
        self.commands_sent = 0

    # ---- status ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A control process is running."""
        return self._proc is not None and self._proc.is_alive()

    def status(self) -> LiveStatus:
        """A snapshot for pages and late-joining viewers."""
        with self._lock:
            return LiveStatus(self.active, self.state, self.controller, self.session_id,
                              self.protocol, self.patient_id, list(self.events[-50:]),
                              list(self.alarms), self.resolved, self.error, self.stats)

    # ---- control -------------------------------------------------------------------------
    def start(self, req: StartRequest, user: str) -> None:
        """Start a session; the starting clinician holds control."""
        if not (req.switch_tested and req.harness_checked):
            raise LiveError("set-up not complete: test the patient switch and check the harness")
        with self._lock:
            if self.active:
                raise LiveError(f"a session is already running on this table (control: "
                                f"{self.controller})")
            self._cmd_q = self._ctx.Queue()
            self._out_q = self._ctx.Queue()
            cfg = ChildConfig(req, user, self.rate_hz, self.frame_hz, self.database_url,
                              self.record, self.data_dir)
            self.controller = user
            self.state = "starting"
            self.session_id = None
            self.protocol = req.protocol
            self.patient_id = req.patient_id
            self.events, self.alarms, self.resolved, self.error, self.stats = [], [], None, None, None
            self._history.clear()
            self._proc = self._ctx.Process(target=control_process_main,
                                           args=(cfg, self._cmd_q, self._out_q),
                                           name="spinedecomp-table", daemon=False)
            self._proc.start()
            self._reader = threading.Thread(target=self._read, args=(self._out_q, self._proc),
                                            name="live-reader", daemon=True)
            self._reader.start()
        log.info("live session started by %s: %s (control process pid %s)", user, req.protocol,
                 self._proc.pid)
        self._broadcast_status()

    def command(self, cmd: LiveCommand, user: str) -> None:
        """Relay a command from the clinician holding control (STOP from any clinician)."""
        value = cmd.value
        if cmd.kind == "edit":
            if cmd.field is None or value is None:
                raise ValueError("an edit needs a field and a value")
            if cmd.unit == "lb":
                if not cmd.field.endswith("_n"):
                    raise ValueError(f"{cmd.field} is not a force; lb does not apply")
                value = value / n_to_lb(1.0)
        with self._lock:
            if not self.active:
                raise LiveError("no session is running on this table")
            # Anyone allowed on the live page may stop the table; everything else needs control.
            if cmd.kind not in ("operator-stop", "stop") and self.controller != user:
                raise LiveError(f"{self.controller} holds control of this table; take control "
                                "first")
            self._cmd_q.put((cmd.kind, cmd.field, value, cmd.reason, user))
            self.commands_sent += 1
        log.info("command from %s: %s %s=%s (%s)", user, cmd.kind, cmd.field, value, cmd.reason)

    def take_control(self, user: str) -> str | None:
        """`user` takes control; returns who had it."""
        with self._lock:
            if not self.active:
                raise LiveError("no session is running on this table")
            before, self.controller = self.controller, user
        log.warning("control of the table passed from %s to %s", before, user)
        self._broadcast_status()
        return before

    def wait_finished(self, timeout: float) -> bool:
        """Wait for the control process to end (tests, shutdown)."""
        proc = self._proc
        if proc is None:
            return True
        proc.join(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return not proc.is_alive()

    def shutdown(self, timeout: float = 90.0) -> None:
        """Server shutdown: stop a running session with a controlled release and wait."""
        if self.active:
            log.warning("server stopping: operator stop of the running session")
            self._cmd_q.put(("operator-stop", None, None, "dashboard server stopping", "system"))
            if not self.wait_finished(timeout) and self._proc is not None:
                self._proc.terminate()

    # ---- viewers ---------------------------------------------------------------------------
    def add_viewer(self, viewer: Viewer) -> tuple[list[list[float]], LiveStatus]:
        """Register a viewer; returns the recent frames and the state it missed, taken at the
        same instant as the registration (nothing missed, nothing twice)."""
        with self._lock:
            self._viewers.add(viewer)
            return list(self._history), self.status()

    def remove_viewer(self, viewer: Viewer) -> None:
        """Forget a viewer."""
        with self._lock:
            self._viewers.discard(viewer)

    @property
    def viewer_count(self) -> int:
        """How many viewers are connected."""
        return len(self._viewers)

    def _fan_out(self, text: str) -> None:
        with self._lock:  # call_soon_threadsafe only queues a callback: never blocks
            for v in list(self._viewers):
                try:
                    v.loop.call_soon_threadsafe(v.offer, text)
                except RuntimeError:  # the viewer's loop is closed
                    self._viewers.discard(v)

    def _broadcast_status(self) -> None:
        with self._lock:
            st = self.status()
            self._fan_out(json.dumps({"type": "status", "state": st.state, "controller": st.controller,
                                      "session_id": st.session_id, "active": st.active}))

    def _read(self, out_q: Any, proc: BaseProcess) -> None:
        """Reader thread: drain the control process's queue, keep state, fan out."""
        while True:
            try:
                kind, payload = out_q.get(timeout=0.5)
            except queue.Empty:
                if not proc.is_alive():
                    with self._lock:
                        if self.state not in ("completed", "aborted"):
                            self.state = "aborted"
                            self.error = self.error or "control process ended unexpectedly"
                    self._broadcast_status()
                    return
                continue
            except (EOFError, OSError):
                return
            if kind == "frame":
                st = STATE_NAMES[payload[10]] if 0 <= payload[10] < len(STATE_NAMES) else "?"
                text = (json.dumps({"type": "frame", "f": payload}, allow_nan=False)
                        if all(math.isfinite(x) for x in payload) else
                        json.dumps({"type": "frame", "f": [x if math.isfinite(x) else None
                                                           for x in payload]}))
                with self._lock:
                    self._history.append(payload)
                    self.state = st
                    self._fan_out(text)
                continue
            with self._lock:
                if kind == "event":
                    self.events.append(payload)
                elif kind == "alarm":
                    payload = {**payload, "acknowledged": False}
                    self.alarms.append(payload)
                elif kind == "session":
                    self.session_id = int(payload["id"])
                elif kind == "resolved":
                    self.resolved = payload
                elif kind == "error":
                    self.error = str(payload["message"])
                elif kind == "stats":
                    self.stats = payload
                    self.last_stats = payload
                elif kind == "end":
                    self.state = str(payload["state"])
                if kind == "event" and payload.get("kind") == "acknowledge":
                    for a in self.alarms:
                        a["acknowledged"] = True
                self._fan_out(json.dumps({"type": kind, "data": payload}, default=str))
            if kind == "end":
                log.info("live session ended: %s %s", payload["state"], payload.get("reason") or "")
                self._broadcast_status()
