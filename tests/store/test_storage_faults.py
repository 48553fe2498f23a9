"""Storage faults while a session runs (issue 12, item 10), each injected for real: into the
files of a running `spinedecomp session simulate --speed realtime`, or into the store under a
session recording through the real store API.

- database files made immutable (``chattr +i``; the issue saw a SIGBUS from the mapped WAL
  index) or emptied mid-session: the store orders the release, the CLI says the record is
  NOT stored and exits non-zero, what was committed stays, the rest is spooled;
- database file deleted or replaced mid-session: released, "NOT stored" instead of "stored";
- two databases sharing one data directory: their sessions 1 record side by side, and a
  spool is only ever written back into the session it came from;
- a lock that cannot be taken: a clear error, no traceback, no "idle" row.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy.engine import make_url

from spinedecomp.core.units import Region, limits_for
from spinedecomp.session.run import SessionSpec
from spinedecomp.store.api import Store, database_key
from spinedecomp.store.recovery import lock_path
from spinedecomp.store.settings import StoreSettings
from tests.helpers import proto
from tests.store.test_recording import FlakyBackend, _slow_between, record

CLI = Path(sys.executable).with_name("spinedecomp")
needs_cli = pytest.mark.skipif(not CLI.exists(), reason="the spinedecomp console script is not installed")

# One minute, the shortest protocol there is: a fault a few seconds in, then the release.
PROTOCOL = {"name": "short", "region": "lumbar", "mode": "intermittent",
            "max_force": {"value": 45, "unit": "%bw"}, "rest_force": {"value": 50, "unit": "%max"},
            "hold_s": 30, "rest_s": 15, "ramp_s": 10, "duration_min": 1, "angle_deg": 15}
SAFE_N = limits_for(Region.LUMBAR).safe_rest_force_n


class Run:
    """One `spinedecomp session simulate` in a subprocess, output to files (no pipe to fill)."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str], *args: str) -> None:
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([str(CLI), "session", "simulate", *args], env=env,
                                         stdout=o, stderr=e)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 180.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    @property
    def stderr(self) -> str:
        """stderr with rich's line wrapping undone."""
        return " ".join(self.err.read_text(errors="replace").split())

    def summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.out.read_text())
        return doc


def _protocol(tmp: Path) -> Path:
    path = tmp / "short.json"
    path.write_text(json.dumps(PROTOCOL))
    return path


def _env(data: Path, url: str | None = None) -> dict[str, str]:
    env = dict(os.environ, SPINEDECOMP_DATA_DIR=str(data), COLUMNS="400")
    env.pop("SPINEDECOMP_DATABASE_URL", None)
    if url is not None:
        env["SPINEDECOMP_DATABASE_URL"] = url
    return env


def _last_t(db: Path) -> float | None:
    """last_t of session 1, read without the store (no recovery, no write)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            row = conn.execute("SELECT last_t FROM sessions WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return float(row[0]) if row and row[0] is not None else None


def _wait_running(db: Path, run: Run, t: float = 2.0) -> float:
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        last = _last_t(db)
        if last is not None and last >= t:
            return last
        assert run.alive(), run.stderr
        time.sleep(0.05)
    pytest.fail("the session did not get going")


def _chattr(flag: str, paths: list[Path]) -> bool:
    if not paths:
        return True
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0


def _released(s: dict[str, Any]) -> None:
    """The session ended in the table's controlled release, not in a dead process."""
    assert s["end_state"] == "aborted"
    assert s["force_below_safe_after_s"] is not None and s["motor_disabled"]
    assert s["final_force_n"] is not None and s["final_force_n"] <= SAFE_N


def _not_stored(run: Run, rc: int, *why: str) -> str:
    err = run.stderr
    assert rc > 0, (rc, err)  # an exit code, not a signal (SIGBUS before the fix)
    assert "Traceback" not in err, err
    assert "session 1 NOT stored" in err and "stored as session" not in err, err
    assert "The store ordered the table's release" in err, err
    for w in why:
        assert w in err, err
    return err


@pytest.fixture
def immutable_ok(tmp_path: Path) -> None:
    """Skip where files cannot be made immutable (needs CAP_LINUX_IMMUTABLE, i.e. root)."""
    probe = tmp_path / "probe"
    probe.touch()
    if shutil.which("chattr") is None or not _chattr("+i", [probe]):
        pytest.skip("host capability: chattr +i is not permitted here (needs root / "
                    "CAP_LINUX_IMMUTABLE and a filesystem with the immutable flag)")
    _chattr("-i", [probe])


