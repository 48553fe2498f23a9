"""The CLI: protocol listing and validation, session simulate with its JSON summary, files and
clear errors; SIGTERM of a real-time session ends in a controlled release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.reports.export import read_telemetry

runner = CliRunner()
_registered = False


@pytest.fixture(autouse=True)
def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    global _registered
    if not _registered:
        _register_all()
        _registered = True
    monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")


def test_protocol_list_json_lists_the_library() -> None:
    r = runner.invoke(app, ["protocol", "list", "--json"])
    assert r.exit_code == 0
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"lumbar-intermittent", "lumbar-static", "lumbar-progressive",
            "cervical-intermittent"} <= names


def test_protocol_validate_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nregion: lumbar\nmode: intermittent\n"
                   "max_force: {value: 300, unit: N}\nrest_force: {value: 350, unit: N}\n")
    r = runner.invoke(app, ["protocol", "validate", str(bad)])
    assert r.exit_code == 2
    assert "rest_force" in r.stderr and "below max_force" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nregion: lumbar\nmode: static\nmax_force: {value: 30, unit: '%bw'}\n")
    assert runner.invoke(app, ["protocol", "validate", str(good)]).exit_code == 0


def test_simulate_json_summary_and_files(tmp_path: Path) -> None:
    p = tmp_path / "short.yaml"
    p.write_text("name: short\nregion: lumbar\nmode: intermittent\nmax_force: {value: 40, unit: '%bw'}\n"
                 "hold_s: 20\nrest_s: 10\nramp_s: 8\nduration_min: 1.5\nangle_deg: 15\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["session", "simulate", "-p", str(p), "-w", "80", "--json", "--out", str(out),
                            "--edit", "30:max_force_lb=80", "--format", "parquet", "--no-store"])
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    for key in ("protocol", "region", "rate_hz", "simulated_s", "wall_s", "speedup", "cap_n",
                "peak_force_n", "hold_rms_error_pct", "max_overshoot_pct", "peak_distraction_mm",
                "end_state", "events", "alarms", "release_started_after_ms", "force_below_safe_after_s"):
        assert key in s
    assert s["end_state"] == "completed" and s["alarms"] == []
    assert s["rate_hz"] == 1000.0 and s["simulated_s"] > 90.0
    assert s["peak_force_n"] == pytest.approx(80 * 4.4482216152605, rel=0.02)
    assert any(e["kind"] == "edit" and e["field"] == "max_force_n" for e in s["events"])
    assert (out / "session.png").stat().st_size > 10_000
    tel = read_telemetry(out / "telemetry.parquet")
    assert tel.shape[0] == s["samples"]


def test_simulate_with_a_fault_reports_the_alarm() -> None:
    r = runner.invoke(app, ["session", "simulate", "-p", "cervical-intermittent", "-w", "70", "--json",
                            "--fault", "20:patient-switch", "--no-store"])
    assert r.exit_code == 3, r.stderr  # aborted (docs/control.md, Exit codes)
    s = json.loads(r.stdout)
    assert s["end_state"] == "aborted"
    assert s["alarms"][0]["kind"] == "patient-switch" and s["alarms"][0]["priority"] == "high"
    assert s["release_started_after_ms"] <= 2.0
    assert s["force_below_safe_after_s"] < 2.0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-w", "-3"], "body_weight_kg"),
        (["-w", "80", "--fault", "10:wobble"], "unknown kind 'wobble'"),
        (["-w", "80", "--fault", "10:loadcell-nan"], "channel, a or b"),
        (["-w", "80", "--edit", "10:colour=3"], "unknown field 'colour'"),
        (["-w", "80", "--fault", "nan:patient-switch"], "time must be >= 0 s"),
        (["-w", "80", "--edit", "-5:pause"], "time must be >= 0 s"),
        (["-w", "80", "--speed", "fast"], "--speed"),
        (["-w", "80", "--device", "modbus://nohost"], "HOST:PORT"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], fragment: str) -> None:
    r = runner.invoke(app, ["session", "simulate", "-p", "lumbar-intermittent", *args, "--no-store"])
    assert r.exit_code == 2
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_sigterm_during_a_real_time_session_releases(tmp_path: Path) -> None:
    env = {**os.environ, "SPINEDECOMP_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spinedecomp.cli", "session", "simulate", "-p", "lumbar-intermittent",
         "-w", "80", "--speed", "5", "--json", "--no-store"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    time.sleep(8.0)  # numba compile (cached) + some seconds of ramp at 5x real time
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 3  # aborted by the signal
    s = json.loads(out)
    assert s["end_state"] == "aborted"
    assert s["alarms"][0]["kind"] == "software-fault"
    assert "signal" in (s["abort_reason"] or "")
    assert s["simulated_s"] > 3.0
    assert s["final_force_n"] <= 15.0 and s["motor_disabled"]


def test_two_sigterms_during_the_release_do_not_abandon_it(tmp_path: Path) -> None:
    """Issue 12.1: a second SIGTERM 0.3 s after the first used to end the release with
    274 N on the patient and the drive enabled; the release is re-armed and completes."""
    env = {**os.environ, "SPINEDECOMP_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spinedecomp.cli", "session", "simulate", "-p", "lumbar-intermittent",
         "-w", "80", "--speed", "5", "--json", "--no-store"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    time.sleep(8.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    s = json.loads(out)
    assert s["end_state"] == "aborted"
    assert s["final_force_n"] <= 15.0 and s["motor_disabled"], s
    assert "release interrupted" in err


def test_a_second_controller_crash_during_the_release_does_not_abandon_it() -> None:
    """Issue 12.1: `--fault 30:controller-crash --fault 30.3:controller-crash`."""
    r = subprocess.run(
        [sys.executable, "-m", "spinedecomp.cli", "session", "simulate", "-p", "lumbar-intermittent",
         "-w", "80", "--fault", "30:controller-crash", "--fault", "30.3:controller-crash",
         "--json", "--no-store"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    s = json.loads(r.stdout)
    assert s["end_state"] == "aborted" and s["motor_disabled"]
    assert s["final_force_n"] <= 15.0
    assert s["force_below_safe_after_s"] <= 352.0 / 300.0 + 1.0
