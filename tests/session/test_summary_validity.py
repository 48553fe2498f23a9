"""Issue 12 item 11: summaries are computed over valid samples only. A sentinel reading once gave
a peak force of 21,474,836 N and a hold RMS error of 620,034 %. The reading is fed through the
real `session simulate` command by a table plugged in with `--device python:...`, which passes
the Modbus sentinel through as a number, as a careless driver would."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.control.trajectory import Phase
from spinedecomp.core.units import Region, limits_for
from spinedecomp.reports.export import read_telemetry
from spinedecomp.session.summary import (
    force_column,
    hold_rms_error_pct,
    max_overshoot_pct,
    plausible_force_n,
)
from spinedecomp.session.telemetry import COL, N_COL
from tests.session.sentinel_table import SATURATED_N, SENTINEL_N

runner = CliRunner()
LUMBAR_LIMIT_N = limits_for(Region.LUMBAR).force.absolute.hi
SENTINEL_AT_S = 40.0  # in the hold of lumbar-static (30 s ramp), well after settling


@pytest.fixture(autouse=True)
def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # _register_all() twice would register every sub-command twice.
    if not any(g.name == "session" for g in app.registered_groups):
        _register_all()
    monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")


def _run_with(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[dict[str, Any], np.ndarray, int]:
    monkeypatch.setenv("SENTINEL_MODE", mode)
    monkeypatch.setenv("SENTINEL_AT_S", str(SENTINEL_AT_S))
    monkeypatch.setenv("SENTINEL_PERIODS", "1")
    out = tmp_path / "out"
    r = runner.invoke(app, ["session", "simulate", "-p", "lumbar-static", "-w", "80",
                            "--device", "python:tests.session.sentinel_table:make",
                            "--rate-hz", "100", "--edit", "45:stop", "--json", "--no-store",
                            "--out", str(out), "--format", "parquet"])
    assert r.stdout.startswith("{"), r.stderr
    s = json.loads(r.stdout)
    tel = read_telemetry(out / "telemetry.parquet")
    # the telemetry keeps the raw reading, in a hold: the case the issue reports
    hit = np.flatnonzero(np.abs(tel[:, COL["force_a_n"]]) > 1e7)
    assert hit.size == 1
    # ... after the settling second, so it falls in what the hold RMS error measures
    assert np.all(tel[hit[0] - 150:hit[0] + 1, COL["phase"]] == Phase.HOLD)
    return s, tel, r.exit_code


def test_a_saturated_reading_on_both_cells_does_not_become_the_peak(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, tel, code = _run_with("both", tmp_path, monkeypatch)
    assert tel[np.argmax(tel[:, COL["force_a_n"]]), COL["force_a_n"]] == SATURATED_N
    # the peak is that of the valid samples: the mean of the cells elsewhere
    ok = np.abs(tel[:, COL["force_a_n"]]) < 1e4
    expected_peak = float(np.max(0.5 * (tel[ok, COL["force_a_n"]] + tel[ok, COL["force_b_n"]])))
    assert s["peak_force_n"] == pytest.approx(expected_peak, abs=0.01)
    assert s["peak_force_n"] < LUMBAR_LIMIT_N  # was 21,474,836 N
    rms = s["hold_rms_error_pct"]
    assert isinstance(rms, float) and rms < 100.0  # was 620,034 %
    assert s["invalid_samples"] == 1
    assert s["max_overshoot_pct"] is not None and s["max_overshoot_pct"] < 100.0
    assert code == (0 if s["end_state"] == "completed" else 3)


def test_the_sentinel_on_one_cell_leaves_the_other_cell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, tel, _code = _run_with("a-sentinel", tmp_path, monkeypatch)
    i = int(np.argmin(tel[:, COL["force_a_n"]]))
    assert tel[i, COL["force_a_n"]] == SENTINEL_N
    assert s["peak_force_n"] < LUMBAR_LIMIT_N  # the mean with the sentinel is -10.7 MN
    rms = s["hold_rms_error_pct"]
    assert isinstance(rms, float) and rms < 100.0
    assert s["invalid_samples"] == 0  # cell B was valid in that period


def _tel(n: int, target: float, rng: np.random.Generator, truth: bool) -> np.ndarray:
    tel = np.zeros((n, N_COL))
    tel[:, COL["t"]] = np.arange(1, n + 1) * 0.01
    tel[:, COL["phase"]] = Phase.HOLD
    tel[:, COL["target_n"]] = target
    tel[:, COL["force_a_n"]] = target + rng.normal(0.0, 2.0, n)
    tel[:, COL["force_b_n"]] = target + rng.normal(0.0, 2.0, n)
    tel[:, COL["force_true_n"]] = target + rng.normal(0.0, 1.0, n) if truth else math.nan
    return tel


_BAD = st.sampled_from([math.nan, math.inf, -math.inf, SENTINEL_N, SATURATED_N, 1e9, -5e4])


@settings(max_examples=200, deadline=None)
@given(bad=st.lists(st.tuples(st.integers(0, 599), st.sampled_from(["a", "b", "both", "true"]),
                              _BAD), min_size=1, max_size=20),
       truth=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_invalid_readings_never_reach_the_statistics(
        bad: list[tuple[int, str, float]], truth: bool, seed: int) -> None:
    rate = 100.0
    bound = plausible_force_n(Region.LUMBAR)
    clean = _tel(600, 300.0, np.random.default_rng(seed), truth)
    tel = clean.copy()
    for i, where, value in bad:
        cols = {"a": ["force_a_n"], "b": ["force_b_n"], "both": ["force_a_n", "force_b_n"],
                "true": ["force_true_n"]}[where]
        for c in cols:
            tel[i, COL[c]] = value
    f = force_column(tel, bound)
    ok = np.isfinite(f)
    # every valid sample equals the clean force or one clean cell; no invalid value leaks
    assert np.all(np.abs(f[ok]) <= bound)
    ref = force_column(clean, bound)
    if truth:
        assert np.array_equal(f[ok], ref[ok])
    else:
        cells = np.stack([ref, clean[:, COL["force_a_n"]], clean[:, COL["force_b_n"]]])
        assert np.all(np.min(np.abs(cells[:, ok] - f[ok]), axis=0) < 1e-9)
    # the statistics are those of the valid samples
    rms = hold_rms_error_pct(tel, rate, bound)
    assert rms is not None and math.isfinite(rms) and rms < 5.0
    settle = int(rate)
    e = (f - tel[:, COL["target_n"]])[settle:]
    e = e[np.isfinite(e)]
    assert rms == pytest.approx(math.sqrt(float(np.mean(e * e))) / 300.0 * 100.0)
    ov = max_overshoot_pct(tel, rate, bound)
    assert ov is not None and ov < 5.0
