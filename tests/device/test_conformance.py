"""The conformance suite against real tables on loopback: the reference table and the served
simulator pass every rule; a table broken on purpose fails the rule it breaks, and the CLI
says so with a non-zero exit. No mocks: every rule talks TCP to a pymodbus server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.device import physics as ph
from spinedecomp.device.conformance import RULE_NAMES, RuleResult, run_conformance
from spinedecomp.device.reference_table import ReferenceServer, ReferenceTable
from spinedecomp.device.served import ServedSimulator

from .helpers import MODEL, SERVED_ANGLE_DEG, ServeProcess

runner = CliRunner()
WATCHDOG_RULES = {"watchdog-release", "watchdog-same-heartbeat", "watchdog-latched"}
# The rules' watchdog: long enough that a stall of this (shared, loaded) test process between
# two heartbeats does not release the table in the middle of a rule.
WD = 300


@pytest.fixture(scope="module", autouse=True)
def _cli() -> None:
    _register_all()


def failures(results: list[RuleResult]) -> dict[str, str]:
    """Rule name -> detail of every failed rule."""
    return {r.rule: r.detail for r in results if not r.passed}


@pytest.fixture()
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer(ReferenceTable()) as srv:
        yield srv


def test_the_reference_table_passes_every_rule(reference: ReferenceServer) -> None:
    results = run_conformance("127.0.0.1", reference.port, watchdog_ms=WD)
    assert [r.rule for r in results] == list(RULE_NAMES)
    assert failures(results) == {}
    limits = next(r for r in results if r.rule == "limits")
    assert "FORCE_LIMIT" in limits.detail  # the stiff default load meets the force limit


def test_the_served_simulator_passes_every_rule() -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        with ServedSimulator(MODEL, angle_deg=SERVED_ANGLE_DEG) as sim:
            # The simulated actuator turns at 2 deg/s; the clamp rule waits for it to reach
            # both limits, so turn it faster (the rule is the same at any rate).
            sim.table.set_param(ph.P_ANGLE_RATE, 20.0)
            results = run_conformance("127.0.0.1", sim.port, watchdog_ms=WD)
    finally:
        sys.setswitchinterval(old)
    assert failures(results) == {}
    assert len(results) == len(RULE_NAMES)


def test_a_table_without_a_watchdog_fails_the_watchdog_rules_and_only_those() -> None:
    with ReferenceServer(ReferenceTable(watchdog=False)) as srv:
        results = run_conformance("127.0.0.1", srv.port, watchdog_ms=WD)
    failed = failures(results)
    assert set(failed) == WATCHDOG_RULES, failed
    assert "no release" in failed["watchdog-release"]


def test_a_table_that_does_not_clamp_the_angle_fails_the_clamp_rule() -> None:
    # ANGLE_MIN/ANGLE_MAX advertised narrower than what the actuator does: the table moves
    # beyond its own declared limits.
    table = ReferenceTable(angle_deg=15.0, angle_rate_deg_s=40.0)
    table.angle_max_deg = 60.0  # the actuator's real clamp, wider than the identity says
    table.angle_min_deg = -30.0
    with ReferenceServer(table) as srv:
        results = run_conformance("127.0.0.1", srv.port, only=("angle-clamp",))
    failed = failures(results)
    assert set(failed) == {"angle-clamp"}
    assert "the angle reached" in failed["angle-clamp"]


def test_travel_end_stops_the_pull_and_is_not_latched() -> None:
    # A soft load: the cable reaches the end of travel long before the force limit.
    with ReferenceServer(ReferenceTable(stiffness_n_per_mm=0.5, velocity_max_mm_s=150.0)) as srv:
        results = run_conformance("127.0.0.1", srv.port, only=("limits",), watchdog_ms=WD)
    assert failures(results) == {}
    assert "TRAVEL_MAX" in results[0].detail and "not latched" in results[0].detail


def test_served_travel_end_over_the_wire() -> None:
    with ServedSimulator(MODEL, angle_deg=SERVED_ANGLE_DEG) as sim:
        # A harness far looser than the cable is long: the pull meets the end of travel.
        sim.table.set_param(ph.P_SLACK, 1000.0)
        sim.table.set_param(ph.P_VMAX, 150.0)
        results = run_conformance("127.0.0.1", sim.port, only=("limits",), watchdog_ms=WD)
    assert failures(results) == {}
    assert "TRAVEL_MAX" in results[0].detail


def test_served_without_switch_prompt_ignores_the_bit() -> None:
    with ServedSimulator(MODEL, angle_deg=SERVED_ANGLE_DEG, switch_prompt=False) as sim:
        results = run_conformance("127.0.0.1", sim.port, only=("switch-prompt",))
    assert failures(results) == {}
    assert "not advertised" in results[0].detail


def test_an_unreachable_table_fails_every_rule() -> None:
    with ReferenceServer(ReferenceTable()) as srv:
        port = srv.port
    results = run_conformance("127.0.0.1", port, timeout_s=0.2, only=("identity", "enable"))
    assert [r.passed for r in results] == [False, False]
    assert all("not run" in r.detail for r in results)


def test_cli_conformance_prints_each_rule_and_exits_non_zero_on_failure() -> None:
    with ReferenceServer(ReferenceTable(watchdog=False)) as srv:
        r = runner.invoke(app, ["device", "conformance", srv.url, "--rule", "identity",
                                "--rule", "watchdog-release"])
    assert r.exit_code == 1, r.output
    assert "PASS identity" in r.stdout
    assert "FAIL watchdog-release" in r.stdout
    assert "1/2 rules passed; FAILED: watchdog-release" in r.stdout
    r = runner.invoke(app, ["device", "conformance", "modbus://127.0.0.1:1?bogus=1"])
    assert r.exit_code == 2 and "unknown option 'bogus'" in r.stderr
    r = runner.invoke(app, ["device", "conformance", "modbus://127.0.0.1:1", "--rule", "nope"])
    assert r.exit_code == 2 and "unknown rule" in r.stderr


def test_cli_reference_serves_a_table_that_passes() -> None:
    cmd = [sys.executable, "-c", "from spinedecomp.cli.app import main; main()",
           "device", "reference", "--port", "0"]
    with ServeProcess.from_command(cmd) as proc:
        r = runner.invoke(app, ["device", "conformance", f"modbus://127.0.0.1:{proc.port}",
                                "--rule", "identity", "--rule", "watchdog-release", "--json"])
        assert r.exit_code == 0, r.output
        assert '"passed": true' in r.stdout
        assert proc.terminate() == 0


def test_reference_table_runs_as_a_standalone_module() -> None:
    # The maker's starting point imports nothing of spinedecomp.
    code = ("import sys, spinedecomp.device.reference_table as m; "
            "print(sorted(k for k in sys.modules if k.startswith('spinedecomp.') "
            "and k != 'spinedecomp.device.reference_table' and k != 'spinedecomp.device'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ}).stdout.strip()
    assert out == "[]"


def test_every_rule_is_documented_with_its_section() -> None:
    from pathlib import Path

    from spinedecomp.device.conformance import RULES

    text = (Path(__file__).resolve().parents[2] / "docs" / "device-protocol.md").read_text()
    for rule in RULES:
        assert f"| `{rule.name}` ({rule.section}" in text, rule.name
        assert f"### {rule.section} " in text, rule.section
