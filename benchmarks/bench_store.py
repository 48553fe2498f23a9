"""Store benchmarks: telemetry ingest on SQLite and PostgreSQL, and the control loop with and
without the telemetry writer.

1. Ingest, one session as fast as it can be fed: a real 30-minute lumbar session at 1 kHz
   (1.8 M samples, with an edit and a fault so there are black-box windows) replayed into the
   batching writer, in the default configuration (100 Hz clinical record + full-rate
   windows) and storing every sample at full rate (worst case). Rate = samples accepted by
   the writer / time until its last batch is committed (compaction timed apart).
2. Ingest, 100 tables at 1 kHz on PostgreSQL: 100 writers fed in real time (100 samples per
   writer every 100 ms) for a few seconds; sustained samples/s, the writers' worst flush lag
   (how stale the database is) and whether every sample arrived.
3. The control loop paced in real time (RealClock, 1 kHz, the simulated table's fused loop
   one period per cycle, as for a real table): period-to-period interval jitter and overruns
   without the store, with the writer on SQLite and on PostgreSQL.

PostgreSQL is a throw-away server started here (Debian's postgresql, default durability
settings: fsync on, synchronous_commit on); skipped with a note if the binaries are missing.

Run: `.venv/bin/python -m benchmarks.bench_store` (or as part of `make bench`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spinedecomp.control.library import get_protocol
from spinedecomp.control.protocol import resolve
from spinedecomp.session.commands import parse_edit
from spinedecomp.session.engine import SessionResult
from spinedecomp.session.faults import parse_fault
from spinedecomp.session.model import Alarm, Event
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.store.api import Store
from spinedecomp.store.recorder import SessionRecorder
from spinedecomp.store.repositories import SessionStart
from spinedecomp.store.settings import StoreSettings
from spinedecomp.store.telemetry_codec import Batch
from spinedecomp.store.telemetry_writer import StoreBackend, TelemetryWriter, WriterStats

F64 = npt.NDArray[np.float64]
BLOCK = 100  # samples per sink call when replaying: 100 ms at 1 kHz


@dataclass
class Ingest:
    """One ingest measurement."""

    engine: str
    mode: str
    writers: int
    samples: int
    seconds: float
    stored_rows: int
    db_bytes: int
    flush_lag_max_s: float
    write_max_ms: float
    compact_s: float
    complete: bool

    @property
    def per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoopTiming:
    """The paced control loop's timing in one configuration."""

    label: str
    periods: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    overruns: int
    sink_p99_us: float


class TimedBackend(StoreBackend):
    """The store backend with compaction timed (or left out of the ingest measurement)."""

    def __init__(self, store: Store, actor: str, defer_compaction: bool = False) -> None:
        super().__init__(store, actor)
        self.compact_s = 0.0
        self.last_write_done = 0.0
        self.defer_compaction = defer_compaction

    def write(self, batch: Batch) -> None:
        super().write(batch)
        self.last_write_done = time.perf_counter()

    def compact(self, session_id: int) -> None:
        if self.defer_compaction:
            return
        t0 = time.perf_counter()
        super().compact(session_id)
        self.compact_s = time.perf_counter() - t0


def reference_session() -> SessionResult:
    """A 30-minute lumbar session at 1 kHz with an edit and a sensor fault (black boxes)."""
    spec = SessionSpec(protocol=get_protocol("lumbar-intermittent"), body_weight_kg=80.0,
                       edits=[parse_edit("600:max_force_lb=70")],
                       faults=[parse_fault("1780:loadcell-drift:a")])
    engine = build_engine(spec)
    engine.setup(confirm_high_force=True)
    return engine.run()


def _new_session(store: Store, rate_hz: float) -> int:
    with store.unit("bench") as uow:
        pid = uow.patients.demo().id
        return uow.sessions.create(SessionStart(
            patient_id=pid, protocol_name="bench", region="lumbar", mode="intermittent",
            body_weight_kg=80.0, rate_hz=rate_hz, clinical_rate_hz=100.0, device="sim",
            protocol={}, spec={}, host="bench", pid=os.getpid())).id


