"""`spinedecomp screen`: text and JSON output, and clear errors without tracebacks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import yaml
from clinic_testdata import EXAMPLES, candidate_data
from typer.testing import CliRunner

from spinedecomp.cli import app as app_module
from spinedecomp.cli import screen as screen_module


def _registered_app() -> typer.Typer:
    app = app_module.app
    # _register_all() adds every sub-command; calling it twice would register them twice.
    if not any(c.name == "screen" for c in app.registered_commands):
        app_module._register_all()
    return app


APP = _registered_app()
RUNNER = CliRunner()


def run(*args: str) -> Any:
    command = typer.main.get_command(APP)
    # With a single registered command typer collapses the group; keep the call shape right.
    argv = ["screen", *args] if isinstance(command, typer.core.TyperGroup) else list(args)
    return RUNNER.invoke(APP, argv)


def write(tmp_path: Path, data: Any, name: str = "intake.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_register_is_idempotent() -> None:
    before = len(APP.registered_commands)
    screen_module.register(APP)
    assert len(APP.registered_commands) == before
    assert [c.name for c in APP.registered_commands].count("screen") == 1


EXPECTED_TEXT = {
    "clear_candidate_lumbar.yaml": "Decision: candidate",
    "pregnant_patient.yaml": "Decision: not a candidate",
    "no_conservative_care.yaml": "Decision: needs more information",
    "cervical_radiculopathy.yaml": "Decision: candidate",
    "peripheral_neuropathy.yaml": "Decision: candidate",
    "cauda_equina_red_flag.yaml": "Decision: urgent referral",
    "escalation_after_both.yaml": "Decision: not a candidate",
    "no_imaging.yaml": "Decision: needs more information",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_screen_every_example(name: str) -> None:
    result = run(str(EXAMPLES / name))
    assert result.exit_code == 0, result.output
    assert EXPECTED_TEXT[name] in result.output
    assert "Patient summary" in result.output
    assert "Traceback" not in result.output


def test_candidate_text_shows_plan_cost_and_summary() -> None:
    result = run(str(EXAMPLES / "clear_candidate_lumbar.yaml"))
    out = result.output
    assert "Course plan: 25 sessions over 8 weeks" in out
    assert "first-session-conservative" in out
    assert "222.4 N" in out
    assert "R-CONFIRMED-DIAGNOSIS" in out
    assert "[supports]" in out
    assert "Cost estimate" in out and "CPT 97012" in out and "HCPCS S9090" in out
    assert "Call us now if you have" in out
    assert "20-45 minutes" in out


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_screen_json_is_one_object(name: str) -> None:
    result = run(str(EXAMPLES / name), "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert set(payload) >= {"decision", "pathway", "plan", "cost", "summary", "scores"}
    assert payload["patient_id"].startswith("example-")


def test_json_candidate_plan_numbers() -> None:
    payload = json.loads(run(str(EXAMPLES / "cervical_radiculopathy.yaml"), "--json").stdout)
    assert payload["decision"]["status"] == "candidate"
    protocol = payload["plan"]["starting_protocol"]
    assert protocol["region"] == "cervical"
    assert protocol["protocol_name"] == "cervical-intermittent"
    assert protocol["max_force_n"] == pytest.approx(44.5, abs=0.1)


def bad(tmp_path: Path, change: Any) -> Path:
    data = copy.deepcopy(candidate_data())
    change(data)
    return write(tmp_path, data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(weight_kg=-3), "weight_kg"),
        (lambda d: d["odi"].update(lifting=7), "odi.lifting"),
        (lambda d: d.pop("region"), "region"),
        (lambda d: d["diagnoses"].append({"condition": "gout"}), "diagnoses[1].condition"),
    ],
)
def test_bad_input_names_the_field(tmp_path: Path, change: Any, field: str) -> None:
    path = bad(tmp_path, change)
    result = run(str(path))
    assert result.exit_code == 2
    assert "invalid intake" in result.output
    assert f"{field}:" in result.output
    assert "Traceback" not in result.output
    json_result = run(str(path), "--json")
    assert json_result.exit_code == 2
    payload = json.loads(json_result.stdout)
    assert any(line.startswith(f"{field}:") for line in payload["details"])


def test_missing_file(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "intake file not found" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [("region: [lumbar\n", "is not valid YAML"), ("- just\n- a list\n", "must hold a YAML mapping")],
)
def test_unusable_yaml(tmp_path: Path, text: str, message: str) -> None:
    result = run(str(write(tmp_path, text)))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_internal_error_is_reported_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("rule engine exploded")

    monkeypatch.setattr(screen_module, "build_report", boom)
    path = write(tmp_path, candidate_data())
    result = run(str(path))
    assert result.exit_code == 1
    assert "internal error" in result.output and "rule engine exploded" in result.output
    assert "Traceback" not in result.output
    result = run(str(path), "--json")
    assert json.loads(result.stdout)["error"].startswith("internal error")
