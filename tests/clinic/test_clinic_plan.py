"""Course plan, session-1 starting protocol and force progression."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from clinic_testdata import candidate_data, cervical_data
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.plan import (
    NEWTONS_PER_LB,
    CheckpointKind,
    ForceChange,
    NotACandidateError,
    StartingProtocol,
    course_weeks,
    decide_force_change,
    force_ceiling_lb,
    next_session_protocol,
    plan_course,
    session_cap_lb,
    starting_protocol,
    weekly_frequency,
)
from spinedecomp.clinic.screening import screen
from spinedecomp.clinic.types import Chronicity, Severity

Make = Callable[..., Intake]

ODI_MILD = dict.fromkeys(candidate_data()["odi"], 1)  # 20 %
ODI_SEVERE = dict.fromkeys(candidate_data()["odi"], 3)  # 60 %


def plan_for(intake: Intake, start: date | None = None):  # type: ignore[no-untyped-def]
    return plan_course(intake, screen(intake), start)


def test_newtons_per_pound() -> None:
    assert NEWTONS_PER_LB == 4.4482216152605


@pytest.mark.parametrize(
    ("odi", "weeks", "sessions"),
    [
        (ODI_MILD, 2, 10),  # mild, acute: 15 - 5
        (ODI_MILD, 8, 15),  # mild, subacute
        (ODI_MILD, 20, 20),  # mild, chronic: 15 + 5
        (None, 8, 20),  # moderate (fixture ODI 40 %), subacute
        (ODI_SEVERE, 8, 25),  # severe, subacute
        (ODI_SEVERE, 52, 30),  # severe, chronic: 25 + 5, the seed-000 maximum
    ],
)
def test_sessions_from_severity_and_chronicity(
    make_intake: Make, odi: dict[str, int] | None, weeks: int, sessions: int
) -> None:
    overrides = {"symptom_duration_weeks": weeks}
    if odi is not None:
        overrides["odi"] = odi  # type: ignore[assignment]
    intake = make_intake(**overrides)
    plan = plan_for(intake)
    assert plan.sessions == sessions
    assert 5 <= plan.sessions <= 30
    assert sum(w.sessions for w in plan.frequency) == plan.sessions
    assert {r.rule_id for r in plan.reasons} >= {
        "R-PLAN-SESSIONS",
        "R-PLAN-WEEKS",
        "R-PLAN-SEVERITY",
        "R-PLAN-CHRONICITY",
        "R-PLAN-REASSESS",
    }


def test_severity_from_ndi_for_cervical(make_intake: Make) -> None:
    plan = plan_for(make_intake(cervical=True))
    assert plan.severity is Severity.MODERATE  # NDI 20 points
    assert plan.chronicity is Chronicity.CHRONIC


@pytest.mark.parametrize(("sessions", "weeks"), [(15, 5), (20, 7), (25, 8), (10, 4), (5, 2)])
def test_course_weeks(sessions: int, weeks: int) -> None:
    assert course_weeks(sessions) == weeks


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=5, max_value=30))
def test_frequency_tapers_and_adds_up(sessions: int) -> None:
    weeks = course_weeks(sessions)
    frequency = weekly_frequency(sessions, weeks)
    counts = [w.sessions for w in frequency]
    assert sum(counts) == sessions
    assert counts == sorted(counts, reverse=True)
    assert all(1 <= c <= 5 for c in counts)
    assert [w.week for w in frequency] == list(range(1, len(frequency) + 1))
    if 15 <= sessions <= 25:
        assert 5 <= len(frequency) <= 8  # seed 003: 15-25 sessions over 5-8 weeks
    if len(counts) >= 3:
        assert counts[0] > counts[-1]  # a real taper


def test_frequency_rejects_impossible_schedules() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        weekly_frequency(30, 2)
    with pytest.raises(ValueError, match="at least 1"):
        weekly_frequency(0, 2)


def test_checkpoints_and_dates(make_intake: Make) -> None:
    plan = plan_for(make_intake(), date(2025, 3, 3))
    kinds = [c.kind for c in plan.checkpoints]
    assert kinds == [CheckpointKind.REASSESSMENT, CheckpointKind.DISCHARGE, CheckpointKind.FOLLOW_UP]
    reassess, discharge, follow = plan.checkpoints
    assert reassess.after_session == 6
    assert reassess.week == 2  # 20 sessions: 4 + 3 in the first two weeks
    assert reassess.due_on == date(2025, 3, 10)
    assert discharge.after_session == plan.sessions and discharge.week == plan.weeks
    assert follow.week == plan.weeks + 26
    assert follow.due_on == date(2025, 3, 3) + timedelta(weeks=follow.week - 1)
    assert reassess.measures == ["NPRS", "ODI"]
    assert plan_for(make_intake()).checkpoints[0].due_on is None


def test_shortest_planned_course_still_has_session_6_reassessment(make_intake: Make) -> None:
    plan = plan_for(make_intake(odi=ODI_MILD, symptom_duration_weeks=2))
    assert (plan.sessions, plan.weeks) == (10, 4)
    assert plan.checkpoints[0].kind is CheckpointKind.REASSESSMENT
    assert plan.checkpoints[0].after_session == 6


def test_pt_course_follows_sequential_pathway(make_intake: Make) -> None:
    plan = plan_for(make_intake())
    assert plan.pt_course is not None
    assert (plan.pt_course.sessions, plan.pt_course.weeks) == (12, 8)
    assert plan.pt_course.starts_week == plan.weeks + 1
    pt_done = make_intake(
        conservative_care=[{"option": "physical_therapy", "weeks": 8, "result": "no_change"}]
    )
    assert plan_for(pt_done).pt_course is None


def test_no_plan_for_non_candidates(make_intake: Make) -> None:
    intake = make_intake(conservative_care=[])
    with pytest.raises(NotACandidateError, match="needs_more_information"):
        plan_for(intake)


# --- starting protocol -----------------------------------------------------------------


def test_lumbar_start_capped_for_men_and_women(make_intake: Make) -> None:
    man = starting_protocol(make_intake(sex="male", weight_kg=86))
    assert man.max_force_lb == 50  # 30 % x 189.6 lb = 56.9, capped at 50
    assert man.max_force_n == pytest.approx(50 * NEWTONS_PER_LB, abs=0.05)
    assert man.rest_force_lb == 25
    woman = starting_protocol(make_intake(sex="female", weight_kg=86))
    assert woman.max_force_lb == 40
    assert woman.rest_force_lb == 20
    other = starting_protocol(make_intake(sex="other", weight_kg=86))
    assert other.max_force_lb == 40  # the lower cap when sex is neither


def test_lumbar_start_from_body_weight_and_chronicity(make_intake: Make) -> None:
    acute = starting_protocol(make_intake(weight_kg=50, symptom_duration_weeks=2))
    assert acute.max_force_lb == 22  # 20 % x 110.2 lb, rounded down
    chronic = starting_protocol(make_intake(weight_kg=50, symptom_duration_weeks=30))
    assert chronic.max_force_lb == 33  # 30 % x 110.2 lb
    assert chronic.rest_force_lb == 16.5
    assert chronic.reasons[0].rule_id == "R-FORCE-LUMBAR-START"


def test_lumbar_protocol_shape(make_intake: Make) -> None:
    protocol = starting_protocol(make_intake())
    assert protocol.region.value == "lumbar"
    assert protocol.protocol_name == "first-session-conservative"
    assert protocol.session_number == 1
    assert (protocol.hold_s, protocol.rest_s, protocol.angle_deg) == (30, 15, 10)
    assert protocol.duration_min == 12
    dumped = protocol.model_dump(mode="json")
    for key in (
        "region",
        "max_force_n",
        "rest_force_n",
        "hold_s",
        "rest_s",
        "angle_deg",
        "duration_min",
        "protocol_name",
    ):
        assert key in dumped


@pytest.mark.parametrize(("level", "angle"), [("upper", 10), ("mid", 15), ("lower", 20), (None, 15)])
def test_cervical_start(make_intake: Make, level: str | None, angle: float) -> None:
    protocol = starting_protocol(make_intake(cervical=True, cervical_level=level))
    assert protocol.protocol_name == "cervical-intermittent"
    assert protocol.max_force_lb == 10
    assert protocol.rest_force_lb == 5
    assert protocol.angle_deg == angle
    assert protocol.duration_min == 10
    assert protocol.reasons[0].rule_id == "R-FORCE-CERVICAL-START"


@pytest.mark.parametrize(("kg", "ceiling"), [(70, 20), (100, 22), (140, 30), (200, 30)])
def test_cervical_ceiling(make_intake: Make, kg: float, ceiling: float) -> None:
    assert force_ceiling_lb(make_intake(cervical=True, weight_kg=kg)) == pytest.approx(
        ceiling, abs=0.1
    )


def test_lumbar_ceiling_and_caps(make_intake: Make) -> None:
    intake = make_intake(sex="male", weight_kg=100)
    assert force_ceiling_lb(intake) == pytest.approx(110.2, abs=0.1)
    assert session_cap_lb(intake, 1) == 50
    assert session_cap_lb(intake, 2) == 50
    assert session_cap_lb(intake, 3) == pytest.approx(110.2, abs=0.1)


# --- progression -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerated", "red_flag", "mild", "moderate", "expected", "rule"),
    [
        (True, False, False, False, ForceChange.RAISE, "R-FORCE-RAISE"),
        (True, False, True, False, ForceChange.HOLD, "R-FORCE-HOLD"),
        (True, False, False, True, ForceChange.STEP_BACK, "R-FORCE-STEP-BACK"),
        (False, False, False, False, ForceChange.STEP_BACK, "R-FORCE-STEP-BACK"),
        (True, True, False, False, ForceChange.STOP, "R-VISIT-HOLD-UNTIL-REVIEW"),
        (False, True, True, True, ForceChange.STOP, "R-VISIT-HOLD-UNTIL-REVIEW"),
    ],
)
def test_decide_force_change(
    tolerated: bool, red_flag: bool, mild: bool, moderate: bool, expected: ForceChange, rule: str
) -> None:
    change, reason = decide_force_change(
        tolerated=tolerated, red_flag=red_flag, mild_side_effect=mild, moderate_side_effect=moderate
    )
    assert (change, reason.rule_id) == (expected, rule)


def test_raise_is_held_at_the_first_sessions_cap_then_continues(make_intake: Make) -> None:
    intake = make_intake(sex="female", weight_kg=80)
    first = starting_protocol(intake)
    assert first.max_force_lb == 40
    second = next_session_protocol(intake, first, tolerated=True, red_flag=False)
    assert second.change is ForceChange.HOLD  # session 2 is still capped at 40 lb
    assert second.protocol is not None and second.protocol.max_force_lb == 40
    third = next_session_protocol(intake, second.protocol, tolerated=True, red_flag=False)
    assert third.change is ForceChange.RAISE
    assert third.protocol is not None and third.protocol.max_force_lb == 45
    assert third.protocol.protocol_name == "lumbar-intermittent"
    assert third.protocol.duration_min == 15


def test_step_back_and_floor(make_intake: Make) -> None:
    intake = make_intake(sex="female", weight_kg=80)
    first = starting_protocol(intake)
    back = next_session_protocol(intake, first, tolerated=False, red_flag=False)
    assert back.change is ForceChange.STEP_BACK
    assert back.protocol is not None and back.protocol.max_force_lb == 35
    low = first.model_copy(update={"max_force_lb": 12.0})
    floor = next_session_protocol(intake, low, tolerated=False, red_flag=False)
    assert floor.protocol is not None and floor.protocol.max_force_lb == 10


def test_red_flag_stops_progression(make_intake: Make) -> None:
    intake = make_intake()
    result = next_session_protocol(intake, starting_protocol(intake), tolerated=True, red_flag=True)
    assert result.change is ForceChange.STOP
    assert result.protocol is None


def test_cervical_progression_steps_of_2_lb(make_intake: Make) -> None:
    intake = make_intake(cervical=True, weight_kg=70)
    first = starting_protocol(intake)
    second = next_session_protocol(intake, first, tolerated=True, red_flag=False)
    assert second.protocol is not None and second.protocol.max_force_lb == 12
    assert second.protocol.angle_deg == 20


@st.composite
def session_histories(draw: st.DrawFn) -> tuple[Intake, list[tuple[bool, bool, bool, bool]]]:
    data = cervical_data() if draw(st.booleans()) else candidate_data()
    data["sex"] = draw(st.sampled_from(["female", "male", "other"]))
    data["weight_kg"] = draw(st.floats(min_value=35, max_value=200))
    data["symptom_duration_weeks"] = draw(st.integers(min_value=0, max_value=100))
    events = draw(
        st.lists(
            st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
            min_size=1,
            max_size=30,
        )
    )
    return Intake.model_validate(data), events


@settings(max_examples=150, deadline=None)
@given(session_histories())
def test_progression_never_exceeds_limits(
    history: tuple[Intake, list[tuple[bool, bool, bool, bool]]],
) -> None:
    intake, events = history
    protocol: StartingProtocol = starting_protocol(intake)
    ceiling = force_ceiling_lb(intake)
    for tolerated, red_flag, mild, moderate in events:
        assert protocol.max_force_lb <= session_cap_lb(intake, protocol.session_number) + 1e-9
        assert protocol.max_force_lb <= ceiling + 1e-9
        assert 0 <= protocol.rest_force_lb <= protocol.max_force_lb
        step = next_session_protocol(
            intake,
            protocol,
            tolerated=tolerated,
            red_flag=red_flag,
            mild_side_effect=mild,
            moderate_side_effect=moderate,
        )
        if step.protocol is None:
            assert red_flag
            break
        if step.protocol.max_force_lb > protocol.max_force_lb:
            # Raised only after a tolerated session with no red flag or side effect.
            assert tolerated and not red_flag and not mild and not moderate
            assert step.protocol.max_force_lb - protocol.max_force_lb <= 5
        assert step.protocol.session_number == protocol.session_number + 1
        assert step.protocol.max_force_n == pytest.approx(
            step.protocol.max_force_lb * NEWTONS_PER_LB, abs=0.06
        )
        protocol = step.protocol
