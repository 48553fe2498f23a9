"""Issue 12 item 7: fault arguments are range-checked. The issue's cases go through the real
`session simulate` command and must be refused before any session starts, with an error naming
the fault kind, the argument and the allowed range (never a NaN or 14 kN true force)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.session.faults import FAULT_KINDS, FaultSpecError, parse_fault

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
WITH_ARG = sorted(k for k, fk in FAULT_KINDS.items() if fk.arg is not None)


@pytest.fixture(autouse=True)
def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # _register_all() twice would register every sub-command twice.
    if not any(g.name == "session" for g in app.registered_groups):
        _register_all()
    monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")


def _spec(kind: str, arg: str) -> str:
    ch = ":a" if FAULT_KINDS[kind].needs_channel else ""
    return f"30:{kind}{ch}:{arg}"


@pytest.mark.parametrize(
    ("fault", "kind", "allowed"),
    [
        ("30:harness-detach:nan", "harness-detach", "0 to 5000 mm"),
        ("30:harness-detach:-1000", "harness-detach", "0 to 5000 mm"),
        ("30:overforce-spike:inf", "overforce-spike", "0 to 50 mm"),
        ("30:loadcell-drift:a:-inf", "loadcell-drift", "-1000 to 1000 N/s"),
        ("30:loadcell-offset:b:1e9", "loadcell-offset", "-2000 to 2000 N"),
        ("30:loadcell-spike:a:nan", "loadcell-spike", "-5000 to 5000 N"),
    ],
)
def test_the_issues_fault_arguments_are_refused_by_session_simulate(fault: str, kind: str,
                                                                    allowed: str) -> None:
    r = runner.invoke(app, ["session", "simulate", "-p", "lumbar-intermittent", "-w", "80",
                            "--fault", fault, "--json", "--no-store"])
    assert r.exit_code == 2, r.stdout
    err = " ".join(r.stderr.split())  # rich wraps long lines
    assert kind in err and "ARG" in err and allowed in err
    assert "Traceback" not in err
    assert r.stdout == ""  # refused before a session ran: no summary


def test_a_kind_without_an_argument_refuses_one() -> None:
    with pytest.raises(FaultSpecError, match="patient-switch takes no argument"):
        parse_fault("30:patient-switch:4")


@pytest.mark.parametrize("t", ["nan", "inf", "-1", "-0.001"])
def test_fault_times_must_be_finite_and_not_negative(t: str) -> None:
    with pytest.raises(FaultSpecError, match="time must be >= 0 s"):
        parse_fault(f"{t}:harness-detach")


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(WITH_ARG),
       value=st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_an_argument_is_accepted_exactly_when_finite_and_in_range(kind: str, value: float) -> None:
    spec = FAULT_KINDS[kind].arg
    assert spec is not None
    text = repr(value)
    if math.isfinite(value) and spec.allowed.lo <= value <= spec.allowed.hi:
        f = parse_fault(_spec(kind, text))
        assert f.arg == value
    else:
        with pytest.raises(FaultSpecError) as ei:
            parse_fault(_spec(kind, text))
        assert kind in str(ei.value) and spec.describe() in str(ei.value)


def test_the_documented_ranges_are_the_enforced_ones() -> None:
    doc = (ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Fault arguments"):]
    for kind in WITH_ARG:
        spec = FAULT_KINDS[kind].arg
        assert spec is not None
        row = re.search(rf"^\| `{re.escape(kind)}[^\n]*$", section, re.M)
        assert row is not None, f"{kind} has no row in docs/safety.md"
        assert f"| {spec.describe()} |" in row.group(0), row.group(0)
        assert f"| {FAULT_KINDS[kind].default_arg:g} |" in row.group(0)
