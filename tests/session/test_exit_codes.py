"""Issue 12 item 12: `session simulate` exit codes. 0 completed, 2 not started (invalid input),
3 aborted, 4 refused at set-up; an aborted session used to exit 0 with --json. Every case goes
through the real command with a real injected fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.cli.session import EXIT_ABORTED, EXIT_COMPLETED, EXIT_INVALID, EXIT_REFUSED
from spinedecomp.session.faults import FAULT_KINDS

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
SHORT = ("name: short\nregion: lumbar\nmode: intermittent\nmax_force: {value: 35, unit: '%bw'}\n"
         "hold_s: 15\nrest_s: 8\nramp_s: 6\nduration_min: 1\nangle_deg: 15\n")


@pytest.fixture(autouse=True)
def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # _register_all() twice would register every sub-command twice.
    if not any(g.name == "session" for g in app.registered_groups):
        _register_all()
    monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")


@pytest.fixture
def short(tmp_path: Path) -> Path:
    p = tmp_path / "short.yaml"
    p.write_text(SHORT)
    return p


def _simulate(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    r = runner.invoke(app, ["session", "simulate", "-w", "80", "--no-store", *args])
    summary = json.loads(r.stdout) if r.stdout.strip().startswith("{") else None
    return r.exit_code, summary, " ".join(r.stderr.split())


def test_the_codes_are_distinct_and_keep_2_for_usage_errors() -> None:
    assert (EXIT_COMPLETED, EXIT_INVALID, EXIT_ABORTED, EXIT_REFUSED) == (0, 2, 3, 4)
    # click's own usage error (an unknown option) is 2, as invalid values are
    code, _, err = _simulate("-p", "lumbar-static", "--no-such-option")
    assert code == 2 and "No such option" in err


def test_completed_exits_0(short: Path) -> None:
    code, s, _ = _simulate("-p", str(short), "--json")
    assert s is not None and s["end_state"] == "completed"
    assert code == EXIT_COMPLETED


@pytest.mark.parametrize("json_flag", [["--json"], []], ids=["json", "text"])
def test_an_aborted_session_exits_3(short: Path, json_flag: list[str]) -> None:
    # the issue: an aborted session exited 0 with --json (scripts and CI could not tell)
    code, s, _ = _simulate("-p", str(short), "--fault", "20:patient-switch", *json_flag)
    assert code == EXIT_ABORTED
    if json_flag:
        assert s is not None and s["end_state"] == "aborted"
        assert s["alarms"][0]["kind"] == "patient-switch"


def test_the_issues_double_crash_case_exits_3() -> None:
    code, s, _ = _simulate("-p", "lumbar-intermittent", "--fault", "30:controller-crash",
                           "--fault", "30.3:controller-crash", "--json")
    assert s is not None and s["end_state"] == "aborted"
    assert code == EXIT_ABORTED


@pytest.mark.parametrize(("fault", "reason"), [
    ("0:switch-unplugged", "patient stop switch"),
    ("0:loadcell-offset:a:45", "load cell A reads 45.0 N"),
])
def test_a_session_refused_at_set_up_exits_4(short: Path, fault: str, reason: str) -> None:
    code, s, err = _simulate("-p", str(short), "--fault", fault, "--json")
    assert code == EXIT_REFUSED
    assert s is None and "cannot start" in err and reason in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["--fault", "30:harness-detach:nan"],
    ["--fault", "10:wobble"],
    ["--edit", "10:colour=3"],
    ["--speed", "fast"],
])
def test_invalid_input_exits_2_before_anything_runs(short: Path, args: list[str]) -> None:
    code, s, err = _simulate("-p", str(short), "--json", *args)
    assert code == EXIT_INVALID and s is None and "error:" in err


def test_an_invalid_protocol_file_exits_2(tmp_path: Path) -> None:
    p = tmp_path / "bool.yaml"
    p.write_text(SHORT + "first_session: 1\n")
    code, s, err = _simulate("-p", str(p), "--json")
    assert code == EXIT_INVALID and s is None and "first_session" in err


def test_help_and_docs_list_the_exit_codes() -> None:
    r = runner.invoke(app, ["session", "simulate", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    for line in ("0 completed", "2 not started", "3 aborted", "4 refused at set-up",
                 "5 completed, but the record is not"):
        assert line in text, line
    doc = (ROOT / "docs" / "control.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Exit codes"):]
    for code, word in ((0, "completed"), (2, "not started"), (3, "aborted"),
                       (4, "refused at set-up"), (5, "completed but not stored")):
        assert f"| {code} | **{word}**" in section


# Faults injected at set-up time would be refusals (exit 4, no summary): start at 5 s.
_KINDS = sorted(FAULT_KINDS)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(faults=st.lists(st.tuples(st.floats(5.0, 50.0), st.sampled_from([*_KINDS, "none"]),
                                 st.sampled_from(["a", "b"])), max_size=2))
def test_the_exit_code_follows_the_end_state(short: Path,
                                             faults: list[tuple[float, str, str]]) -> None:
    args: list[str] = []
    for t, kind, ch in faults:
        if kind != "none":
            args += ["--fault", f"{t:.3f}:{kind}" + (f":{ch}" if FAULT_KINDS[kind].needs_channel
                                                     else "")]
    code, s, err = _simulate("-p", str(short), "--json", *args)
    assert s is not None, err
    assert s["end_state"] in ("completed", "aborted")
    assert code == (EXIT_COMPLETED if s["end_state"] == "completed" else EXIT_ABORTED)
