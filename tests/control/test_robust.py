"""Table control on tables it was never tuned on: the plant family, identification, guarding
back-off, rate-of-rise by its hazard, tare, frozen cells without noise, lowering edits, rates,
and in-process tables. Every case runs the real session engine on a simulated plant."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spinedecomp.control import law as cl
from spinedecomp.control.library import get_protocol
from spinedecomp.control.protocol import resolve
from spinedecomp.core.clock import SimClock
from spinedecomp.core.errors import DeviceError, SessionError
from spinedecomp.core.units import Region
from spinedecomp.device.factory import open_table
from spinedecomp.device.plant import FAMILY, PlantParams, draw_plant, nominal_plant
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import TableDynamics
from spinedecomp.safety import law as zl
from spinedecomp.session.campaign import PROTOCOLS, Case, run_case
from spinedecomp.session.engine import SessionEngine
from spinedecomp.session.faults import parse_fault
from spinedecomp.session.model import Command
from spinedecomp.session.telemetry import COL

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "spinedecomp")


def _engine(proto: str, weight: float, plant: PlantParams, rate_hz: float,
            stop_at: float | None = 90.0) -> SessionEngine:
    resolved = resolve(get_protocol(proto), weight)
    table = SimulatedTable(PatientModel(resolved.region, weight, plant=plant),
                           angle_deg=resolved.protocol.angle_deg)
    eng = SessionEngine(table, resolved, rate_hz=rate_hz, clock=SimClock(1.0 / rate_hz))
    if stop_at is not None:
        eng.schedule(stop_at, Command(kind="stop", reason="test: shortened"))
    return eng


def test_family_draws_are_reproducible_and_within_the_documented_ranges() -> None:
    for region in Region:
        fam = FAMILY[region]
        for seed in range(40):
            p = draw_plant(region, 90.0, seed)
            assert p == draw_plant(region, 90.0, seed)
            k = p.stiffness_at_cell_n_mm
            assert fam.stiffness_at_cell_n_mm.lo * 0.999 <= k <= fam.stiffness_at_cell_n_mm.hi * 1.001
            assert fam.motor_lag_s.lo <= p.motor_lag_s <= fam.motor_lag_s.hi
            assert 0.0 <= p.transport_delay_s <= 0.020 and 0.0 <= p.noise_sd_n <= 3.0
            assert abs(p.offset_a_n) <= 10.0 and abs(p.gain_b - 1.0) <= 0.03
    assert draw_plant(Region.LUMBAR, 90.0, 1) != draw_plant(Region.LUMBAR, 90.0, 2)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(2_000_000, 2_999_999), proto=st.sampled_from(PROTOCOLS),
       weight=st.floats(40.0, 180.0), rate=st.sampled_from([100.0, 250.0, 1000.0]))
def test_any_plant_of_the_family_completes_without_a_trip_and_never_exceeds_the_clamp(
        seed: int, proto: str, weight: float, rate: float) -> None:
    r = run_case(Case(proto, round(weight, 1), rate, seed, minutes=1.5))
    assert r.end_state == "completed" and r.alarms == [], (r.alarms, r.events)
    assert r.above_clamp_n == 0.0
    if r.hold_rms_pct is not None:
        assert r.hold_rms_pct <= 2.0


def test_100_hz_slack_take_up_on_the_built_in_table_does_not_trip() -> None:
    # The case: -p lumbar-intermittent -w 45 --rate-hz 100 --seed 1000 tripped at 2.56 s.
    plant = nominal_plant(Region.LUMBAR, 45.0, seed=1000)
    eng = _engine("lumbar-intermittent", 45.0, plant, 100.0, stop_at=60.0)
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms
    assert any(e.kind == "slack" for e in res.events)


def test_cervical_on_a_stiff_slow_table_identifies_stiffness_and_does_not_oscillate() -> None:
    # The independent model that oscillated at 4-5 Hz: 40 N/mm, slow drive, delay, noisy
    # cells, one offset by 3 N; the old estimate never left its initial 5 N/mm.
    nom = nominal_plant(Region.CERVICAL, 70.0)
    plant = replace(nom, cable_stiffness_n_mm=60.0, spine_stiffness_n_mm=120.0,
                    creep_stiffness_n_mm=200.0, slack_mm=30.0, motor_lag_s=0.06,
                    transport_delay_s=0.01, noise_sd_n=2.0, offset_a_n=3.0, offset_b_n=0.0,
                    declared=None)
    k_true = plant.stiffness_at_cell_n_mm
    eng = _engine("cervical-intermittent", 70.0, plant, 1000.0, stop_at=150.0)
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms
    assert abs(eng.c[cl.C_KEST] - k_true) / k_true < 0.35
    r = run_case(Case("cervical-intermittent", 70.0, 1000.0, 0, minutes=None))  # nominal-like
    assert r.end_state == "completed"
    tel = res.telemetry
    hold = (tel[:, COL["phase"]] == 2)
    f = tel[hold, COL["force_true_n"]]
    tgt = tel[hold, COL["target_n"]]
    # After the first second of each hold, true force stays within 2 % of the set-point.
    err = np.abs(f - tgt) / np.maximum(tgt, 1.0)
    assert np.percentile(err, 90) < 0.02


def test_a_soft_patient_behind_noisy_cells_is_identified_and_ramped_on_time() -> None:
    # A soft halter (1.7 N/mm at the cell) read by two 3 N sd cells on an undeclared drive:
    # within a 2 s window the force rises less than the noise threshold, so only the "pulled
    # but fell short of the predicted rise" rule can bring the stiff initial estimate down.
    nom = nominal_plant(Region.CERVICAL, 85.0)
    plant = replace(nom, cable_stiffness_n_mm=2.0, spine_stiffness_n_mm=10.0,
                    creep_stiffness_n_mm=17.0, slack_mm=3.0, noise_sd_n=3.0,
                    offset_a_n=9.0, quant_n=0.3, declared=None)
    k_true = plant.stiffness_at_cell_n_mm
    assert k_true < 2.0
    eng = _engine("cervical-intermittent", 85.0, plant, 250.0, stop_at=120.0)
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms, [a.kind for a in res.alarms]
    assert eng.c[cl.C_KEST] < 3.0 * k_true
    tel = res.telemetry
    ph = tel[:, COL["phase"]]
    # The end of the first ramp: true force within 10 % of its set-point (the old controller
    # reached 17 % of it, crawling at the rate limit its stiff estimate implied).
    first_hold = int(np.flatnonzero(ph == 2)[0])
    assert tel[first_hold, COL["force_true_n"]] >= 0.9 * tel[first_hold, COL["target_n"]]


def test_noisy_live_cells_never_look_frozen_or_disagreeing() -> None:
    # A soft lumbar plant with 3 N sd cells at 100 Hz: a live cell may stay within 1 N of a
    # sample for several periods by chance, and two cells may differ by 8 N for 50 ms. The
    # frozen and disagreement checks sit above the noise measured at tare.
    nom = nominal_plant(Region.LUMBAR, 115.0)
    plant = replace(nom, cable_stiffness_n_mm=4.4, spine_stiffness_n_mm=23.0,
                    creep_stiffness_n_mm=52.0, noise_sd_n=2.9, declared=None)
    for seed in (11, 12):
        eng = _engine("lumbar-neuropathy", 115.0, replace(plant, offset_a_n=3.0 + seed / 10),
                      100.0, stop_at=120.0)
        eng.setup(confirm_high_force=True)
        res = eng.run()
        assert not res.alarms, [a.kind for a in res.alarms]
        assert eng.zp[zl.ZP_FROZEN_DF] >= 4.0 * 2.5 and eng.zp[zl.ZP_DISAGREE_N] > 20.0 + 10.0


def test_lowering_the_clinician_cap_far_below_the_force_ramps_down_without_an_alarm() -> None:
    plant = nominal_plant(Region.LUMBAR, 80.0)
    eng = _engine("lumbar-static", 80.0, plant, 1000.0, stop_at=120.0)
    eng.schedule(60.0, Command(kind="edit", field="clinician_cap_n", value=120.0))
    eng.schedule(90.0, Command(kind="edit", field="max_force_n", value=100.0))
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms, [a.kind for a in res.alarms]
    tel = res.telemetry
    t = tel[:, COL["t"]]
    before = tel[(t > 55) & (t < 60), COL["force_true_n"]].mean()
    assert before > 200.0  # the force really was far above the new cap
    after = tel[(t > 70) & (t < 89), COL["force_true_n"]]
    assert after.max() <= 120.0 * 1.03
    assert any(e.kind == "edit" and e.field == "clinician_cap_n" for e in res.events)


def test_no_noise_completes_without_a_frozen_sensor_alarm() -> None:
    plant = nominal_plant(Region.LUMBAR, 80.0, noise=False)
    eng = _engine("lumbar-intermittent", 80.0, plant, 100.0, stop_at=200.0)
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms


def test_a_frozen_cell_is_found_by_motion_even_without_noise() -> None:
    plant = nominal_plant(Region.LUMBAR, 80.0, noise=False)
    eng = _engine("lumbar-intermittent", 80.0, plant, 1000.0, stop_at=None)
    eng.inject(parse_fault("20:loadcell-freeze:a"))
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert [a.kind for a in res.alarms][:1] == ["sensor-frozen"]
    assert res.end_state.value == "aborted" and res.motor_off
    assert res.telemetry[-1, COL["force_true_n"]] <= res.safe_n


def test_muscle_guarding_is_detected_backed_off_and_reported() -> None:
    r = run_case(Case("lumbar-intermittent", 90.0, 250.0, 3_000_001, minutes=4.0,
                      guard_strength=3.0))
    assert r.end_state == "completed" and not r.alarms
    assert r.guard_detected >= 1 and r.guard_matched >= 1
    assert any("guarding" in e for e in r.events)


def test_guarding_appears_in_the_cli_summary_json(tmp_path: Path) -> None:
    out = subprocess.run([CLI, "session", "simulate",
                          "-p", "lumbar-intermittent", "-w", "90", "--plant-seed", "7",
                          "--edit", "200:stop", "--json", "--no-store", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["guarding_episodes"] == len(s["guarding"])
    assert s["guarding_episodes"] == sum(1 for e in s["events"] if e["kind"] == "guarding")
    assert (tmp_path / "session.png").stat().st_size > 10_000


def test_tare_subtracts_offsets_and_refuses_a_faulty_cell() -> None:
    nom = nominal_plant(Region.LUMBAR, 80.0)
    ok = replace(nom, offset_a_n=9.0, offset_b_n=-9.0, noise_sd_n=3.0)
    eng = _engine("lumbar-static", 80.0, ok, 1000.0, stop_at=60.0)
    eng.setup(confirm_high_force=True)
    assert eng.tare_a_n == pytest.approx(9.0, abs=0.8)
    assert eng.tare_b_n == pytest.approx(-9.0, abs=0.8)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms
    bad = replace(nom, offset_b_n=45.0)
    eng = _engine("lumbar-static", 80.0, bad, 1000.0)
    with pytest.raises(SessionError, match=r"load cell B reads 45\.\d N .*tare allowed within"):
        eng.setup(confirm_high_force=True)
    assert eng.state.value == "aborted"


def test_approach_speed_bounds_the_contact_overshoot_on_the_stiffest_plant() -> None:
    nom = nominal_plant(Region.LUMBAR, 80.0)
    # The stiffest plant of the envelope; the drive is declared, the cable's stiffness is not.
    assert nom.declared is not None
    stiff = replace(nom, cable_stiffness_n_mm=300.0, spine_stiffness_n_mm=300.0,
                    friction_n=0.0, slack_mm=10.0,
                    declared=replace(nom.declared, stiffness_max_n_per_mm=None))
    assert stiff.stiffness_at_cell_n_mm == pytest.approx(150.0)
    eng = _engine("lumbar-static", 80.0, stiff, 100.0, stop_at=None)
    eng.setup(confirm_high_force=True)
    eng.schedule(6.0, Command(kind="stop"))
    res = eng.run()
    tel = res.telemetry
    slack_t = next(e.t for e in res.events if e.kind == "slack")
    near = (tel[:, COL["t"]] <= slack_t + 0.3)
    assert tel[near, COL["force_true_n"]].max() <= 15.0 + 30.0  # rest level + contact budget
    assert not res.alarms


def test_the_table_may_declare_its_drive_and_the_loop_uses_it() -> None:
    nom = nominal_plant(Region.LUMBAR, 80.0)
    assert nom.declared is not None
    # The drive declared, the cable's stiffness not (the envelope's 150 N/mm).
    fast = _engine("lumbar-static", 80.0,
                   replace(nom, declared=replace(nom.declared, stiffness_max_n_per_mm=None)),
                   1000.0)
    slow = _engine("lumbar-static", 80.0, replace(nom, declared=None), 1000.0)
    assert fast.envelope.motor_lag_s == pytest.approx(0.02)
    assert slow.envelope.motor_lag_s == pytest.approx(0.150)
    assert fast.cp[cl.CP_WC] > slow.cp[cl.CP_WC]
    assert fast.cp[cl.CP_V_APPROACH] > slow.cp[cl.CP_V_APPROACH]
    assert slow.slack_timeout_s > fast.slack_timeout_s
    declared = replace(nom, declared=TableDynamics(0.02, 0.0, stiffness_max_n_per_mm=30.0))
    soft = _engine("lumbar-static", 80.0, declared, 1000.0)
    assert soft.cp[cl.CP_V_APPROACH] > fast.cp[cl.CP_V_APPROACH]


def test_controller_runaway_still_trips_rate_of_rise_on_a_family_plant() -> None:
    plant = draw_plant(Region.LUMBAR, 80.0, 31337, max_force_n=400.0)
    eng = _engine("lumbar-intermittent", 80.0, plant, 250.0, stop_at=None)
    slack_free = replace(plant, slack_mm=5.0)
    eng = _engine("lumbar-intermittent", 80.0, slack_free, 250.0, stop_at=None)
    eng.inject(parse_fault("40:controller-runaway"))
    eng.setup(confirm_high_force=True)
    res = eng.run()
    kinds = [a.kind for a in res.alarms]
    assert kinds and kinds[0] in ("rate-of-rise", "overforce"), kinds
    assert res.end_state.value == "aborted" and res.motor_off
    assert res.telemetry[-1, COL["force_true_n"]] <= res.safe_n


@pytest.mark.parametrize("rate", ["0", "nan", "inf", "-1", "20"])
def test_unusable_rates_get_a_clear_error_not_a_traceback(rate: str) -> None:
    out = subprocess.run([CLI, "session", "simulate",
                          "-p", "lumbar-static", "-w", "80", "--rate-hz", rate, "--no-store"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0
    text = " ".join((out.stdout + out.stderr).split())
    assert "rate_hz" in text and "50-5000 Hz" in text
    assert "Traceback" not in out.stderr


def test_a_table_plugged_in_by_python_factory_runs_the_step_loop_with_one_read_per_period(
        ) -> None:
    from tests.control import plugin_table

    model = PatientModel(Region.LUMBAR, 80.0)
    table = open_table("python:tests.control.plugin_table:make", model)
    assert not isinstance(table, SimulatedTable)
    resolved = resolve(get_protocol("lumbar-static"), 80.0)
    eng = SessionEngine(table, resolved, rate_hz=100.0, clock=SimClock(0.01))
    eng.schedule(40.0, Command(kind="stop"))
    eng.setup(confirm_high_force=True)
    w = plugin_table.LAST[-1]
    assert w.reads_since_write >= 50  # the tare window read the cells with the drive off
    w.max_reads_per_period = w.reads_since_write = w.writes = 0
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms
    assert w.max_reads_per_period == 1 and w.writes == res.telemetry.shape[0]
    with pytest.raises(DeviceError, match="cannot import module"):
        open_table("python:no.such.module:make", model)
    with pytest.raises(DeviceError, match="has no callable"):
        open_table("python:tests.control.plugin_table:nope", model)
    with pytest.raises(DeviceError, match="does not implement Table"):
        open_table("python:tests.control.plugin_table:not_a_table", model)
    with pytest.raises(DeviceError, match="expected python:MODULE:FACTORY"):
        open_table("python:justamodule", model)


def test_python_device_from_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([CLI, "session", "simulate",
                          "-p", "lumbar-static", "-w", "80", "--device",
                          "python:tests.control.plugin_table:make", "--speed", "max",
                          "--rate-hz", "100", "--edit", "30:stop", "--json", "--no-store"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["end_state"] == "completed" and s["rate_hz"] == 100.0
    assert math.isfinite(s["peak_force_n"]) and s["peak_force_n"] > 100.0


def test_one_nan_sample_does_not_make_the_cell_look_frozen_later() -> None:
    # A single NaN from cell A (a driver decoding the sentinel) used to become the frozen
    # check's reference: nothing is ever "more than 1 N" from NaN, so the first release after
    # it tripped sensor-frozen on a healthy cell.
    sys.path.insert(0, str(ROOT))
    from tests.session.sentinel_table import SentinelTable

    proto = resolve(get_protocol("lumbar-static"), 80.0)
    table = SentinelTable("a-nan", 60.0, 1)
    eng = SessionEngine(table, proto, rate_hz=100.0, clock=SimClock(0.01))
    eng.schedule(90.0, Command(kind="stop", reason="test: shortened"))
    eng.setup(confirm_high_force=True)
    res = eng.run()
    assert res.end_state.value == "completed" and not res.alarms, [a.kind for a in res.alarms]
    assert np.isnan(res.telemetry[:, COL["force_a_n"]]).sum() == 1  # the NaN did happen