@needs_cli
def test_database_made_immutable_mid_session_releases_and_says_not_stored(
        tmp_path: Path, immutable_ok: None) -> None:
    data = tmp_path / "data"
    db = data / "spinedecomp.sqlite"
    run = Run(tmp_path, "s", _env(data), "-p", str(_protocol(tmp_path)), "-w", "80",
              "--speed", "realtime", "--json")
    files: list[Path] = []
    try:
        _wait_running(db, run)
        files = sorted(data.glob("spinedecomp.sqlite*"))
        # A rollback journal: no memory-mapped -shm (the WAL index) left to SIGBUS on.
        assert [f.name for f in files] == ["spinedecomp.sqlite", "spinedecomp.sqlite-journal"]
        assert _chattr("+i", files)
        fault_at = _last_t(db)
        rc = run.wait()
        committed = _last_t(db)  # readable while immutable: what was committed before
    finally:
        _chattr("-i", files)
        run.kill()
    _not_stored(run, rc, "the database cannot be written", "holds its record up to t=")
    s = run.summary()
    _released(s)
    assert fault_at is not None and committed is not None and committed >= fault_at

    # Once the file can be written again, the next start writes the spool: the whole record.
    with Store.open(StoreSettings(data_dir=data)) as store:
        assert store.recovery is not None and store.recovery.replayed == [1]
        with store.unit("auditor") as uow:
            rec = uow.sessions.get(1)
            clinical = uow.telemetry.clinical(1)
            events = uow.sessions.events(1)
    assert rec.state == "aborted" and rec.samples == s["samples"]
    assert clinical[-1, 0] == pytest.approx(s["samples"] / 1000.0)
    assert any(e.kind == "command" and "by store: the database cannot be written" in e.reason
               for e in events)


