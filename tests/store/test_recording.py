"""Recording a running session: exact read-back, black-box windows, database outages,
storage full, recovery of a spool left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy.exc import OperationalError

from spinedecomp.control.protocol import resolve
from spinedecomp.session.commands import parse_edit
from spinedecomp.session.engine import SessionEngine, SessionResult
from spinedecomp.session.faults import parse_fault
from spinedecomp.session.model import Event
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.summary import summarize
from spinedecomp.store.api import Store
from spinedecomp.store.recorder import FinishReport, SessionRecorder
from spinedecomp.store.repositories import SessionStart
from spinedecomp.store.settings import StoreSettings
from spinedecomp.store.telemetry_codec import Batch
from spinedecomp.store.telemetry_writer import StoreBackend, TelemetryWriter
from tests.helpers import proto
from tests.pgserver import PgServer

F64 = npt.NDArray[np.float64]
Hook = Callable[[F64], None]


@dataclass
class Recorded:
    engine: SessionEngine
    result: SessionResult
    recorder: SessionRecorder
    report: FinishReport


class FlakyBackend(StoreBackend):
    """The store, unreachable while `down` is set (as SQLAlchemy reports a lost server)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, "test")
        self.down = False
        self.failures = 0

    def write(self, batch: Batch) -> None:
        if self.down:
            self.failures += 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        super().write(batch)


def record(store: Store, spec: SessionSpec, *, hook: Hook | None = None,
           backend: StoreBackend | None = None, before_finish: Callable[[], None] | None = None,
           patient_id: int | None = None) -> Recorded:
    """Run a session on the simulated table with the store recording it."""
    resolved = resolve(spec.protocol, spec.body_weight_kg)
    rec = SessionRecorder.begin(store, actor="dr.test", spec=spec, resolved=resolved,
                                patient_id=patient_id, backend=backend)
    sinks = [rec.sink] + ([hook] if hook else [])
    engine = build_engine(spec, sinks=sinks, on_event=rec.on_event, on_alarm=rec.on_alarm)
    rec.bind(engine)
    engine.setup(confirm_high_force=True)
    result = engine.run()
    if before_finish:
        before_finish()
    report = rec.finish(result, summarize(result, engine.resolved))
    return Recorded(engine, result, rec, report)


def expected_clinical(tel: F64, k: int = 10) -> F64:
    """Every k-th row from the first, plus the last row."""
    out = tel[::k]
    return out if (tel.shape[0] - 1) % k == 0 else np.vstack([out, tel[-1:]])


def same(a: F64, b: F64) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def spec_with_incidents() -> SessionSpec:
    return SessionSpec(protocol=proto(duration_min=2.0), body_weight_kg=80.0,
                       edits=[parse_edit("40:max_force_lb=70")],
                       faults=[parse_fault("90:loadcell-freeze:a")])