def _feed(writer: TelemetryWriter, tel: F64, events: list[Event], alarms: list[Alarm],
          pace_s: float | None = None, stop: threading.Event | None = None) -> None:
    """Replay rows (and events/alarms at their times) into a writer."""
    ei = ai = 0
    t_next = time.perf_counter()
    for i in range(0, tel.shape[0], BLOCK):
        block = tel[i:i + BLOCK]
        t_end = float(block[-1, 0])
        while ei < len(events) and events[ei].t <= t_end:
            writer.event(events[ei], "running")
            ei += 1
        while ai < len(alarms) and alarms[ai].t <= t_end:
            writer.alarm(alarms[ai])
            ai += 1
        writer.sink(block)
        if pace_s is not None:
            t_next += pace_s
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                return


def _stored_rows(store: Store, sid: int) -> tuple[int, int]:
    with store.unit("bench") as uow:
        stats = uow.telemetry.stats(sid)
    return sum(s.rows for s in stats), sum(s.bytes for s in stats)


def ingest_one(store: Store, res: SessionResult, mode: str) -> Ingest:
    """One writer fed as fast as possible."""
    settings = store.settings
    if mode == "full rate":
        settings = settings.model_copy(update={"clinical_rate_hz": res.rate_hz})
    sid = _new_session(store, res.rate_hz)
    backend = TimedBackend(store, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        writer = TelemetryWriter(backend, sid, rate_hz=res.rate_hz, settings=settings,
                                 spool_path=Path(tmp) / "s.spool")
        writer.start()
        t0 = time.perf_counter()
        _feed(writer, res.telemetry, res.events, res.alarms)
        stats = writer.close()
    seconds = backend.last_write_done - t0
    rows, nbytes = _stored_rows(store, sid)
    expected = stats.clinical_rows + stats.fullrate_rows
    return Ingest(store.dialect, mode, 1, stats.rows_in, seconds, rows, nbytes, stats.flush_lag_s_max,
                  stats.write_s_max * 1000.0, backend.compact_s, rows == expected and not stats.rows_lost)


def _close_all(ws: list[TelemetryWriter]) -> list[WriterStats]:
    """Close writers in parallel (as independent tables would end)."""
    out: list[WriterStats | None] = [None] * len(ws)

    def close(i: int) -> None:
        out[i] = ws[i].close()

    threads = [threading.Thread(target=close, args=(i,)) for i in range(len(ws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s for s in out if s is not None]


def ingest_many(store: Store, res: SessionResult, mode: str, writers: int, seconds: float,
                paced: bool) -> Ingest:
    """`writers` tables, each fed `seconds` of 1 kHz telemetry: in real time (`paced`: 100
    samples per writer every 100 ms) or as fast as the feeders can append."""
    settings = store.settings
    if mode == "full rate":
        settings = settings.model_copy(update={"clinical_rate_hz": res.rate_hz})
    n_rows = int(seconds * res.rate_hz)
    tel = res.telemetry[:n_rows]
    events = [e for e in res.events if e.t <= tel[-1, 0]]
    ws: list[TelemetryWriter] = []
    backends: list[TimedBackend] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(writers):
            b = TimedBackend(store, "bench", defer_compaction=True)
            w = TelemetryWriter(b, _new_session(store, res.rate_hz), rate_hz=res.rate_hz,
                                settings=settings, spool_path=Path(tmp) / f"{i}.spool")
            w.start()
            ws.append(w)
            backends.append(b)
        # one feeder thread per 10 writers
        groups = [ws[i:i + 10] for i in range(0, writers, 10)]

        def feed_group(group: list[TelemetryWriter]) -> None:
            for w in group:
                for e in events:
                    w.event(e, "running")
            t_next = time.perf_counter()
            for i in range(0, tel.shape[0], BLOCK):
                for w in group:
                    w.sink(tel[i:i + BLOCK])
                if paced:
                    t_next += BLOCK / res.rate_hz
                    delay = t_next - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)

        feeders = [threading.Thread(target=feed_group, args=(g,)) for g in groups]
        t0 = time.perf_counter()
        for f in feeders:
            f.start()
        for f in feeders:
            f.join()
        stats = _close_all(ws)
    done = max(b.last_write_done for b in backends)
    total = sum(s.rows_in for s in stats)
    rows = nbytes = 0
    complete = True
    for w, st in zip(ws, stats, strict=True):
        r, b_ = _stored_rows(store, w.session_id)
        rows += r
        nbytes += b_
        complete &= r == st.clinical_rows + st.fullrate_rows and not st.rows_lost
    return Ingest(store.dialect, mode + (" (real time)" if paced else " (max)"), writers, total,
                  done - t0, rows, nbytes, max(s.flush_lag_s_max for s in stats),
                  max(s.write_s_max for s in stats) * 1000.0, 0.0, complete)


def loop_timing(label: str, store: Store | None, seconds: float) -> LoopTiming:
    """A real-time session for `seconds`, with or without the recorder."""
    spec = SessionSpec(protocol=get_protocol("lumbar-intermittent"), body_weight_kg=80.0, speed=1.0)
    engine = build_engine(spec)
    recorder = None
    if store is not None:
        recorder = SessionRecorder.begin(store, actor="bench", spec=spec,
                                         resolved=resolve(spec.protocol, spec.body_weight_kg))
        recorder.attach(engine)
    stamps = np.zeros(int(seconds * spec.rate_hz) + 10_000)
    sink_cost: list[float] = []
    n = [0]

    def stamp(block: F64) -> None:
        if n[0] < stamps.size:
            stamps[n[0]] = time.perf_counter()
            n[0] += 1

    engine.sinks.insert(0, stamp)
    if recorder is not None:
        # time the writer's part of every cycle (what the control loop pays for recording)
        inner: Callable[[F64], None] = recorder.sink

        def timed(block: F64) -> None:
            t0 = time.perf_counter()
            inner(block)
            sink_cost.append(time.perf_counter() - t0)

        engine.sinks[engine.sinks.index(recorder.sink)] = timed
    engine.setup(confirm_high_force=True)
    result = engine.run(until_s=seconds)
    if recorder is not None:
        recorder.finish(result)
    intervals = np.diff(stamps[:n[0]])[1000:]  # skip the first second (start-up catch-up)
    jitter = np.abs(intervals - engine.dt) * 1000.0
    overruns = int(getattr(engine.clock, "overruns", 0))
    return LoopTiming(label, intervals.size, float(np.percentile(jitter, 50)),
                      float(np.percentile(jitter, 99)), float(np.percentile(jitter, 99.9)),
                      float(jitter.max()), overruns,
                      float(np.percentile(sink_cost, 99) * 1e6) if sink_cost else 0.0)


def _print_ingest(rows: list[Ingest]) -> None:
    print(f"  {'engine':10s} {'mode':34s} {'writers':>7s} {'samples':>9s} {'seconds':>8s} "
          f"{'samples/s':>10s} {'stored rows':>11s} {'MiB':>6s} {'lag max':>8s} {'commit max':>10s} "
          f"{'complete':>8s}")
    for r in rows:
        print(f"  {r.engine:10s} {r.mode:34s} {r.writers:7d} {r.samples:9d} {r.seconds:8.2f} "
              f"{r.per_s:10.0f} {r.stored_rows:11d} {r.db_bytes / 2**20:6.1f} "
              f"{r.flush_lag_max_s * 1000:6.0f}ms {r.write_max_ms:8.1f}ms "
              f"{'yes' if r.complete else 'NO':>8s}")


def main() -> None:
    """Run the store benchmarks and print the results."""
    logging.basicConfig(level=logging.ERROR)
    print("Store: telemetry ingest (batching writer) and control-loop timing")
    load = os.getloadavg()
    print(f"  {os.cpu_count()} CPU(s), load average {load[0]:.2f}: numbers move with machine load")
    t0 = time.perf_counter()
    res = reference_session()
    print(f"  reference session: {res.telemetry.shape[0]} samples ({res.simulated_s / 60:.1f} min at "
          f"{res.rate_hz:g} Hz), {len(res.alarms)} alarm(s), simulated in {time.perf_counter() - t0:.1f} s")
    results: list[Ingest] = []
    timings: list[LoopTiming] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = Store.open(StoreSettings(database_url=f"sqlite:///{tmp}/bench.sqlite",
                                          data_dir=Path(tmp) / "data"))
        for mode in ("clinical 100 Hz + box", "full rate"):
            results.append(ingest_one(sqlite, res, mode))
        pg_server = None
        pg: Store | None = None
        try:
            from tests.pgserver import start_server

            pg_server = start_server({"max_connections": "300"})
            url = pg_server.create_database("bench")
            pg = Store.open(StoreSettings(database_url=url, data_dir=Path(tmp) / "pgdata",
                                          auto_migrate=True, pool_size=20))
        except (FileNotFoundError, ImportError) as exc:
            print(f"  PostgreSQL skipped: {exc}")
        try:
            if pg is not None:
                for mode in ("clinical 100 Hz + box", "full rate"):
                    results.append(ingest_one(pg, res, mode))
                for mode in ("clinical 100 Hz + box", "full rate"):
                    results.append(ingest_many(pg, res, mode, writers=100, seconds=8.0, paced=True))
                for mode in ("clinical 100 Hz + box", "full rate"):
                    results.append(ingest_many(pg, res, mode, writers=100, seconds=10.0, paced=False))
            print("\nIngest (samples accepted by the writer until its last batch committed):")
            _print_ingest(results)
            print("  lag max = oldest sample not yet committed at a flush; commit max = slowest batch;")
            print("  real time: 100 tables x 1 kHz offered (100,000 samples/s) - kept up if the lag stays")
            print("  bounded; max: the same writers fed as fast as they accept (compaction excluded)")
            print("\nControl loop paced at 1 kHz in real time, 6 s + release each, two interleaved "
                  "rounds (jitter = |period-to-period - 1 ms|; sink = the recorder's share of a "
                  "cycle):")
            configs: list[tuple[str, Store | None]] = [("no store", None), ("writer -> SQLite", sqlite)]
            if pg is not None:
                configs.append(("writer -> PostgreSQL", pg))
            for rnd in (1, 2):  # interleaved, so machine load hits every configuration alike
                for label, st in configs:
                    timings.append(loop_timing(f"{label} #{rnd}", st, 6.0))
            print(f"  {'configuration':22s} {'periods':>8s} {'p50 ms':>7s} {'p99 ms':>7s} "
                  f"{'p99.9 ms':>8s} {'max ms':>7s} {'overruns':>8s} {'sink p99':>9s}")
            for lt in timings:
                print(f"  {lt.label:22s} {lt.periods:8d} {lt.p50_ms:7.3f} {lt.p99_ms:7.3f} "
                      f"{lt.p999_ms:8.3f} {lt.max_ms:7.2f} {lt.overruns:8d} {lt.sink_p99_us:7.1f}us")
        finally:
            sqlite.close()
            if pg is not None:
                pg.close()
            if pg_server is not None:
                pg_server.close()
    paced = [r for r in results if r.writers > 1 and "real time" in r.mode]
    unpaced = [r for r in results if r.writers > 1 and "max" in r.mode]
    if paced and unpaced:
        print("\nTarget: >= 100,000 samples/s sustained on PostgreSQL (100 tables at 1 kHz):")
        for p_, u in zip(paced, unpaced, strict=True):
            print(f"  {u.mode.replace(' (max)', ''):22s}: 100 tables in real time kept up "
                  f"(worst lag {p_.flush_lag_max_s * 1000:.0f} ms, "
                  f"{'all' if p_.complete else 'NOT all'} samples stored); capacity "
                  f"{u.per_s:,.0f} samples/s")


if __name__ == "__main__":
    main()
