"""Every example intake in examples/intakes screens to its documented outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from clinic_testdata import EXAMPLES

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.report import ClinicReport, build_report
from spinedecomp.clinic.screening import CandidacyStatus, PathwayKind

EXPECTED: dict[str, tuple[CandidacyStatus, PathwayKind]] = {
    "clear_candidate_lumbar.yaml": (CandidacyStatus.CANDIDATE, PathwayKind.DECOMPRESSION_THEN_PT),
    "pregnant_patient.yaml": (CandidacyStatus.NOT_A_CANDIDATE, PathwayKind.CLINICIAN_REVIEW),
    "no_conservative_care.yaml": (
        CandidacyStatus.NEEDS_MORE_INFORMATION,
        PathwayKind.CONSERVATIVE_CARE_FIRST,
    ),
    "cervical_radiculopathy.yaml": (CandidacyStatus.CANDIDATE, PathwayKind.DECOMPRESSION),
    "peripheral_neuropathy.yaml": (
        CandidacyStatus.CANDIDATE,
        PathwayKind.DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS,
    ),
    "cauda_equina_red_flag.yaml": (CandidacyStatus.URGENT_REFERRAL, PathwayKind.URGENT_REFERRAL),
    "escalation_after_both.yaml": (CandidacyStatus.NOT_A_CANDIDATE, PathwayKind.ESCALATION),
    "no_imaging.yaml": (CandidacyStatus.NEEDS_MORE_INFORMATION, PathwayKind.COMPLETE_ASSESSMENT),
}


def load(path: Path) -> Intake:
    return Intake.model_validate(yaml.safe_load(path.read_text()))


def test_every_example_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_outcome(name: str) -> None:
    report = build_report(load(EXAMPLES / name))
    status, pathway = EXPECTED[name]
    assert report.decision.status is status
    assert report.pathway.kind is pathway
    assert (report.plan is not None) == (status is CandidacyStatus.CANDIDATE)
    assert (report.cost is None) == (status is CandidacyStatus.URGENT_REFERRAL)
    # The report survives storage as JSON and comes back identical.
    dumped = json.loads(json.dumps(report.model_dump(mode="json")))
    assert ClinicReport.model_validate(dumped) == report


def test_clear_candidate_details() -> None:
    report = build_report(load(EXAMPLES / "clear_candidate_lumbar.yaml"))
    assert report.plan is not None
    assert (report.plan.sessions, report.plan.weeks) == (25, 8)  # moderate ODI 40 %, chronic
    protocol = report.plan.starting_protocol
    assert (protocol.max_force_lb, protocol.rest_force_lb) == (50, 25)  # male cap
    assert report.cost is not None and [p.provider.value for p in report.cost.providers] == [
        "chiropractor"
    ]


def test_pregnant_patient_details() -> None:
    report = build_report(load(EXAMPLES / "pregnant_patient.yaml"))
    assert report.decision.absolute_contraindications == ["pregnancy"]


def test_cervical_example_details() -> None:
    report = build_report(load(EXAMPLES / "cervical_radiculopathy.yaml"))
    assert report.scores.ndi is not None and report.scores.ndi.points == 20
    assert report.plan is not None
    protocol = report.plan.starting_protocol
    assert (protocol.region.value, protocol.angle_deg) == ("cervical", 20)
    assert report.cost is not None and report.cost.coverage.value == "varies"


def test_cauda_equina_example_details() -> None:
    report = build_report(load(EXAMPLES / "cauda_equina_red_flag.yaml"))
    assert set(report.decision.urgent_red_flags) == {"saddle_anaesthesia", "bladder_bowel_change"}
    assert report.summary.headline.startswith("Please get emergency medical care today")


def test_escalation_example_offers_biologic_repair_for_the_tear() -> None:
    report = build_report(load(EXAMPLES / "escalation_after_both.yaml"))
    step = next(s for s in report.pathway.steps if s.id == "biologic_disc_repair")
    assert step.applicable
