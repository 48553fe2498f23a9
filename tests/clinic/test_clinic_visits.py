"""Visits: pre-session go/no-go, post-session assessment and red-flag alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.plan import ForceChange, Progression, starting_protocol
from spinedecomp.clinic.visits import (
    Alert,
    AlertLevel,
    PostSessionAssessment,
    PostSessionRecord,
    PreSessionCheck,
    VisitDecision,
    assess_post_session,
    pre_session_check,
)

Make = Callable[..., Intake]


def check(make_intake: Make, **fields: Any):  # type: ignore[no-untyped-def]
    return pre_session_check(make_intake(), PreSessionCheck(session_number=3, **fields))


def rule_ids(reasons: list[Any]) -> set[str]:
    return {r.rule_id for r in reasons}


def test_nothing_new_means_go(make_intake: Make) -> None:
    result = check(make_intake)
    assert (result.decision, result.force_change, result.alert) == (VisitDecision.GO, None, None)


@pytest.mark.parametrize("flag", ["pain", "tenderness", "swelling", "numbness", "tingling"])
def test_contact_now_red_flag_holds_and_alerts(make_intake: Make, flag: str) -> None:
    result = check(make_intake, red_flags={flag: True})
    assert result.decision is VisitDecision.HOLD
    assert result.force_change is ForceChange.STOP
    assert result.alert is not None
    assert result.alert.level is AlertLevel.CONTACT_NOW
    assert result.alert.sessions_held
    assert result.alert.red_flags == [flag]
    assert "Contact the patient now" in result.alert.message
    assert "held until a clinician reviews" in result.alert.message
    assert "seeds/000_4f6379353aa37af4.txt" in result.alert.citation
    assert "R-VISIT-CONTACT-NOW" in rule_ids(result.reasons)


def test_red_flag_answered_no_is_not_an_alert(make_intake: Make) -> None:
    result = check(make_intake, red_flags={"numbness": False, "saddle_anaesthesia": False})
    assert result.alert is None
    assert result.decision is VisitDecision.GO


@pytest.mark.parametrize("flag", ["saddle_anaesthesia", "bladder_bowel_change", "progressive_weakness"])
def test_emergency_red_flag_is_urgent_referral(make_intake: Make, flag: str) -> None:
    result = check(make_intake, red_flags={flag: True, "tingling": True})
    assert result.decision is VisitDecision.URGENT_REFERRAL
    assert result.alert is not None and result.alert.level is AlertLevel.EMERGENCY
    assert set(result.alert.red_flags) == {flag, "tingling"}
    assert "EMERGENCY" in result.alert.message
    assert {"R-VISIT-EMERGENCY", "R-VISIT-CONTACT-NOW"} <= rule_ids(result.reasons)


def test_open_hold_needs_clinician_review(make_intake: Make) -> None:
    held = check(make_intake, sessions_on_hold=True)
    assert held.decision is VisitDecision.HOLD
    assert "R-VISIT-HOLD-UNTIL-REVIEW" in rule_ids(held.reasons)
    reviewed = check(make_intake, sessions_on_hold=True, clinician_reviewed=True)
    assert reviewed.decision is VisitDecision.GO


def test_new_pregnancy_stops_the_course(make_intake: Make) -> None:
    result = check(make_intake, contraindication_changes={"pregnancy": True})
    assert result.decision is VisitDecision.HOLD
    reason = next(r for r in result.reasons if r.rule_id == "R-VISIT-CONTRAINDICATION")
    assert "absolute" in reason.message and "Pregnancy" in reason.message
    assert check(make_intake, contraindication_changes={"pregnancy": False}).decision is (
        VisitDecision.GO
    )


def test_new_relative_contraindication_needs_clearance(make_intake: Make) -> None:
    held = check(make_intake, contraindication_changes={"anticoagulation": True})
    assert held.decision is VisitDecision.HOLD
    cleared = check(
        make_intake,
        contraindication_changes={"anticoagulation": True},
        clinician_cleared=["anticoagulation"],
    )
    assert cleared.decision is VisitDecision.GO


def test_clearance_cannot_lift_an_absolute_contraindication(make_intake: Make) -> None:
    result = check(
        make_intake,
        contraindication_changes={"spinal_fracture": True},
        clinician_cleared=["spinal_fracture"],
    )
    assert result.decision is VisitDecision.HOLD


@pytest.mark.parametrize(
    ("effect", "severity", "decision", "change", "rule"),
    [
        ("soreness", "mild", VisitDecision.GO, ForceChange.HOLD, "R-VISIT-MILD-SIDE-EFFECT"),
        ("stiffness", "mild", VisitDecision.GO, ForceChange.HOLD, "R-VISIT-MILD-SIDE-EFFECT"),
        (
            "muscle_spasm",
            "moderate",
            VisitDecision.GO_REDUCED,
            ForceChange.STEP_BACK,
            "R-VISIT-MODERATE-SIDE-EFFECT",
        ),
        (
            "shooting_leg_pain",
            "mild",
            VisitDecision.GO_REDUCED,
            ForceChange.STEP_BACK,
            "R-VISIT-MODERATE-SIDE-EFFECT",
        ),
        ("headache", "severe", VisitDecision.HOLD, ForceChange.STOP, "R-VISIT-SERIOUS-SIDE-EFFECT"),
        ("worsening", "mild", VisitDecision.HOLD, ForceChange.STOP, "R-VISIT-SERIOUS-SIDE-EFFECT"),
    ],
)
def test_side_effects_since_last_session(
    make_intake: Make,
    effect: str,
    severity: str,
    decision: VisitDecision,
    change: ForceChange,
    rule: str,
) -> None:
    result = check(make_intake, side_effects_since_last=[{"effect": effect, "severity": severity}])
    assert (result.decision, result.force_change) == (decision, change)
    assert rule in rule_ids(result.reasons)
    assert result.alert is None


def test_persisting_pain_prompts_review(make_intake: Make) -> None:
    result = check(
        make_intake, side_effects_since_last=[{"effect": "persisting_pain", "severity": "mild"}]
    )
    assert "R-VISIT-PERSISTING-PAIN" in rule_ids(result.reasons)
    assert "R-VISIT-PERSISTING-PAIN" not in rule_ids(check(make_intake).reasons)


def test_pre_session_input_validation() -> None:
    with pytest.raises(ValidationError) as exc:
        PreSessionCheck(session_number=0)
    assert exc.value.errors()[0]["loc"] == ("session_number",)
    with pytest.raises(ValidationError, match="unknown side effect"):
        PreSessionCheck.model_validate(
            {"session_number": 2, "side_effects_since_last": [{"effect": "hiccups", "severity": "mild"}]}
        )
    with pytest.raises(ValidationError, match="unknown contraindication"):
        PreSessionCheck(session_number=2, contraindication_changes={"moon": True})
    with pytest.raises(ValidationError) as exc:
        PreSessionCheck.model_validate(
            {"session_number": 2, "side_effects_since_last": [{"effect": "soreness", "severity": "awful"}]}
        )
    assert exc.value.errors()[0]["loc"] == ("side_effects_since_last", 0, "severity")


# --- post-session ------------------------------------------------------------------------


def record(**fields: Any) -> PostSessionRecord:
    base: dict[str, Any] = {"session_number": 1, "pain_before": 5, "pain_after": 4}
    base.update(fields)
    return PostSessionRecord.model_validate(base)


def test_post_session_tolerated_raises_force(make_intake: Make) -> None:
    intake = make_intake(sex="female", weight_kg=80)
    used = starting_protocol(intake)
    used = used.model_copy(update={"max_force_lb": 30.0})
    result = assess_post_session(intake, record(adjuncts=["heat"]), used)
    assert result.tolerated and result.alert is None
    assert result.progression.change is ForceChange.RAISE
    assert result.progression.protocol is not None
    assert result.progression.protocol.max_force_lb == 35
    assert result.progression.protocol.session_number == 2


def test_pain_rise_of_two_points_is_not_tolerated(make_intake: Make) -> None:
    intake = make_intake()
    used = starting_protocol(intake)
    result = assess_post_session(intake, record(pain_before=4, pain_after=6), used)
    assert not result.tolerated
    assert result.pain_change == 2
    assert "R-VISIT-PAIN-INCREASE" in rule_ids(result.reasons)
    assert result.progression.change is ForceChange.STEP_BACK
    one_point = assess_post_session(intake, record(pain_before=4, pain_after=5), used)
    assert one_point.tolerated
    assert "R-VISIT-PAIN-INCREASE" not in rule_ids(one_point.reasons)


def test_patient_reported_intolerance_steps_back(make_intake: Make) -> None:
    intake = make_intake()
    result = assess_post_session(intake, record(tolerated=False), starting_protocol(intake))
    assert result.progression.change is ForceChange.STEP_BACK


def test_red_flag_after_session_alerts_and_holds(make_intake: Make) -> None:
    intake = make_intake()
    result = assess_post_session(
        intake, record(red_flags={"numbness": True}), starting_protocol(intake)
    )
    assert result.alert is not None and result.alert.level is AlertLevel.CONTACT_NOW
    assert result.progression.change is ForceChange.STOP
    assert result.progression.protocol is None


def test_serious_side_effect_after_session_holds(make_intake: Make) -> None:
    intake = make_intake()
    result = assess_post_session(
        intake,
        record(side_effects=[{"effect": "worsening", "severity": "moderate"}]),
        starting_protocol(intake),
    )
    assert result.alert is None
    assert result.progression.change is ForceChange.STOP
    assert result.progression.protocol is None


def test_mild_side_effect_after_session_holds_force(make_intake: Make) -> None:
    intake = make_intake(sex="male", weight_kg=100)
    used = starting_protocol(intake).model_copy(update={"session_number": 4, "max_force_lb": 60.0})
    result = assess_post_session(
        intake,
        record(session_number=4, side_effects=[{"effect": "soreness", "severity": "mild"}]),
        used,
    )
    assert result.progression.change is ForceChange.HOLD
    assert result.progression.protocol is not None
    assert result.progression.protocol.max_force_lb == 60


def test_record_validation(make_intake: Make) -> None:
    with pytest.raises(ValidationError) as exc:
        record(pain_after=12)
    assert exc.value.errors()[0]["loc"] == ("pain_after",)
    with pytest.raises(ValidationError, match="unknown adjunct"):
        record(adjuncts=["magnets"])
    with pytest.raises(ValidationError, match="unknown red flag"):
        record(red_flags={"sneezing": True})
    intake = make_intake()
    with pytest.raises(ValueError, match="session 1, record is for session 2"):
        assess_post_session(intake, record(session_number=2), starting_protocol(intake))


def test_assessment_cannot_plan_past_an_alert(make_intake: Make) -> None:
    protocol = starting_protocol(make_intake())
    alert = Alert(
        level=AlertLevel.CONTACT_NOW, message="call", red_flags=["pain"], citation=["x"]
    )
    with pytest.raises(ValidationError, match="alert is open"):
        PostSessionAssessment(
            session_number=1,
            pain_change=0,
            tolerated=True,
            alert=alert,
            reasons=[],
            progression=Progression(change=ForceChange.HOLD, protocol=protocol, reasons=[]),
        )
