"""Trajectory: set-points over time, with live edits, pause/resume and stop."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedecomp.control.protocol import resolve
from spinedecomp.control.trajectory import EDITABLE_FIELDS, Phase, Trajectory
from spinedecomp.core.errors import ProtocolError
from tests.helpers import proto

DT = 0.01


def _run(tr: Trajectory, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    n = round(seconds / DT)
    blk = tr.block(n, DT)
    return blk.target_n, blk.phase


def _started(**over: object) -> Trajectory:
    tr = Trajectory(resolve(proto(**over), 80.0))
    tr.slack_taken_up()
    return tr


def test_intermittent_cycle_levels_and_durations() -> None:
    tr = _started(ramp_shape="linear")
    r = tr.resolved
    tgt, ph = _run(tr, 10 + 30 + 10 + 15)  # one full cycle
    assert np.count_nonzero(ph == Phase.RAMP_UP) == 1000
    assert np.count_nonzero(ph == Phase.HOLD) == 3000
    assert np.count_nonzero(ph == Phase.RAMP_DOWN) == 1000
    assert np.count_nonzero(ph == Phase.REST) == 1500
    assert np.allclose(tgt[ph == Phase.HOLD], r.max_force_n)
    assert np.allclose(tgt[ph == Phase.REST], r.rest_force_n)
    assert tr.cycle == 1


def test_static_holds_until_the_end_then_ramps_to_zero() -> None:
    tr = _started(mode="static", duration_min=1.0)
    tgt, ph = _run(tr, 200)
    assert set(np.unique(ph)) <= {Phase.RAMP_UP, Phase.HOLD, Phase.ENDING, Phase.DONE}
    assert tr.done
    assert tgt[-1] == 0.0
    assert tr.tau == pytest.approx(60.0)


def test_progressive_peaks_rise_and_regressive_peaks_fall() -> None:
    tr = _started(mode="progressive", progression_cycles=3, duration_min=10)
    peaks = []
    for _ in range(4):
        tgt, ph = _run(tr, 65)
        peaks.append(tgt[ph == Phase.HOLD].max())
    assert peaks[0] < peaks[1] < peaks[2] == pytest.approx(peaks[3])
    assert peaks[2] == pytest.approx(tr.resolved.max_force_n)
    tr2 = _started(mode="regressive", progression_cycles=3, duration_min=65 * 6 / 60)
    peaks2 = []
    for _ in range(6):
        tgt, ph = _run(tr2, 65)
        peaks2.append(tgt[ph == Phase.HOLD].max())
    assert peaks2[0] == pytest.approx(tr2.resolved.max_force_n)
    assert peaks2[-1] < peaks2[-2] < peaks2[-3] < peaks2[0]


def test_logarithmic_ramp_rises_fast_then_slowly() -> None:
    tr = _started(ramp_shape="logarithmic", ramp_s=10)
    tgt, _ = _run(tr, 10)
    first, last = tgt[100] - tgt[0], tgt[-1] - tgt[-101]
    assert first > 4 * last


def test_pause_holds_and_a_force_change_while_paused_is_reached_before_time_resumes() -> None:
    tr = _started(ramp_shape="linear")
    _run(tr, 20)  # in hold
    held = tr.last_target
    tr.pause()
    tau = tr.tau
    tgt, ph = _run(tr, 5)
    assert np.all(tgt == held) and np.all(ph == Phase.PAUSED)
    assert tr.tau == tau
    tr.edit("max_force_n", held + 40.0)
    tr.resume()
    tgt, ph = _run(tr, 10)
    resuming = ph == Phase.RESUMING
    assert resuming.any()
    assert tgt[resuming][-1] == pytest.approx(held + 40.0)
    # protocol time only moved for the samples after the new force was reached
    assert tr.tau == pytest.approx(tau + DT * np.count_nonzero(~resuming), abs=1e-6)


def test_stop_ramps_to_zero() -> None:
    tr = _started()
    _run(tr, 25)
    tr.stop()
    tgt, _ph = _run(tr, 60)
    assert np.all(np.diff(tgt) <= 1e-9)
    assert tr.done and tgt[-1] == 0.0


def test_edits_are_validated_and_name_the_field() -> None:
    tr = _started()
    with pytest.raises(ProtocolError) as ei:
        tr.edit("max_force_n", 10_000.0)
    assert ei.value.field == "max_force_n"
    with pytest.raises(ProtocolError):
        tr.edit("rest_force_n", tr.settings.max_force_n + 1)
    with pytest.raises(ProtocolError):
        tr.edit("hold_s", 0.0)
    with pytest.raises(ProtocolError):
        tr.edit("angle_deg", 40.0)
    with pytest.raises(ProtocolError) as ei2:
        tr.edit("speed", 1.0)
    assert ei2.value.field == "speed"
    with pytest.raises(ProtocolError):
        tr.edit("max_force_n", float("nan"))


def test_lowering_the_clinician_cap_lowers_max_force() -> None:
    tr = _started()
    tr.edit("clinician_cap_n", 200.0)
    assert tr.settings.max_force_n == 200.0
    assert tr.clamp_n == 200.0


_edit = st.tuples(st.sampled_from((*EDITABLE_FIELDS, "pause", "resume", "stop")),
                  st.floats(min_value=-100.0, max_value=2000.0),
                  st.floats(min_value=0.01, max_value=40.0))


@settings(max_examples=150, deadline=None)
@given(mode=st.sampled_from(["static", "intermittent", "progressive", "regressive", "cyclic"]),
       region=st.sampled_from(["lumbar", "cervical"]),
       pct=st.floats(min_value=5.0, max_value=50.0), weight=st.floats(45.0, 160.0),
       edits=st.lists(_edit, max_size=12))
def test_set_points_never_exceed_the_final_clamp(mode: str, region: str, pct: float, weight: float,
                                                  edits: list[tuple[str, float, float]]) -> None:
    over: dict[str, object] = {"mode": mode, "region": region, "duration_min": 3.0,
                               "max_force": {"value": pct if region == "lumbar" else pct / 5,
                                             "unit": "%bw"}}
    if mode == "cyclic":
        over["oscillation"] = {"value": 5, "unit": "lb"}
    try:
        tr = Trajectory(resolve(proto(**over), weight))
    except ProtocolError:
        return
    tr.slack_taken_up()
    for what, value, dur in edits:
        if what == "pause":
            tr.pause()
        elif what == "resume":
            tr.resume()
        elif what == "stop":
            tr.stop()
        else:
            with contextlib.suppress(ProtocolError):
                tr.edit(what, value)
        blk = tr.block(max(1, round(dur / 0.05)), 0.05)
        assert np.all(blk.target_n <= tr.clamp_n + 1e-9)
        assert np.all(blk.target_n >= 0.0)
        assert tr.clamp_n <= tr.limits.force.absolute.hi