def test_a_recorded_session_reads_back_exactly(store: Store) -> None:
    r = record(store, spec_with_incidents())
    tel = r.result.telemetry
    sid = r.recorder.session_id
    assert r.report.stored and r.report.stats.rows_in == tel.shape[0]
    with store.unit("auditor") as uow:
        s = uow.sessions.get(sid)
        clinical = uow.telemetry.clinical(sid)
        windows = uow.sessions.windows(sid)
        full = {w.id: uow.telemetry.fullrate(sid, w.t_from, w.t_to) for w in windows}
        events = uow.sessions.events(sid)
        alarms = uow.sessions.alarms(sid)
        stats = {st.stream: st for st in uow.telemetry.stats(sid)}
        patient = uow.patients.get(s.patient_id)
        audit = uow.audit.entries(entity="session", entity_id=sid)
    # the session row: protocol before start, end state and summary at the end
    assert s.state == "aborted" and s.abort_reason == r.result.abort_reason
    assert s.summary is not None and s.summary["end_state"] == "aborted"
    assert s.protocol["protocol"]["name"] == "test" and s.spec["faults"] == ["90:loadcell-freeze:a"]
    assert s.samples == tel.shape[0] and s.last_t == pytest.approx(tel[-1, 0])
    assert s.started_at is not None and s.ended_at is not None and s.clinical_rate_hz == 100.0
    assert patient.is_demo  # no patient given: the anonymous demo patient
    assert [a.action for a in audit] == ["create", "update"] and audit[1].actor == "dr.test"
    # 100 Hz clinical record: exactly the engine's rows
    assert same(clinical, expected_clinical(tel))
    # black-box windows: full-rate rows 5 s before to 5 s after each edit and alarm
    triggers = {w.trigger for w in windows}
    assert {"edit", "fault", "alarm"} <= triggers
    for w in windows:
        assert w.t_from == pytest.approx(max(0.0, w.trigger_t - 5.0))
        assert w.t_to == pytest.approx(w.trigger_t + 5.0)
        m = (tel[:, 0] >= w.t_from) & (tel[:, 0] <= w.t_to)
        assert same(full[w.id], tel[m]), w
    edit = next(w for w in windows if w.trigger == "edit")
    assert edit.trigger_t == pytest.approx(40.0) and full[edit.id].shape[0] == 10001
    # events and alarms as the engine had them
    assert [(e.t, e.kind, e.reason) for e in events] == [(e.t, e.kind, e.reason) for e in r.result.events]
    assert [(a.t, a.kind, a.priority) for a in alarms] == [
        (a.t, a.kind, a.priority.value) for a in r.result.alarms]
    # compacted into ~10 s chunks (chunk_s=10 in the test settings)
    assert stats["clinical"].rows == clinical.shape[0]
    assert stats["clinical"].chunks == -(-clinical.shape[0] // 1000)
    assert stats["clinical"].bytes < clinical.nbytes / 2


def test_the_control_loop_side_never_waits_for_the_database(store: Store, settings: StoreSettings) -> None:
    class SlowBackend(StoreBackend):
        def write(self, batch: Batch) -> None:
            time.sleep(0.5)  # a database that takes half a second per commit
            super().write(batch)

    with store.unit("t") as uow:
        sid = uow.sessions.create(_start(uow.patients.demo().id)).id
    writer = TelemetryWriter(SlowBackend(store, "t"), sid, rate_hz=1000.0, settings=settings,
                             spool_path=settings.spool_dir / "x.spool")
    writer.start()
    block = np.zeros((1, 14))
    worst = 0.0
    for i in range(3000):
        block[0, 0] = (i + 1) / 1000.0
        t0 = time.perf_counter()
        writer.sink(block)
        worst = max(worst, time.perf_counter() - t0)
    stats = writer.close()
    assert worst < 0.005  # an append, whatever the database does
    with store.unit("t") as uow:
        assert uow.telemetry.clinical(sid).shape[0] == 300 + 1 and stats.rows_in == 3000


def _start(pid: int) -> SessionStart:
    return SessionStart(patient_id=pid, protocol_name="p", region="lumbar", mode="static",
                        body_weight_kg=80.0, rate_hz=1000.0, clinical_rate_hz=100.0, device="sim",
                        protocol={}, spec={}, host="h", pid=1)


def _slow_between(t_from: float, t_to: float, on_enter: Callable[[], None] | None = None,
                  on_leave: Callable[[], None] | None = None, sleep_s: float = 0.004) -> Hook:
    """A sink that (in the engine thread) calls on_enter at t_from and on_leave at t_to and
    slows simulated time in between, so the writer's flushes land inside the outage."""
    state = {"in": False, "done": False}

    def hook(block: F64) -> None:
        t = float(block[-1, 0])
        if not state["in"] and not state["done"] and t >= t_from:
            state["in"] = True
            if on_enter:
                on_enter()
        if state["in"] and t >= t_to:
            state["in"], state["done"] = False, True
            if on_leave:
                on_leave()
        if state["in"]:
            time.sleep(sleep_s)

    return hook


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> StoreSettings:
    """For tests of writer logic that does not depend on the engine."""
    return StoreSettings(database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
                         data_dir=tmp_path / "data", chunk_s=10.0)


def _check_complete(store: Store, r: Recorded, notes: int = 2) -> None:
    tel = r.result.telemetry
    sid = r.recorder.session_id
    with store.unit("t") as uow:
        s = uow.sessions.get(sid)
        assert same(uow.telemetry.clinical(sid), expected_clinical(tel))
        for w in uow.sessions.windows(sid):
            m = (tel[:, 0] >= w.t_from) & (tel[:, 0] <= w.t_to)
            assert same(uow.telemetry.fullrate(sid, w.t_from, w.t_to), tel[m])
        kinds = [e.kind for e in uow.sessions.events(sid)]
    assert s.state == r.result.end_state.value and s.summary is not None
    # the engine's events, plus the store's own notes about the outage
    assert [k for k in kinds if k != "storage"] == [e.kind for e in r.result.events]
    assert kinds.count("storage") == notes


def test_sqlite_outage_mid_session_is_spooled_and_caught_up(sqlite_settings: StoreSettings) -> None:
    quick = sqlite_settings.model_copy(update={"retry_s": 0.1, "flush_interval_s": 0.05})
    with Store.open(quick) as store:
        flaky = FlakyBackend(store)

        def down() -> None:
            flaky.down = True

        def up() -> None:
            flaky.down = False

        spec = SessionSpec(protocol=proto(duration_min=2.0), body_weight_kg=80.0,
                           edits=[parse_edit("50:max_force_lb=70")])
        r = record(store, spec, backend=flaky, hook=_slow_between(20.0, 80.0, down, up))
        st = r.report.stats
        assert r.result.end_state.value == "completed"  # the session did not notice
        assert flaky.failures >= 2 and st.outages == 1 and st.batches_spooled >= 2
        assert st.batches_replayed == st.batches_spooled and st.rows_lost == 0
        assert r.report.stored and not r.recorder.writer.spool.path.exists()
        _check_complete(store, r)


def test_postgresql_server_stopped_mid_session(pg_server: PgServer, pg_template: str,
                                               tmp_path: Path) -> None:
    from tests.store.conftest import new_pg_database

    name, url = new_pg_database(pg_server, pg_template)
    settings = StoreSettings(database_url=url, data_dir=tmp_path / "data", retry_s=0.1,
                             flush_interval_s=0.05, chunk_s=10.0)
    try:
        with Store.open(settings) as store:
            spec = SessionSpec(protocol=proto(duration_min=2.0), body_weight_kg=80.0)
            hook = _slow_between(20.0, 70.0, lambda: pg_server.stop("fast"), pg_server.start,
                                 sleep_s=0.004)
            r = record(store, spec, hook=hook)
            st = r.report.stats
            assert r.result.end_state.value == "completed"
            assert st.outages == 1 and st.batches_spooled >= 2 and st.rows_lost == 0
            assert st.batches_replayed == st.batches_spooled and r.report.stored
            _check_complete(store, r)
    finally:
        pg_server.drop_database(name)


def test_spool_full_releases_the_table_and_keeps_what_was_spooled(sqlite_settings: StoreSettings) -> None:
    small = sqlite_settings.model_copy(update={"spool_max_bytes": 40_000, "retry_s": 0.1,
                                        "flush_interval_s": 0.05})
    with Store.open(small) as store:
        flaky = FlakyBackend(store)
        flaky.down = True

        def db_back() -> None:
            flaky.down = False

        spec = SessionSpec(protocol=proto(duration_min=2.0), body_weight_kg=80.0)
        r = record(store, spec, backend=flaky, hook=_slow_between(0.0, 1e9, sleep_s=0.01),
                   before_finish=db_back)
        st = r.report.stats
        res = r.result
        # the store ordered a release: an operator stop by "store", with the reason
        stop: list[Event] = [e for e in res.events if e.kind == "command" and "by store" in e.reason]
        assert st.storage_full and len(stop) == 1 and "telemetry spool full" in stop[0].reason
        assert res.end_state.value == "aborted" and res.simulated_s < 100.0
        assert [a.kind for a in res.alarms][:1] == ["operator-stop"]
        sid = r.recorder.session_id
        with store.unit("t") as uow:
            s = uow.sessions.get(sid)
            clinical = uow.telemetry.clinical(sid)
            notes = [e.reason for e in uow.sessions.events(sid) if e.kind == "storage"]
        # everything that was spooled reached the database, and the end of the session with it;
        # rows past the spool's capacity are counted as lost, never stored wrong
        assert s.state == "aborted" and s.summary is not None and st.rows_lost > 0
        exp = expected_clinical(res.telemetry)
        index = {float(t): i for i, t in enumerate(exp[:, 0])}
        assert all(same(row[None, :], exp[index[float(row[0])]][None, :]) for row in clinical)
        assert same(clinical[:1], exp[:1]) and same(clinical[-1:], exp[-1:])
        assert 0 < clinical.shape[0] < exp.shape[0]
        assert any("spool full" in n for n in notes)


def test_a_spool_left_by_a_dead_process_is_written_on_the_next_start(settings: StoreSettings) -> None:
    quick = settings.model_copy(update={"retry_s": 0.05, "flush_interval_s": 0.05,
                                        "close_retry_s": 0.3})
    with Store.open(quick) as store:
        flaky = FlakyBackend(store)
        spec = SessionSpec(protocol=proto(duration_min=1.0), body_weight_kg=80.0)
        r = record(store, spec, backend=flaky, hook=_slow_between(10.0, 1e9, lambda: setattr(
            flaky, "down", True), sleep_s=0.002))
        assert not r.report.stored and r.report.spooled_bytes > 0  # database still down at the end
        with store.unit("t") as uow:
            assert uow.sessions.get(r.recorder.session_id).state not in ("completed", "aborted")
    with Store.open(quick) as store:  # next start: the database is back
        with store.unit("t") as uow:
            s = uow.sessions.get(r.recorder.session_id)
        assert s.state == "completed" and not r.recorder.writer.spool.path.exists()
        _check_complete(store, r, notes=1)  # "database unavailable"; recovery wrote the rest


def test_recorder_engine_thread_and_writer_thread_are_separate(store: Store) -> None:
    seen: set[str] = set()

    class Spy(StoreBackend):
        def write(self, batch: Batch) -> None:
            seen.add(threading.current_thread().name)
            super().write(batch)

    r = record(store, SessionSpec(protocol=proto(duration_min=1.0), body_weight_kg=70.0),
               backend=Spy(store, "t"))
    assert seen == {f"telemetry-writer-{r.recorder.session_id}"}
