"""Candidacy and pathway rules, each with both outcomes, plus hypothesis safety properties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clinic_testdata import candidate_data
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import ContraindicationKind, RedFlagKind, load_knowledge
from spinedecomp.clinic.reasons import Effect
from spinedecomp.clinic.screening import (
    CandidacyStatus,
    PathwayKind,
    ScreeningResult,
    contraindication_findings,
    screen,
    unanswered_contraindications,
)

Make = Callable[..., Intake]
KB = load_knowledge()
ABSOLUTE = [c.id for c in KB.contraindications if c.kind is ContraindicationKind.ABSOLUTE]
RELATIVE = [c.id for c in KB.contraindications if c.kind is ContraindicationKind.RELATIVE]
EMERGENCY = [r.id for r in KB.red_flags if r.kind is RedFlagKind.EMERGENCY]


def rules(result: ScreeningResult, effect: Effect | None = None) -> set[str]:
    return {
        r.rule_id for r in result.decision.reasons if effect is None or r.effect is effect
    }


def answers(**present: bool) -> dict[str, bool]:
    out = {c.id: False for c in KB.contraindications}
    out.update(present)
    return out


def test_clear_candidate(make_intake: Make) -> None:
    result = screen(make_intake())
    assert result.decision.status is CandidacyStatus.CANDIDATE
    assert result.pathway.kind is PathwayKind.DECOMPRESSION_THEN_PT
    assert {r.effect for r in result.decision.reasons} <= {Effect.SUPPORTS, Effect.CAUTION}


def test_every_reason_cites_known_sources(make_intake: Make) -> None:
    for intake in (
        make_intake(),
        make_intake(red_flags={"saddle_anaesthesia": True}),
        make_intake(contraindications=answers(pregnancy=True)),
        make_intake(conservative_care=[]),
    ):
        result = screen(intake)
        for reason in [*result.decision.reasons, *result.pathway.reasons]:
            assert reason.citation, reason.rule_id
            assert all(s in KB.sources for s in reason.citation), reason
            KB.rule(reason.rule_id)  # exists


def test_statements_always_present(make_intake: Make) -> None:
    for intake in (make_intake(), make_intake(contraindications=answers(pregnancy=True))):
        ids = [s.id for s in screen(intake).decision.statements]
        assert ids == ["not_surgery", "annular_tear"]
    text = " ".join(s.text for s in screen(make_intake()).decision.statements)
    assert "not spinal decompression surgery" in text
    assert "seals a tear" in text


# --- R-URGENT-RED-FLAG / R-RED-FLAG-SCREEN ----------------------------------------------


@pytest.mark.parametrize("flag", EMERGENCY)
def test_urgent_red_flag_means_urgent_referral(make_intake: Make, flag: str) -> None:
    result = screen(make_intake(red_flags={f: f == flag for f in EMERGENCY}))
    assert result.decision.status is CandidacyStatus.URGENT_REFERRAL
    assert result.decision.urgent_red_flags == [flag]
    assert result.pathway.kind is PathwayKind.URGENT_REFERRAL
    assert "R-URGENT-RED-FLAG" in rules(result, Effect.URGENT)


def test_urgent_referral_wins_over_absolute_contraindication(make_intake: Make) -> None:
    result = screen(
        make_intake(
            red_flags={"saddle_anaesthesia": True}, contraindications=answers(spinal_tumour=True)
        )
    )
    assert result.decision.status is CandidacyStatus.URGENT_REFERRAL


def test_no_urgent_red_flag_no_urgent_reason(make_intake: Make) -> None:
    assert "R-URGENT-RED-FLAG" not in rules(screen(make_intake()))


def test_unanswered_red_flag_needs_information(make_intake: Make) -> None:
    result = screen(make_intake(red_flags={"saddle_anaesthesia": False}))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-RED-FLAG-SCREEN" in rules(result, Effect.NEEDS_INFORMATION)
    assert result.pathway.kind is PathwayKind.COMPLETE_ASSESSMENT
    assert "R-RED-FLAG-SCREEN" not in rules(screen(make_intake()))


# --- contraindications -----------------------------------------------------------------


@pytest.mark.parametrize("cid", ABSOLUTE)
def test_each_absolute_contraindication_excludes(make_intake: Make, cid: str) -> None:
    result = screen(make_intake(contraindications=answers(**{cid: True})))
    assert result.decision.status is CandidacyStatus.NOT_A_CANDIDATE
    assert result.decision.absolute_contraindications == [cid]
    assert "R-ABSOLUTE-CONTRAINDICATION" in rules(result, Effect.EXCLUDES)
    assert result.pathway.kind is PathwayKind.CLINICIAN_REVIEW
    reason = result.decision.reasons_for("R-ABSOLUTE-CONTRAINDICATION")[0]
    # The reason cites the contraindication's own sources as well as the rule's.
    assert set(KB.contraindication(cid).source) <= set(reason.citation)


def test_no_contraindication_no_exclusion(make_intake: Make) -> None:
    assert "R-ABSOLUTE-CONTRAINDICATION" not in rules(screen(make_intake()))


def test_test_finding_overrides_a_no_answer(make_intake: Make) -> None:
    intake = make_intake(
        diagnostic_results=[
            {"test": "mri", "supports": ["disc_herniation"]},
            {"test": "bone_scan", "shows": ["spinal_fracture"]},
        ]
    )
    assert intake.contraindications["spinal_fracture"] is False
    result = screen(intake)
    assert result.decision.status is CandidacyStatus.NOT_A_CANDIDATE
    assert result.decision.contraindications[0].found_by == ["bone_scan finding"]


def test_hardware_from_surgical_history(make_intake: Make) -> None:
    intake = make_intake(
        prior_surgeries=[{"description": "L4-L5 fusion", "region": "lumbar", "hardware": True}]
    )
    findings = {f.id for f in contraindication_findings(intake)}
    assert findings == {"spinal_hardware", "prior_spinal_surgery"}
    assert screen(intake).decision.status is CandidacyStatus.NOT_A_CANDIDATE


def test_surgery_in_the_other_region_does_not_count(make_intake: Make) -> None:
    intake = make_intake(
        prior_surgeries=[{"description": "C5-C6 fusion", "region": "cervical", "hardware": True}]
    )
    assert contraindication_findings(intake) == []
    assert screen(intake).decision.status is CandidacyStatus.CANDIDATE


@pytest.mark.parametrize("cid", RELATIVE)
def test_relative_contraindication_needs_clearance(make_intake: Make, cid: str) -> None:
    result = screen(make_intake(contraindications=answers(**{cid: True})))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-RELATIVE-CONTRAINDICATION" in rules(result, Effect.NEEDS_INFORMATION)
    cleared = screen(make_intake(contraindications=answers(**{cid: True}), clinician_cleared=[cid]))
    assert cleared.decision.status is CandidacyStatus.CANDIDATE
    assert "R-RELATIVE-CONTRAINDICATION" in rules(cleared, Effect.CAUTION)


def test_unanswered_contraindication_needs_information(
    make_intake: Make, answers_without: Callable[[str], dict[str, bool]]
) -> None:
    intake = make_intake(contraindications=answers_without("severe_osteoporosis"))
    assert unanswered_contraindications(intake) == ["severe_osteoporosis"]
    result = screen(intake)
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    reason = result.decision.reasons_for("R-CONTRAINDICATION-SCREEN")[0]
    assert "severe (advanced) osteoporosis" in reason.message
    assert "R-CONTRAINDICATION-SCREEN" not in rules(screen(make_intake()))


def test_pregnancy_not_asked_of_men(
    make_intake: Make, answers_without: Callable[[str], dict[str, bool]]
) -> None:
    male = make_intake(sex="male", contraindications=answers_without("pregnancy"))
    assert unanswered_contraindications(male) == []
    assert screen(male).decision.status is CandidacyStatus.CANDIDATE
    female = make_intake(sex="female", contraindications=answers_without("pregnancy"))
    assert unanswered_contraindications(female) == ["pregnancy"]


# --- diagnoses -------------------------------------------------------------------------


def test_no_diagnosis_needs_information(make_intake: Make) -> None:
    result = screen(make_intake(diagnoses=[]))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-DIAGNOSIS-REQUIRED" in rules(result, Effect.NEEDS_INFORMATION)
    assert "R-DIAGNOSIS-REQUIRED" not in rules(screen(make_intake()))


def test_mechanical_pain_only_goes_to_physical_therapy(make_intake: Make) -> None:
    result = screen(make_intake(diagnoses=[{"condition": "mechanical_back_pain"}]))
    assert result.decision.status is CandidacyStatus.NOT_A_CANDIDATE
    assert "R-PT-PREFERRED" in rules(result, Effect.EXCLUDES)
    assert result.pathway.kind is PathwayKind.PHYSICAL_THERAPY
    mixed = screen(
        make_intake(
            diagnoses=[{"condition": "mechanical_back_pain"}, {"condition": "disc_herniation"}]
        )
    )
    assert mixed.decision.status is CandidacyStatus.CANDIDATE
    assert "R-PT-PREFERRED" not in rules(mixed)


def test_unconfirmed_diagnosis_needs_information(make_intake: Make) -> None:
    result = screen(make_intake(diagnostic_results=[]))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    reason = result.decision.reasons_for("R-CONFIRMED-DIAGNOSIS")[0]
    assert reason.effect is Effect.NEEDS_INFORMATION
    assert "Magnetic resonance imaging (MRI)" in reason.message


def test_test_that_cannot_confirm_does_not_count(make_intake: Make) -> None:
    # An X-ray does not show a disc herniation (seed 000: X-rays look at bones).
    x_ray = [{"test": "x_ray", "supports": ["disc_herniation"]}]
    result = screen(make_intake(diagnostic_results=x_ray))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    diskography = [{"test": "diskography", "supports": ["disc_herniation"]}]
    confirmed = screen(make_intake(diagnostic_results=diskography))
    assert confirmed.decision.status is CandidacyStatus.CANDIDATE
    assert "R-CONFIRMED-DIAGNOSIS" in rules(confirmed, Effect.SUPPORTS)


def test_nerve_tests_alone_need_imaging(make_intake: Make) -> None:
    emg_only = screen(
        make_intake(
            diagnoses=[{"condition": "radiculopathy"}],
            diagnostic_results=[{"test": "emg", "supports": ["radiculopathy"]}],
        )
    )
    assert emg_only.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    reasons = emg_only.decision.reasons_for("R-CONFIRMED-DIAGNOSIS")
    assert [r.effect for r in reasons] == [Effect.SUPPORTS, Effect.NEEDS_INFORMATION]
    assert "Confirmed only by nerve tests" in reasons[1].message
    assert "Magnetic resonance imaging (MRI)" in reasons[1].message
    with_mri = screen(
        make_intake(
            diagnoses=[{"condition": "radiculopathy"}],
            diagnostic_results=[
                {"test": "emg", "supports": ["radiculopathy"]},
                {"test": "mri", "supports": ["radiculopathy"]},
            ],
        )
    )
    assert with_mri.decision.status is CandidacyStatus.CANDIDATE


def test_neuropathy_needs_a_spinal_cause(make_intake: Make) -> None:
    alone = screen(
        make_intake(
            diagnoses=[{"condition": "peripheral_neuropathy_spinal"}],
            diagnostic_results=[{"test": "ncv", "supports": ["peripheral_neuropathy_spinal"]}],
        )
    )
    assert alone.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-NEUROPATHY-SPINAL-CAUSE" in rules(alone, Effect.NEEDS_INFORMATION)
    with_cause = screen(
        make_intake(
            diagnoses=[
                {"condition": "peripheral_neuropathy_spinal"},
                {"condition": "spinal_stenosis"},
            ],
            diagnostic_results=[
                {"test": "ncv", "supports": ["peripheral_neuropathy_spinal"]},
                {"test": "mri", "supports": ["spinal_stenosis"]},
            ],
        )
    )
    assert with_cause.decision.status is CandidacyStatus.CANDIDATE
    assert "R-NEUROPATHY-SPINAL-CAUSE" not in rules(with_cause)
    assert with_cause.pathway.kind is PathwayKind.DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS
    assert [s.id for s in with_cause.pathway.steps][:2] == [
        "decompression_course",
        "neuropathy_adjuncts",
    ]


def test_connective_tissue_diagnosis_raises_a_caution(make_intake: Make) -> None:
    result = screen(
        make_intake(
            diagnoses=[{"condition": "recurrent_disc_connective_tissue"}],
            diagnostic_results=[{"test": "mri", "supports": ["recurrent_disc_connective_tissue"]}],
        )
    )
    assert result.decision.status is CandidacyStatus.CANDIDATE
    caution = result.decision.reasons_for("R-DIAGNOSIS-CAUTION")
    assert caution and "spinal instability" in caution[0].message
    assert "R-DIAGNOSIS-CAUTION" not in rules(screen(make_intake()))


# --- conservative care, previous courses -------------------------------------------------


def test_conservative_care_not_tried(make_intake: Make) -> None:
    result = screen(make_intake(conservative_care=[]))
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-CONSERVATIVE-FIRST" in rules(result, Effect.NEEDS_INFORMATION)
    assert result.pathway.kind is PathwayKind.CONSERVATIVE_CARE_FIRST
    assert "R-CONSERVATIVE-FIRST" in rules(screen(make_intake()), Effect.SUPPORTS)


def test_conservative_care_working(make_intake: Make) -> None:
    result = screen(
        make_intake(conservative_care=[{"option": "physical_therapy", "weeks": 6, "result": "helped"}])
    )
    assert result.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "R-CONSERVATIVE-WORKING" in rules(result)
    assert result.pathway.kind is PathwayKind.CONSERVATIVE_CARE_FIRST
    assert "R-CONSERVATIVE-WORKING" not in rules(screen(make_intake()))


def test_missing_care_and_imaging_means_complete_assessment(make_intake: Make) -> None:
    result = screen(make_intake(conservative_care=[], diagnostic_results=[]))
    assert result.pathway.kind is PathwayKind.COMPLETE_ASSESSMENT
    assert {"R-CONSERVATIVE-FIRST", "R-CONFIRMED-DIAGNOSIS"} <= {
        r.rule_id for r in result.pathway.reasons
    }


def test_failed_decompression_without_pt_goes_to_pt(make_intake: Make) -> None:
    care = [
        {"option": "rest", "weeks": 2, "result": "no_change"},
        {"option": "spinal_decompression", "weeks": 6, "result": "no_change"},
    ]
    result = screen(make_intake(conservative_care=care))
    assert result.decision.status is CandidacyStatus.NOT_A_CANDIDATE
    assert "R-DECOMPRESSION-TRIED" in rules(result, Effect.EXCLUDES)
    assert result.pathway.kind is PathwayKind.PHYSICAL_THERAPY
    helped = [*care[:1], {"option": "spinal_decompression", "weeks": 6, "result": "helped"}]
    assert "R-DECOMPRESSION-TRIED" not in rules(screen(make_intake(conservative_care=helped)))


@pytest.mark.parametrize("tear", [True, False])
def test_escalation_after_decompression_and_pt(make_intake: Make, tear: bool) -> None:
    care = [
        {"option": "physical_therapy", "weeks": 12, "result": "partial"},
        {"option": "spinal_decompression", "weeks": 6, "result": "partial"},
    ]
    results = [{"test": "mri", "supports": ["disc_herniation"], "annular_tear": tear}]
    result = screen(make_intake(conservative_care=care, diagnostic_results=results))
    assert result.decision.status is CandidacyStatus.NOT_A_CANDIDATE
    assert "R-ESCALATE" in rules(result, Effect.EXCLUDES)
    assert result.pathway.kind is PathwayKind.ESCALATION
    steps = {s.id: s.applicable for s in result.pathway.steps}
    assert steps == {
        "medication_injections": True,
        "surgical_consult": True,
        "biologic_disc_repair": tear,
    }


def test_no_escalation_without_failed_decompression(make_intake: Make) -> None:
    care = [{"option": "physical_therapy", "weeks": 12, "result": "partial"}]
    result = screen(make_intake(conservative_care=care))
    assert "R-ESCALATE" not in rules(result)
    assert result.pathway.kind is PathwayKind.DECOMPRESSION


# --- baseline measure --------------------------------------------------------------------


def test_missing_baseline_measure(make_intake: Make) -> None:
    lumbar = screen(make_intake(odi=None))
    assert lumbar.decision.status is CandidacyStatus.NEEDS_MORE_INFORMATION
    assert "Oswestry" in lumbar.decision.reasons_for("R-BASELINE-MEASURE")[0].message
    cervical = screen(make_intake(cervical=True, ndi=None))
    assert "Neck Disability" in cervical.decision.reasons_for("R-BASELINE-MEASURE")[0].message
    assert "R-BASELINE-MEASURE" not in rules(screen(make_intake(cervical=True)))


# --- pathway choice for candidates ---------------------------------------------------------


def test_pathway_sequential_vs_pt_done(make_intake: Make) -> None:
    sequential = screen(make_intake())
    assert sequential.pathway.kind is PathwayKind.DECOMPRESSION_THEN_PT
    assert sequential.pathway.reasons[0].rule_id == "R-PATHWAY-SEQUENTIAL"
    pt_done = screen(
        make_intake(
            conservative_care=[{"option": "physical_therapy", "weeks": 8, "result": "no_change"}]
        )
    )
    assert pt_done.pathway.kind is PathwayKind.DECOMPRESSION
    assert pt_done.pathway.reasons[0].rule_id == "R-PATHWAY-PT-DONE"
    assert [s.id for s in pt_done.pathway.steps] == [
        "decompression_course",
        "home_exercise",
        "escalate_if_no_benefit",
    ]


# --- properties -----------------------------------------------------------------------------

# Mostly "no" answers, so that candidates are common enough for the property to bite.
_mostly_no = st.sampled_from([False, False, False, True])
_contraindication_answers = st.dictionaries(
    st.sampled_from([c.id for c in KB.contraindications]), _mostly_no, max_size=3
)
_red_flags = st.dictionaries(st.sampled_from([r.id for r in KB.red_flags]), _mostly_no, max_size=2)
_lumbar_conditions = [i.id for i in KB.indications if "lumbar" in [r.value for r in i.regions]]
_findings = st.fixed_dictionaries(
    {
        "test": st.sampled_from([t.id for t in KB.diagnostic_tests]),
        "supports": st.lists(st.sampled_from(_lumbar_conditions), max_size=2),
        "shows": st.one_of(
            st.just([]), st.just([]), st.lists(st.sampled_from([c.id for c in KB.contraindications]))
        ),
        "annular_tear": st.booleans(),
    }
)
_care = st.fixed_dictionaries(
    {
        "option": st.sampled_from([c.id for c in KB.conservative_care]),
        "weeks": st.integers(min_value=0, max_value=52),
        "result": st.sampled_from(["helped", "partial", "no_change", "no_change", "worse"]),
    }
)
_surgery = st.fixed_dictionaries(
    {
        "description": st.just("operation"),
        "region": st.sampled_from([None, "lumbar", "cervical"]),
        "hardware": st.booleans(),
    }
)


@st.composite
def intakes(draw: st.DrawFn) -> Intake:
    data: dict[str, Any] = candidate_data()
    data["sex"] = draw(st.sampled_from(["female", "male", "other"]))
    # Start from a complete "no" screen and flip or drop a few answers, so that a good
    # share of the examples are candidates and the property is not vacuous.
    answers_ = dict(data["contraindications"])
    answers_.update(draw(_contraindication_answers))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        answers_.pop(draw(st.sampled_from(sorted(answers_))))
    data["contraindications"] = answers_
    data["clinician_cleared"] = draw(st.lists(st.sampled_from(RELATIVE), max_size=2, unique=True))
    data["red_flags"] = {**data["red_flags"], **draw(_red_flags)}
    data["diagnoses"] = [{"condition": "disc_herniation"}] + [
        {"condition": c}
        for c in draw(st.lists(st.sampled_from(_lumbar_conditions), max_size=2))
    ]
    mri = {"test": "mri", "supports": ["disc_herniation"]}
    data["diagnostic_results"] = [mri, *draw(st.lists(_findings, max_size=2))]
    data["conservative_care"] = draw(st.lists(_care, min_size=1, max_size=3))
    data["prior_surgeries"] = draw(st.lists(_surgery, max_size=1))
    data["symptom_duration_weeks"] = draw(st.integers(min_value=0, max_value=300))
    if draw(st.booleans()):
        del data["odi"]
    return Intake.model_validate(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intakes())
def test_no_candidate_ever_has_an_absolute_contraindication(intake: Intake) -> None:
    result = screen(intake)
    event(result.decision.status.value)
    if result.decision.status is CandidacyStatus.CANDIDATE:
        answered_absolute = [c for c in ABSOLUTE if intake.contraindications.get(c) is True]
        found_absolute = [c for r in intake.diagnostic_results for c in r.shows if c in ABSOLUTE]
        hardware = [
            s for s in intake.prior_surgeries if s.hardware and s.region in (None, intake.region)
        ]
        assert answered_absolute == [] and found_absolute == [] and hardware == []
        assert result.decision.absolute_contraindications == []
        assert not any(intake.red_flags.get(f) for f in EMERGENCY)
        assert unanswered_contraindications(intake) == []
        assert result.pathway.kind in {
            PathwayKind.DECOMPRESSION,
            PathwayKind.DECOMPRESSION_THEN_PT,
            PathwayKind.DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS,
        }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intakes())
def test_status_follows_precedence(intake: Intake) -> None:
    result = screen(intake)
    effects = {r.effect for r in result.decision.reasons}
    status = result.decision.status
    if Effect.URGENT in effects:
        assert status is CandidacyStatus.URGENT_REFERRAL
        assert result.pathway.kind is PathwayKind.URGENT_REFERRAL
    elif Effect.EXCLUDES in effects:
        assert status is CandidacyStatus.NOT_A_CANDIDATE
    elif Effect.NEEDS_INFORMATION in effects:
        assert status is CandidacyStatus.NEEDS_MORE_INFORMATION
    else:
        assert status is CandidacyStatus.CANDIDATE
    assert result.pathway.steps, "every pathway has at least one step"
