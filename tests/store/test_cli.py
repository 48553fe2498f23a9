"""The store's CLI: db upgrade, patient add|list|show, screen --patient, session simulate
--patient, session list|show|export, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.reports.export import read_telemetry
from spinedecomp.store import migrate
from spinedecomp.store.api import Store
from spinedecomp.store.settings import StoreSettings
from tests.pgserver import PgServer
from tests.store.conftest import new_pg_database

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "intakes" / "clear_candidate_lumbar.yaml"
_register_all()


@pytest.fixture
def cli_env(engine_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[StoreSettings]:
    """SPINEDECOMP_* pointing at an empty database (PostgreSQL: not even migrated)."""
    monkeypatch.setenv("SPINEDECOMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPINEDECOMP_USER", "dr.cli")
    monkeypatch.chdir(tmp_path)
    name: str | None = None
    server: PgServer | None = None
    if engine_name == "sqlite":
        monkeypatch.delenv("SPINEDECOMP_DATABASE_URL", raising=False)
    else:
        server = request.getfixturevalue("pg_server")
        name, url = new_pg_database(server)
        monkeypatch.setenv("SPINEDECOMP_DATABASE_URL", url)
    try:
        yield StoreSettings()
    finally:
        if server is not None and name is not None:
            server.drop_database(name)


def cli(*args: str, code: int = 0) -> str:
    """Run the CLI; stdout on success, everything (the error is on stderr) otherwise."""
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, (args, res.output, res.exception)
    return res.stdout if code == 0 else res.output


def test_clinic_workflow_through_the_cli(cli_env: StoreSettings, engine_name: str, tmp_path: Path) -> None:
    if engine_name == "postgresql":
        assert "db upgrade" in cli("patient", "list", code=2)  # a server's schema is upgraded on purpose
    assert f"-> {migrate.head_revision()}" in cli("db", "upgrade")
    assert "up to date" in cli("db", "upgrade")
    assert json.loads(cli("db", "status", "--json"))["up_to_date"] is True
    cli("patient", "add", "--code", "P-7", "--name", "Bo Example", "--birth-date", "1960-01-31",
        "--weight-kg", "90", "--reason", "referral")
    assert "already in use" in cli("patient", "add", "--code", "P-7", "--name", "X", code=2)
    assert "--birth-date" in cli("patient", "add", "--code", "P-8", "--name", "X", "--birth-date",
                                 "31/01/1960", code=2)
    [p] = json.loads(cli("patient", "list", "--json"))
    assert (p["code"], p["body_weight_kg"], p["birth_date"]) == ("P-7", 90.0, "1960-01-31")

    # screening stored for the patient
    cli("screen", str(EXAMPLE), "--patient", "P-7")
    # a short session for the patient, and one without a patient
    protocol = tmp_path / "short.json"
    protocol.write_text(json.dumps({"name": "short", "region": "lumbar", "mode": "intermittent",
                                    "max_force": {"value": 35, "unit": "%bw"}, "hold_s": 20,
                                    "rest_s": 10, "ramp_s": 8, "duration_min": 1, "angle_deg": 15}))
    summary = json.loads(cli("session", "simulate", "-p", str(protocol), "-w", "90", "--patient", "P-7",
                             "--edit", "20:max_force_lb=60", "--json"))
    cli("session", "simulate", "-p", str(protocol), "-w", "70", "--json")
    assert "no patient 'nobody'" in cli("session", "simulate", "-p", str(protocol), "-w", "70",
                                        "--patient", "nobody", code=2)

    listed = json.loads(cli("session", "list", "--json"))
    assert [(s["id"], s["patient_code"], s["state"]) for s in listed] == [
        (2, "demo-anonymous", "completed"), (1, "P-7", "completed")]
    assert [s["id"] for s in json.loads(cli("session", "list", "--patient", "P-7", "--json"))] == [1]

    shown = json.loads(cli("session", "show", "1", "--json"))
    assert shown["session"]["summary"] == summary
    assert shown["patient_code"] == "P-7" and [w["trigger"] for w in shown["windows"]][:2] == [
        "confirm", "edit"]
    text = cli("session", "show", "1", "--plot", "--out", str(tmp_path / "r"))
    assert "black box" in text and (tmp_path / "r" / "session-1.png").stat().st_size > 10_000
    assert "no session 9" in cli("session", "show", "9", code=2)

    pfile = json.loads(cli("patient", "show", "P-7", "--json"))
    assert [d["outcome"] for d in pfile["decisions"]] == ["candidate"]
    assert len(pfile["plans"]) == 1 and len(pfile["costs"]) == 1 and len(pfile["intakes"]) == 1
    assert [s["id"] for s in pfile["sessions"]] == [1]

    # export: the same numbers as in the database
    cli("session", "export", "1", "--format", "parquet", "--out", str(tmp_path / "s1.parquet"))
    cli("session", "export", "1", "--format", "csv", "--stream", "blackbox", "--out",
        str(tmp_path / "s1.csv"))
    with Store.open(cli_env) as store, store.unit("t") as uow:
        clinical = uow.telemetry.clinical(1)
        full = uow.telemetry.fullrate(1)
        actors = {(e.entity, e.actor) for e in uow.audit.entries()}
    assert np.array_equal(read_telemetry(tmp_path / "s1.parquet"), clinical, equal_nan=True)
    from_csv = read_telemetry(tmp_path / "s1.csv")
    assert from_csv.shape == full.shape and np.allclose(from_csv, full, rtol=1e-5, equal_nan=True)
    n = int(summary["samples"])  # every 10th sample of the 1 kHz session, and the last one
    assert clinical.shape[0] == len(range(0, n, 10)) + ((n - 1) % 10 != 0)
    # every change is the CLI user's, in the audit log
    assert {a for _, a in actors} == {"dr.cli"}
    assert {e for e, _ in actors} == {"patient", "intake", "screening_decision", "course_plan",
                                      "cost_estimate", "session"}
