"""Shared test helpers: build and run short simulated sessions deterministically."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from spinedecomp.control.protocol import Protocol, parse_protocol, resolve
from spinedecomp.core.errors import ProtocolError
from spinedecomp.session.engine import SessionEngine, SessionResult
from spinedecomp.session.model import Command, Fault
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.telemetry import COL


def proto(**over: Any) -> Protocol:
    """A short lumbar intermittent protocol, fields overridable."""
    base: dict[str, Any] = dict(name="test", region="lumbar", mode="intermittent",
                                max_force={"value": 45, "unit": "%bw"},
                                rest_force={"value": 50, "unit": "%max"},
                                hold_s=30, rest_s=15, ramp_s=10, duration_min=2.5, angle_deg=15)
    base.update(over)
    return parse_protocol(base)


def random_proto(mode: str, region: str, pct: float, weight: float,
                 duration_min: float) -> Protocol | None:
    """A short protocol drawn by a property test (cervical forces a fifth of the lumbar %bw),
    or None when validation rightly refuses the combination."""
    over: dict[str, Any] = {"mode": mode, "region": region, "duration_min": duration_min,
                            "ramp_s": 5, "hold_s": 15, "rest_s": 8,
                            "max_force": {"value": pct if region == "lumbar" else pct / 5,
                                          "unit": "%bw"}}
    if mode == "cyclic":
        over["oscillation"] = {"value": 5 if region == "lumbar" else 2, "unit": "lb"}
    try:
        p = proto(**over)
        resolve(p, weight)
    except ProtocolError:
        return None
    return p


def edit_commands(edits: list[tuple[float, str, float]]) -> list[tuple[float, Command]]:
    """(t, field-or-command, value) triples drawn by a property test -> scheduled commands."""
    return [(t, Command(kind=w) if w in ("pause", "resume", "stop")  # type: ignore[arg-type]
             else Command(kind="edit", field=w, value=v)) for t, w, v in edits]


def run(p: Protocol, weight: float = 80.0, *, edits: list[tuple[float, Command]] | None = None,
        faults: list[Fault] | None = None, seed: int = 0, rate_hz: float = 1000.0,
        confirm: bool = True, noise: bool = True) -> tuple[SessionEngine, SessionResult]:
    """Run a session to its end on the simulated table."""
    spec = SessionSpec(protocol=p, body_weight_kg=weight, rate_hz=rate_hz, seed=seed,
                       noise=noise, edits=edits or [], faults=faults or [])
    eng = build_engine(spec)
    eng.setup(confirm_high_force=confirm)
    res = eng.run()
    return eng, res


def force(tel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """True cable force column."""
    return tel[:, COL["force_true_n"]]
