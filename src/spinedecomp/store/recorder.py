"""Ties a running `SessionEngine` to the store.

    rec = SessionRecorder.begin(store, actor="cli", patient_id=3, spec=spec, resolved=resolved)
    engine = build_engine(spec, sinks=[rec.sink], on_event=rec.on_event, on_alarm=rec.on_alarm)
    rec.bind(engine)
    engine.setup(...); engine.run()
    rec.finish(engine.result(), summary)

`begin` creates the session row (protocol and run settings as JSON) before anything moves,
under the anonymous demo patient when no patient is given, and starts the telemetry writer,
which holds the session's lock file (crash detection) and heartbeats every flush. The engine
callbacks only enqueue. `finish` hands the end state and summary to the writer as its last
batch, so they reach the database after every sample, or the spool if the database is down.

Storage full: when the writer cannot keep the session's record any more (spool nearly full
during an outage, a storage fault such as a database file that cannot be written or was
deleted, or the writer itself failed) the recorder submits an operator stop to the engine,
reason "telemetry spool full ..." or what failed, by user "store". The engine's safety
monitor then latches its operator-stop alarm and releases the table as for any stop: a clear
alarm, the standard release path, and no change to the engine or the safety code.

`finish` says whether the record is durable (`FinishReport.stored`) and, when it is not,
why (`FinishReport.problem`): callers print "stored" only on the former.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from spinedecomp.control.protocol import ResolvedProtocol
from spinedecomp.session.engine import SessionEngine, SessionResult
from spinedecomp.session.model import Alarm, Command, Event
from spinedecomp.session.run import SessionSpec
from spinedecomp.store.api import DatabaseReplaced, Store
from spinedecomp.store.models import utcnow
from spinedecomp.store.recovery import lock_path, spool_path, this_host
from spinedecomp.store.repositories import SessionRecord, SessionStart
from spinedecomp.store.telemetry_codec import AlarmAck, Finalization
from spinedecomp.store.telemetry_writer import (
    SessionLockError,
    StoreBackend,
    TelemetryWriter,
    WriterBackend,
    WriterStats,
)

log = logging.getLogger(__name__)

STORE_USER = "store"
SWITCH_INTERVAL_S = 0.0005


def spec_document(spec: SessionSpec) -> dict[str, Any]:
    """The run settings of a session as JSON (the protocol is stored on its own)."""
    return {
        "rate_hz": spec.rate_hz, "speed": spec.speed, "device": spec.device, "seed": spec.seed,
        "noise": spec.noise, "split_table": spec.split_table,
        "confirm_high_force": spec.confirm_high_force,
        "edits": [{"t": t, "kind": c.kind, "field": c.field, "value": c.value, "reason": c.reason,
                   "user": c.user} for t, c in spec.edits],
        "faults": [f.label() for f in spec.faults],
    }


@dataclass(frozen=True)
class FinishReport:
    """Where a finished session's record stands."""

    session_id: int
    stored: bool  # everything is in the database, committed (durable)
    spooled_bytes: int  # waiting in the spool (written on the next start)
    stats: WriterStats
    problem: str | None = None  # why the record is not (all) stored, for the user


