"""SIGKILL in the middle of a real-time session: on the next start the session is aborted
("process ended unexpectedly") and its telemetry and events are there up to at most 200 ms
before the kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from spinedecomp.store.api import Store
from spinedecomp.store.settings import StoreSettings

CLI = Path(sys.executable).with_name("spinedecomp")


def _poll(db: Path) -> tuple[float | None, str | None]:
    """(last_t, started_at) of the newest session, read without the store (no recovery)."""
    if not db.exists():
        return None, None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            row = conn.execute("SELECT last_t, started_at FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None, None
    return (row[0], row[1]) if row else (None, None)


@pytest.mark.skipif(not CLI.exists(), reason="the spinedecomp console script is not installed")
def test_sigkill_mid_session_keeps_all_but_the_last_200_ms(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = dict(os.environ, SPINEDECOMP_DATA_DIR=str(data))
    env.pop("SPINEDECOMP_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(CLI), "session", "simulate", "-p", "lumbar-intermittent", "-w", "80", "--speed",
         "realtime", "--edit", "1:max_force_lb=60", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = data / "spinedecomp.sqlite"
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline:
            last_t, _ = _poll(db)
            if last_t is not None and last_t >= 3.5:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the session did not get going")
        killed_at = datetime.now(UTC)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)  # reaped: its pid and its lock are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # what the dead process left: a session still "running"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state FROM sessions").fetchone()[0] == "running"

    with Store.open(StoreSettings(data_dir=data)) as store:  # the next start
        assert store.recovery is not None and store.recovery.aborted == [1]
        with store.unit("auditor") as uow:
            s = uow.sessions.get(1)
            clinical = uow.telemetry.clinical(1)
            full = uow.telemetry.fullrate(1)
            events = uow.sessions.events(1)
            audit = uow.audit.entries(entity="session", entity_id=1)
    assert s.state == "aborted" and s.abort_reason == "process ended unexpectedly"
    assert s.started_at is not None
    # the session clock runs in real time from `started_at`: where it was at the kill
    t_kill = (killed_at - s.started_at).total_seconds()
    last = float(clinical[-1, 0])
    print(f"kill at t={t_kill:.3f} s, last stored sample t={last:.3f} s")
    assert t_kill - 0.2 <= last <= t_kill + 0.05, (t_kill, last)
    # the 100 Hz record has no hole, and the black box around the edit at t=1 s is full rate
    assert np.allclose(np.diff(clinical[:, 0]), 0.01)
    assert full.shape[0] > 0 and full[0, 0] == pytest.approx(0.001)
    assert np.allclose(np.diff(full[:, 0]), 0.001)
    kinds = [e.kind for e in events]
    # set-up: switch test, tare, drive; the clinician's confirmation; idle->ready->running
    assert kinds[:6] == ["setup", "setup", "setup", "confirm", "state", "state"]
    assert "edit" in kinds and "slack" in kinds
    assert events[-1].reason == "running -> aborted: process ended unexpectedly"
    assert audit[-1].actor == "system:recovery" and audit[-1].after == {
        "state": "aborted", "abort_reason": "process ended unexpectedly",
        "ended_at": audit[-1].after["ended_at"]}
