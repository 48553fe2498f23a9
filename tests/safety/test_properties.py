"""Safety properties over random protocols, live edits and fault schedules."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spinedecomp.control.library import builtin_protocols
from spinedecomp.control.trajectory import EDITABLE_FIELDS
from spinedecomp.core.units import limits_for
from spinedecomp.session.faults import FAULT_KINDS, parse_fault
from spinedecomp.session.model import SessionState
from spinedecomp.session.summary import summarize
from tests.helpers import edit_commands, force, random_proto, run

# Device absolute limit plus the documented transient margin (docs/safety.md): 5%.
TRANSIENT_MARGIN = 0.05
# A patient's spasm is physics the monitor cannot prevent, only release after: keep the
# injected movement within what a person does (<= 25 mm of cable, about 375 N).
_fault = st.tuples(st.floats(0.5, 70.0), st.sampled_from(sorted(set(FAULT_KINDS) - {"controller-crash"})),
                   st.sampled_from(["a", "b"]), st.floats(1.0, 25.0))
_edit = st.tuples(st.floats(0.5, 70.0), st.sampled_from((*EDITABLE_FIELDS, "pause", "resume", "stop")),
                  st.floats(-50.0, 1500.0))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["static", "intermittent", "progressive", "regressive", "cyclic"]),
       region=st.sampled_from(["lumbar", "cervical"]), pct=st.floats(10.0, 50.0),
       weight=st.floats(45.0, 160.0), faults=st.lists(_fault, max_size=3),
       edits=st.lists(_edit, max_size=4), seed=st.integers(0, 10_000))
def test_force_bounded_and_every_run_ends_released(mode: str, region: str, pct: float, weight: float,
                                                  faults: list[tuple[float, str, str, float]],
                                                  edits: list[tuple[float, str, float]],
                                                  seed: int) -> None:
    p = random_proto(mode, region, pct, weight, 1.2)
    if p is None:
        return
    fs = []
    for t, kind, ch, arg in faults:
        fk = FAULT_KINDS[kind]
        spec = f"{t}:{kind}" + (f":{ch}" if fk.needs_channel else "")
        if fk.default_arg is not None and kind in ("overforce-spike", "loadcell-drift", "loadcell-offset"):
            spec += f":{arg}"
        fs.append(parse_fault(spec))
    cmds = edit_commands(edits)
    _eng, res = run(p, weight, faults=fs, edits=cmds, seed=seed, rate_hz=500.0)
    limit = limits_for(p.region).force.absolute.hi
    f = force(res.telemetry)
    assert np.max(f) <= limit * (1.0 + TRANSIENT_MARGIN)
    assert res.end_state in (SessionState.COMPLETED, SessionState.ABORTED)
    assert f[-1] <= res.safe_n
    assert res.motor_off
    if res.end_state is SessionState.COMPLETED:
        assert res.alarms == []


def test_no_false_trip_in_100_clean_sessions() -> None:
    protos = list(builtin_protocols().values())
    weights = np.linspace(45.0, 160.0, 12)
    trips = []
    for i in range(100):
        p = protos[i % len(protos)]
        p = p.model_copy(update={"duration_min": min(p.duration_min, 4.0)})
        w = float(weights[i % len(weights)])
        eng, res = run(p, w, seed=1000 + i)
        s = summarize(res, eng.resolved)
        if s.end_state != "completed" or s.alarms:
            trips.append((p.name, w, s.abort_reason))
    assert trips == []