class SessionRecorder:
    """Records one session (see module docstring)."""

    def __init__(self, store: Store, session: SessionRecord, writer: TelemetryWriter,
                 actor: str) -> None:
        self.store = store
        self.session = session
        self.writer = writer
        self.actor = actor
        self._engine: SessionEngine | None = None
        self._finished: FinishReport | None = None
        self._switch_interval: float | None = None

    @property
    def session_id(self) -> int:
        """The stored session's id."""
        return self.session.id

    @classmethod
    def begin(cls, store: Store, *, actor: str, spec: SessionSpec, resolved: ResolvedProtocol,
              patient_id: int | None = None, plan_id: int | None = None,
              reason: str | None = None, backend: WriterBackend | None = None) -> SessionRecorder:
        """Create the session row and start the writer. Raises if the database is unavailable:
        a session is not started without its record. `backend` is where the writer's batches
        go (default: this store)."""
        settings = store.settings
        with store.unit(actor) as uow:
            pid = patient_id if patient_id is not None else uow.patients.demo().id
            k = max(1, round(spec.rate_hz / settings.clinical_rate_hz))
            rec = uow.sessions.create(SessionStart(
                patient_id=pid, plan_id=plan_id, protocol_name=resolved.protocol.name,
                region=resolved.region.value, mode=resolved.protocol.mode.value,
                body_weight_kg=resolved.body_weight_kg, rate_hz=spec.rate_hz,
                clinical_rate_hz=spec.rate_hz / k, device=spec.device,
                protocol=resolved.model_dump(mode="json"), spec=spec_document(spec),
                host=this_host(), pid=os.getpid()), reason=reason)
        holder: list[SessionRecorder] = []
        writer = TelemetryWriter(backend or StoreBackend(store, actor), rec.id, rate_hz=spec.rate_hz,
                                 settings=settings, spool_path=spool_path(settings, store.key, rec),
                                 lock_path=lock_path(settings, store.key, rec.id),
                                 on_storage_full=lambda why: holder[0].storage_full(why))
        recorder = cls(store, rec, writer, actor)
        holder.append(recorder)
        try:
            writer.start()
        except SessionLockError as exc:
            # Nothing has moved: end the row the user would otherwise find "idle" for ever.
            try:
                with store.unit(actor) as uow:
                    uow.sessions.finalize(rec.id, Finalization(
                        end_state="aborted", abort_reason=f"not started: {exc}", summary=None,
                        ended_at=utcnow(), actor=actor), reason="session not started")
            except Exception:  # the lock is what the user must hear about, not this
                log.exception("session %d: could not mark it aborted", rec.id)
            raise
        log.info("session %d recording to %s (clinical record %.0f Hz, black box %.0f s / %.0f s)",
                 rec.id, store.display_url, writer.clinical_rate_hz, settings.blackbox_pre_s,
                 settings.blackbox_post_s)
        return recorder

    def bind(self, engine: SessionEngine) -> None:
        """The engine whose state is heartbeated and which a storage-full stop goes to (use
        when the engine was built with this recorder's sink and callbacks)."""
        self._engine = engine
        if not engine.clock.simulated and self._switch_interval is None:
            # The writer thread is Python too: ask the interpreter to hand over the GIL within
            # 0.5 ms (default 5 ms) so a control loop waking from its sleep is not held up by a
            # writer batch. Restored when the session ends.
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))

    def attach(self, engine: SessionEngine) -> None:
        """Connect to an engine built without the recorder: add the sink, chain the event and
        alarm callbacks, and `bind`. Do it before `setup`, so no event is missed."""
        engine.sinks.append(self.sink)
        prev_event, prev_alarm = engine.on_event, engine.on_alarm

        def on_event(ev: Event) -> None:
            self.on_event(ev)
            if prev_event is not None:
                prev_event(ev)

        def on_alarm(alarm: Alarm) -> None:
            self.on_alarm(alarm)
            if prev_alarm is not None:
                prev_alarm(alarm)

        engine.on_event = on_event
        engine.on_alarm = on_alarm
        self.bind(engine)

    # ---- engine callbacks (control-loop thread: enqueue only) -------------------------
    def sink(self, block: npt.NDArray[np.float64]) -> None:
        """Telemetry block sink."""
        self.writer.sink(block)

    def on_event(self, event: Event) -> None:
        """Engine event callback. The session's `started_at` is the wall time of the session's
        t=0: with a wall clock that is when the clock started (the loop catches up from there),
        so ``started_at + t / speed`` is when a sample was taken."""
        engine = self._engine
        state = engine.state.value if engine is not None else None
        wall = utcnow()
        if engine is not None and state == "running" and not engine.clock.simulated:
            clock_wall = getattr(engine.clock, "wall", None)
            if callable(clock_wall):
                wall -= timedelta(seconds=float(clock_wall()) - event.t / getattr(engine.clock, "speed", 1.0))
        self.writer.event(event, state, wall)

    def on_alarm(self, alarm: Alarm) -> None:
        """Engine alarm callback."""
        self.writer.alarm(alarm)

    # ---- storage full -------------------------------------------------------------------
    def storage_full(self, reason: str) -> None:
        """Order a release: the session cannot be recorded any more (writer thread)."""
        log.error("session %d: %s: operator stop ordered by the store", self.session_id, reason)
        if self._engine is not None:
            self._engine.submit(Command(kind="operator-stop", reason=reason, user=STORE_USER))

    # ---- end ---------------------------------------------------------------------------------
    def abandon(self, reason: str) -> FinishReport:
        """End the record of a session that never ran (set-up failed): aborted, with why."""
        if self._finished is not None:
            return self._finished
        return self._close(Finalization(end_state="aborted", abort_reason=reason, summary=None,
                                        ended_at=utcnow(), actor=self.actor))

    def finish(self, result: SessionResult, summary: BaseModel | None = None) -> FinishReport:
        """Write what is left, the end state and the summary; stop the writer."""
        if self._finished is not None:
            return self._finished
        final = Finalization(
            end_state=result.end_state.value if result.end_state.terminal else "aborted",
            abort_reason=result.abort_reason if result.end_state.terminal else (
                result.abort_reason or f"session ended in state {result.end_state.value}"),
            summary=None if summary is None else summary.model_dump(mode="json"),
            ended_at=utcnow(), actor=self.actor,
            acks=[AlarmAck(i + 1, a.acknowledged_by) for i, a in enumerate(result.alarms)
                  if a.acknowledged])
        return self._close(final)

    def _close(self, final: Finalization) -> FinishReport:
        stats = self.writer.close(final)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
        spooled = self.writer.spool.size
        problem = self._problem(stats, spooled)
        self._finished = FinishReport(self.session_id, stored=problem is None,
                                      spooled_bytes=spooled, stats=stats, problem=problem)
        if problem is not None:
            log.error("session %d: record not stored: %s", self.session_id, problem)
        return self._finished

    def _held(self) -> str:
        """What the database still holds of this session after a storage fault: read back,
        not assumed (a file emptied or corrupted holds nothing)."""
        try:
            with self.store.unit(self.actor) as uow:
                rec = uow.sessions.get(self.session_id)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return (f"{self.store.display_url} cannot be read either ({first}): what it held of "
                    "this session may be lost")
        return f"{self.store.display_url} holds its record up to t={rec.last_t or 0.0:.2f} s"

    def _problem(self, stats: WriterStats, spooled: int) -> str | None:
        """Why the record is not durable in the database, or None when it is."""
        where = self.store.display_url
        if stats.db_replaced:
            return (f"{stats.fault}; what this session wrote went to the old file and is not in "
                    f"{where}")
        if self.writer.alive:
            return "the telemetry writer did not finish: the end of the record may be missing"
        if stats.crashed is not None:
            why: str | None = f"the telemetry writer failed ({stats.crashed})"
        elif spooled:
            why = stats.fault or "the database was unavailable at the end"
        else:
            why = None
        if why is not None:
            if spooled:
                held = (self._held() if stats.fault is not None
                        else f"what was committed before is in {where}")
                return (f"{why}; {held}; the rest ({spooled} bytes) waits in "
                        f"{self.writer.spool.path} and is written on the next start once the "
                        "database can be written")
            return f"{why}: the record in {where} ends where it failed"
        try:
            # The last commit went to the file this store opened; make sure that file is still
            # the one at the path, or "stored" would point at a record nobody can find.
            self.store.check_file()
        except DatabaseReplaced as exc:
            return f"{exc}; the record is not in {where}"
        return None