@needs_cli
def test_database_emptied_mid_session_releases_and_never_writes_into_the_new_one(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "spinedecomp.sqlite"
    proto_file = str(_protocol(tmp_path))
    run = Run(tmp_path, "s", _env(data), "-p", proto_file, "-w", "80", "--speed", "realtime",
              "--json")
    try:
        _wait_running(db, run)
        os.truncate(db, 0)  # the file's content is gone under the open connections
        rc = run.wait()
    finally:
        run.kill()
    _not_stored(run, rc, "the database cannot be written", "cannot be read either")
    _released(run.summary())
    spools = list((data / "spool").glob("*/session-1-*.spool"))
    assert len(spools) == 1  # the record since the fault, kept

    # The next session on the (now new) database is session 1 again: another patient's. The
    # old spool must never be written into it.
    second = Run(tmp_path, "s2", _env(data), "-p", proto_file, "-w", "60", "--json")
    assert second.wait() == 0, second.stderr
    assert "stored as session 1" in second.stderr
    with Store.open(StoreSettings(data_dir=data)) as store:
        assert store.recovery is not None and store.recovery.replayed == []
        with store.unit("auditor") as uow:
            rec = uow.sessions.get(1)
    assert rec.state == "completed" and rec.body_weight_kg == 60.0
    assert rec.samples == second.summary()["samples"]
    assert not spools[0].exists() and spools[0].with_name(spools[0].name + ".orphaned").exists()


@needs_cli
def test_database_deleted_mid_session_is_not_reported_stored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "spinedecomp.sqlite"
    run = Run(tmp_path, "s", _env(data), "-p", str(_protocol(tmp_path)), "-w", "80",
              "--speed", "realtime", "--json")
    try:
        _wait_running(db, run)
        for f in data.glob("spinedecomp.sqlite*"):
            f.unlink()
        rc = run.wait()
    finally:
        run.kill()
    _not_stored(run, rc, f"the database file {db} was deleted")
    _released(run.summary())
    # nothing left to be written into whatever database is at the path next
    assert not list((data / "spool").glob("**/*.spool"))


def test_database_replaced_mid_session_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    settings = StoreSettings(database_url=f"sqlite:///{db}", data_dir=tmp_path / "data",
                             flush_interval_s=0.05, chunk_s=10.0)

    def replace() -> None:
        # a consistent copy of the database as it is now, moved over it (a restore, a sync)
        copy = tmp_path / "copy.sqlite"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        os.replace(copy, db)

    # simulated time slowed from t=5 s, so the writer's commits keep up before the swap at 20 s
    slow = _slow_between(5.0, 1e9, sleep_s=0.004)
    swap = _slow_between(20.0, 1e9, replace, sleep_s=0.0)

    def hook(block: npt.NDArray[np.float64]) -> None:
        slow(block)
        swap(block)

    with Store.open(settings) as store:
        spec = SessionSpec(protocol=proto(duration_min=2.0), body_weight_kg=80.0)
        r = record(store, spec, hook=hook)
    stop = [e for e in r.result.events if e.kind == "command" and "by store" in e.reason]
    assert len(stop) == 1 and "was replaced by another file" in stop[0].reason
    assert r.result.end_state.value == "aborted" and r.result.simulated_s < 40.0
    assert not r.report.stored and r.report.problem is not None
    assert "was replaced by another file" in r.report.problem and r.report.stats.db_replaced
    with Store.open(settings) as store, store.unit("auditor") as uow:
        left = uow.sessions.get(r.recorder.session_id)  # the copy, as it was at t=20 s
    assert left.state == "aborted" and left.abort_reason == "process ended unexpectedly"
    assert left.last_t is not None and left.last_t <= 20.5  # nothing after the swap
    assert left.samples < r.result.telemetry.shape[0]


@needs_cli
def test_database_locked_to_the_end_completes_and_exits_not_stored(tmp_path: Path) -> None:
    """A busy database is an outage, not a fault: the session completes on the spool; its
    record is not all stored at the end, which a completed session reports with exit 5."""
    data = tmp_path / "data"
    db = data / "spinedecomp.sqlite"
    env = _env(data) | {"SPINEDECOMP_CLOSE_RETRY_S": "0.5"}
    run = Run(tmp_path, "s", env, "-p", str(_protocol(tmp_path)), "-w", "80", "--speed", "8",
              "--json")
    holder: sqlite3.Connection | None = None
    try:
        _wait_running(db, run, 1.0)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another program holding the file for the rest
        rc = run.wait()
    finally:
        if holder is not None:
            holder.close()
        run.kill()
    err = run.stderr
    assert rc == 5 and "Traceback" not in err, (rc, err)
    assert "session 1 NOT stored: the database was unavailable at the end" in err, err
    assert "stored as session" not in err and "ordered the table's release" not in err, err
    s = run.summary()
    assert s["end_state"] == "completed"
    with Store.open(StoreSettings(data_dir=data)) as store:  # free again: the spool goes in
        assert store.recovery is not None and store.recovery.replayed == [1]
        with store.unit("auditor") as uow:
            rec = uow.sessions.get(1)
    assert rec.state == "completed" and rec.samples == s["samples"]


@needs_cli
def test_two_databases_sharing_a_data_dir_record_side_by_side(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a_db, b_db = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    proto_file = str(_protocol(tmp_path))
    a = Run(tmp_path, "a", _env(data, f"sqlite:///{a_db}"), "-p", proto_file, "-w", "80",
            "--speed", "5", "--json")
    b: Run | None = None
    overlap = False
    try:
        _wait_running(a_db, a, 0.5)
        b = Run(tmp_path, "b", _env(data, f"sqlite:///{b_db}"), "-p", proto_file, "-w", "70",
                "--speed", "5", "--json")
        while b.alive():
            # both writers hold their session 1's lock at the same time, in separate files
            if len(list((data / "run").glob("*/session-1.lock"))) == 2 and a.alive():
                overlap = True
            time.sleep(0.05)
        rc_a, rc_b = a.wait(), b.wait()
    finally:
        a.kill()
        if b is not None:
            b.kill()
    assert overlap, "the two sessions did not run at the same time"
    assert b is not None
    for run, db, weight, rc in ((a, a_db, 80.0, rc_a), (b, b_db, 70.0, rc_b)):
        assert rc == 0 and "Traceback" not in run.stderr, run.stderr
        assert f"stored as session 1 in sqlite:///{db}" in run.stderr
        settings = StoreSettings(database_url=f"sqlite:///{db}", data_dir=data)
        with Store.open(settings) as store, store.unit("auditor") as uow:
            rec = uow.sessions.get(1)
        assert rec.state == "completed" and rec.body_weight_kg == weight
        assert rec.samples == run.summary()["samples"]


def test_a_spool_goes_back_only_into_its_own_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = StoreSettings(database_url=f"sqlite:///{tmp_path / 'a.sqlite'}", data_dir=data,
                      retry_s=0.05, flush_interval_s=0.05, close_retry_s=0.3, chunk_s=10.0)
    b = a.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'b.sqlite'}"})
    with Store.open(a) as store:
        flaky = FlakyBackend(store)
        spec = SessionSpec(protocol=proto(duration_min=1.0), body_weight_kg=80.0)
        r = record(store, spec, backend=flaky, hook=_slow_between(
            10.0, 1e9, lambda: setattr(flaky, "down", True), sleep_s=0.002))
    assert not r.report.stored and r.report.spooled_bytes > 0  # A still down at the end
    spool = r.recorder.writer.spool.path
    # B, same data dir, gets its own session 1; its start must leave A's spool alone
    with Store.open(b) as store:
        spec_b = SessionSpec(protocol=proto(duration_min=1.0), body_weight_kg=70.0)
        rb = record(store, spec_b)
        assert rb.recorder.session_id == r.recorder.session_id == 1 and rb.report.stored
    with Store.open(b) as store:
        assert store.recovery is not None and store.recovery.replayed == []
        with store.unit("t") as uow:
            assert uow.sessions.get(1).samples == rb.result.telemetry.shape[0]
    assert spool.exists()
    with Store.open(a) as store:  # A is back: its spool goes into its own session 1
        assert store.recovery is not None and store.recovery.replayed == [1]
        with store.unit("t") as uow:
            rec = uow.sessions.get(1)
    assert rec.state == "completed" and rec.samples == r.result.telemetry.shape[0]
    assert not spool.exists()


def test_a_spool_left_by_an_earlier_version_is_still_written(tmp_path: Path) -> None:
    settings = StoreSettings(database_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                             data_dir=tmp_path / "data", retry_s=0.05, flush_interval_s=0.05,
                             close_retry_s=0.3, chunk_s=10.0)
    with Store.open(settings) as store:
        flaky = FlakyBackend(store)
        spec = SessionSpec(protocol=proto(duration_min=1.0), body_weight_kg=80.0)
        r = record(store, spec, backend=flaky, hook=_slow_between(
            10.0, 1e9, lambda: setattr(flaky, "down", True), sleep_s=0.002))
    assert r.report.spooled_bytes > 0
    legacy = settings.spool_dir / "session-1.spool"  # where versions before the key kept it
    r.recorder.writer.spool.path.replace(legacy)
    with Store.open(settings) as store:
        assert store.recovery is not None and store.recovery.replayed == [1]
        with store.unit("t") as uow:
            assert uow.sessions.get(1).state == "completed"
    assert not legacy.exists()


@needs_cli
def test_a_lock_that_cannot_be_taken_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    lock = lock_path(StoreSettings(data_dir=data), database_key(make_url(url)), 1)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a stray writer of session 1 would
        os.write(fd, f"{os.getpid()}\n".encode())
        run = Run(tmp_path, "s", _env(data, url), "-p", str(_protocol(tmp_path)), "-w", "80",
                  "--json")
        rc = run.wait()
    finally:
        os.close(fd)
    err = run.stderr
    assert rc > 0 and "Traceback" not in err, err
    assert f"its lock file {lock} is held by another process (pid {os.getpid()})" in err, err
    assert "cannot record the session" in err and not run.out.read_text().strip()
    with Store.open(StoreSettings(database_url=url, data_dir=data)) as store, store.unit("t") as uow:
        rec = uow.sessions.get(1)
    assert rec.state == "aborted" and rec.abort_reason is not None
    assert rec.abort_reason.startswith("not started: session 1: its lock file")


def test_a_wal_database_of_an_earlier_version_leaves_wal(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    settings = StoreSettings(database_url=f"sqlite:///{db}", data_dir=tmp_path / "data")
    Store.open(settings).close()
    with sqlite3.connect(db) as conn:  # what earlier versions left: a WAL database
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    old = sqlite3.connect(db)  # ... still open in an old process: the switch has to wait
    old.execute("SELECT count(*) FROM sessions").fetchone()
    try:
        with Store.open(settings) as store, store.unit("t") as uow:
            uow.patients.demo()  # works, in WAL for now
    finally:
        old.close()
    with Store.open(settings) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "truncate"
    assert not db.with_name("old.sqlite-shm").exists() and not db.with_name("old.sqlite-wal").exists()

