"""Course plan, the session-1 starting protocol and session-to-session force progression.

The starting protocol is plain numbers (newtons, seconds, degrees, minutes) plus the name of
a suggested built-in protocol, so the session layer can map it onto a treatment protocol
without depending on this package's rules. Forces are worked out in pounds, as the
guidance is written, and converted with 1 lb = 4.4482216152605 N.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import Knowledge, load_knowledge
from spinedecomp.clinic.questionnaires import score_ndi, score_odi
from spinedecomp.clinic.reasons import Effect, Reason, make_reason
from spinedecomp.clinic.screening import CandidacyStatus, PathwayKind, ScreeningResult
from spinedecomp.clinic.types import Chronicity, Region, Severity
from spinedecomp.core.units import LB_TO_N

__all__ = [
    "NEWTONS_PER_LB",
    "Checkpoint",
    "CheckpointKind",
    "CoursePlan",
    "ForceChange",
    "NotACandidateError",
    "Progression",
    "ProtocolName",
    "PtCoursePlan",
    "SessionProtocol",
    "StartingProtocol",
    "WeekPlan",
    "course_weeks",
    "decide_force_change",
    "force_ceiling_lb",
    "next_session_protocol",
    "plan_course",
    "session_cap_lb",
    "severity_of",
    "starting_protocol",
    "weekly_frequency",
]

NEWTONS_PER_LB = LB_TO_N  # kept as a name of this module's API
"""Pound-force in newtons (exact by definition)."""

ProtocolName = Literal[
    "lumbar-intermittent",
    "lumbar-static",
    "lumbar-progressive",
    "cervical-intermittent",
    "first-session-conservative",
]
"""Built-in treatment protocols a plan may suggest."""


class NotACandidateError(ValueError):
    """A course plan was asked for a patient who is not a candidate."""


class StartingProtocol(BaseModel):
    """Table parameters for one session, as plain numbers.

    ``max_force_n``/``rest_force_n`` are the hold and rest forces, ``hold_s``/``rest_s`` the
    intermittent timing, ``angle_deg`` the angle of pull and ``duration_min`` the table
    time. The ``*_lb`` fields repeat the forces in pounds for display.
    """

    model_config = ConfigDict(frozen=True)

    region: Region
    protocol_name: ProtocolName
    session_number: int = Field(ge=1)
    max_force_n: float = Field(gt=0)
    rest_force_n: float = Field(ge=0)
    hold_s: float = Field(ge=1, le=99)
    rest_s: float = Field(ge=1, le=99)
    angle_deg: float = Field(ge=0, le=30)
    duration_min: float = Field(gt=0)
    max_force_lb: float = Field(gt=0)
    rest_force_lb: float = Field(ge=0)
    reasons: list[Reason] = Field(default_factory=list)


SessionProtocol = StartingProtocol
"""Parameters of any later session have the same shape as the starting protocol."""


class WeekPlan(BaseModel):
    """Sessions planned in one week of the course."""

    model_config = ConfigDict(frozen=True)

    week: int = Field(ge=1)
    sessions: int = Field(ge=1)


class CheckpointKind(StrEnum):
    """Kinds of planned assessment."""

    REASSESSMENT = "reassessment"
    DISCHARGE = "discharge"
    FOLLOW_UP = "follow_up"


class Checkpoint(BaseModel):
    """A planned re-assessment, discharge or follow-up."""

    model_config = ConfigDict(frozen=True)

    kind: CheckpointKind
    after_session: int | None
    week: int = Field(ge=1)
    due_on: date | None
    measures: list[str]
    citation: list[str]


class PtCoursePlan(BaseModel):
    """Physical therapy course after decompression."""

    model_config = ConfigDict(frozen=True)

    sessions: int = Field(ge=1)
    weeks: int = Field(ge=1)
    starts_week: int = Field(ge=1)
    citation: list[str]


class CoursePlan(BaseModel):
    """A decompression course for one candidate."""

    model_config = ConfigDict(frozen=True)

    region: Region
    chronicity: Chronicity
    severity: Severity
    sessions: int = Field(ge=1)
    weeks: int = Field(ge=1)
    frequency: list[WeekPlan]
    starting_protocol: StartingProtocol
    force_ceiling_n: float = Field(gt=0)
    force_ceiling_lb: float = Field(gt=0)
    checkpoints: list[Checkpoint]
    pt_course: PtCoursePlan | None
    reasons: list[Reason]


class ForceChange(StrEnum):
    """What to do with max force for the next session."""

    RAISE = "raise"
    HOLD = "hold"
    STEP_BACK = "step_back"
    STOP = "stop"


class Progression(BaseModel):
    """Decision for the next session: the change and the resulting parameters."""

    model_config = ConfigDict(frozen=True)

    change: ForceChange
    protocol: StartingProtocol | None
    reasons: list[Reason]


# --- severity and course length --------------------------------------------------------


def severity_of(intake: Intake) -> Severity | None:
    """Severity from the baseline ODI (lumbar) or NDI (cervical) band; None if not recorded."""
    if intake.odi is not None:
        return score_odi(intake.odi).severity
    if intake.ndi is not None:
        return score_ndi(intake.ndi).severity
    return None


def course_weeks(sessions: int, kb: Knowledge | None = None) -> int:
    """Weeks for ``sessions``: 15 -> 5 and 25 -> 8 (seed 003), linear between.

    Shorter courses keep the typical course's pace of about three sessions a week.
    """
    kb = kb or load_knowledge()
    typical = kb.course_lengths.decompression_typical
    assert typical.min_weeks is not None and typical.max_weeks is not None
    if sessions >= typical.min_sessions:
        slope = (typical.max_weeks - typical.min_weeks) / (
            typical.max_sessions - typical.min_sessions
        )
        return math.floor(typical.min_weeks + (sessions - typical.min_sessions) * slope + 0.5)
    pace = typical.min_sessions / typical.min_weeks
    return max(1, math.ceil(sessions / pace))


def weekly_frequency(sessions: int, weeks: int, max_per_week: int = 5) -> list[WeekPlan]:
    """Split ``sessions`` over ``weeks`` with a taper: more sessions early, fewer later.

    Weights fall linearly from 2 to 1 across the weeks; the largest-remainder method keeps
    the total exact, and sorting keeps the sequence non-increasing.
    """
    if sessions < 1 or weeks < 1:
        raise ValueError("sessions and weeks must be at least 1")
    weeks = min(weeks, sessions)  # every planned week has at least one session
    if sessions > weeks * max_per_week:
        raise ValueError(f"{sessions} sessions do not fit {weeks} weeks at {max_per_week}/week")
    weights = [2.0 - (i / (weeks - 1) if weeks > 1 else 0.0) for i in range(weeks)]
    total = sum(weights)
    raw = [sessions * w / total for w in weights]
    counts = [max(1, math.floor(r)) for r in raw]
    order = sorted(range(weeks), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    i = 0
    while sum(counts) < sessions:
        j = order[i % weeks]
        if counts[j] < max_per_week:
            counts[j] += 1
        i += 1
    while sum(counts) > sessions:
        j = max(range(weeks), key=lambda k: counts[k])
        counts[j] -= 1
    counts.sort(reverse=True)
    return [WeekPlan(week=n, sessions=c) for n, c in enumerate(counts, start=1)]


# --- force ----------------------------------------------------------------------------


def force_ceiling_lb(intake: Intake) -> float:
    """Highest max force ever planned for this patient, in pounds."""
    kb = load_knowledge()
    if intake.region is Region.LUMBAR:
        return round(kb.force.lumbar.ceiling_fraction_of_body_weight * intake.weight_lb, 1)
    cervical = kb.force.cervical
    by_weight = max(cervical.separation_min_lb, cervical.ceiling_fraction_of_body_weight * intake.weight_lb)
    return round(min(cervical.ceiling_lb, by_weight), 1)


def session_cap_lb(intake: Intake, session_number: int) -> float:
    """Max force allowed at ``session_number`` (first-sessions cap, then the ceiling)."""
    kb = load_knowledge()
    ceiling = force_ceiling_lb(intake)
    if intake.region is Region.LUMBAR and session_number <= kb.force.lumbar.first_sessions:
        return min(ceiling, kb.force.lumbar.first_sessions_cap_lb.for_sex(intake.sex))
    return ceiling


def _protocol(intake: Intake, session_number: int, max_lb: float, reasons: list[Reason]) -> (
    StartingProtocol
):
    kb = load_knowledge()
    if intake.region is Region.LUMBAR:
        lumbar = kb.force.lumbar
        rest_lb = min(lumbar.rest_fraction_of_max * max_lb, lumbar.rest_max_lb)
        name: ProtocolName = (
            "first-session-conservative"
            if session_number <= lumbar.first_sessions
            else "lumbar-intermittent"
        )
        hold_s, rest_s, angle = lumbar.hold_s, lumbar.rest_s, lumbar.angle_deg
        duration = lumbar.first_duration_min if session_number == 1 else lumbar.duration_min
    else:
        cervical = kb.force.cervical
        rest_lb = cervical.rest_fraction_of_max * max_lb
        name = "cervical-intermittent"
        hold_s, rest_s = cervical.hold_s, cervical.rest_s
        angle = getattr(cervical.angle_deg, intake.effective_cervical_level.value)
        duration = cervical.first_duration_min if session_number == 1 else cervical.duration_min
    rest_lb = round(rest_lb, 1)
    return StartingProtocol(
        region=intake.region,
        protocol_name=name,
        session_number=session_number,
        max_force_n=round(max_lb * NEWTONS_PER_LB, 1),
        rest_force_n=round(rest_lb * NEWTONS_PER_LB, 1),
        hold_s=hold_s,
        rest_s=rest_s,
        angle_deg=angle,
        duration_min=duration,
        max_force_lb=max_lb,
        rest_force_lb=rest_lb,
        reasons=reasons,
    )


def starting_protocol(intake: Intake) -> StartingProtocol:
    """Session-1 parameters from body weight, chronicity, sex and region."""
    kb = load_knowledge()
    reasons: list[Reason] = []
    if intake.region is Region.LUMBAR:
        lumbar = kb.force.lumbar
        fraction = lumbar.start_fraction_of_body_weight.for_chronicity(intake.chronicity)
        by_weight = fraction * intake.weight_lb
        cap = session_cap_lb(intake, 1)
        # Whole pounds, rounded down: the conservative side of the guidance.
        max_lb = float(max(math.floor(min(by_weight, cap)), 1))
        reasons.append(
            make_reason(
                "R-FORCE-LUMBAR-START",
                Effect.INFO,
                f"{intake.chronicity.value}: {fraction:.0%} of {intake.weight_lb:.0f} lb = "
                f"{by_weight:.0f} lb; first-sessions cap {cap:g} lb ({intake.sex.value}); "
                f"start at {max_lb:g} lb.",
            )
        )
    else:
        cervical = kb.force.cervical
        max_lb = min(cervical.start_lb, force_ceiling_lb(intake))
        level = intake.effective_cervical_level
        recorded = "" if intake.cervical_level else " (level not recorded: mid assumed)"
        reasons.append(
            make_reason(
                "R-FORCE-CERVICAL-START",
                Effect.INFO,
                f"Start at {max_lb:g} lb, the low end of the 10-30 lb cervical range; "
                f"angle for the {level.value} cervical spine{recorded}.",
            )
        )
    reasons.append(
        make_reason(
            "R-FORCE-REST",
            Effect.INFO,
            "Rest force is half the max force (at most 25 lb lumbar).",
        )
    )
    return _protocol(intake, 1, max_lb, reasons)


def decide_force_change(
    *, tolerated: bool, red_flag: bool, mild_side_effect: bool, moderate_side_effect: bool
) -> tuple[ForceChange, Reason]:
    """Force change for the next session from how the last one went.

    Raise only when the last session was tolerated with no red flag and no side effect;
    hold after mild side effects; step back after an untolerated session or a moderate
    side effect; stop (no next session) after a red flag until a clinician reviews.
    """
    if red_flag:
        return ForceChange.STOP, make_reason(
            "R-VISIT-HOLD-UNTIL-REVIEW",
            Effect.URGENT,
            "Red flag reported: no further session until a clinician has reviewed.",
        )
    if not tolerated or moderate_side_effect:
        why = "the last session was not tolerated" if not tolerated else "a moderate side effect"
        return ForceChange.STEP_BACK, make_reason(
            "R-FORCE-STEP-BACK", Effect.CAUTION, f"Step max force back: {why}."
        )
    if mild_side_effect:
        return ForceChange.HOLD, make_reason(
            "R-FORCE-HOLD", Effect.INFO, "Mild side effects: keep the same max force."
        )
    return ForceChange.RAISE, make_reason(
        "R-FORCE-RAISE",
        Effect.INFO,
        "Last session tolerated with no red flag or side effect: raise max force one step.",
    )


def next_session_protocol(
    intake: Intake,
    previous: StartingProtocol,
    *,
    tolerated: bool,
    red_flag: bool,
    mild_side_effect: bool = False,
    moderate_side_effect: bool = False,
) -> Progression:
    """Parameters for the session after ``previous``, following the progression rules."""
    kb = load_knowledge()
    change, reason = decide_force_change(
        tolerated=tolerated,
        red_flag=red_flag,
        mild_side_effect=mild_side_effect,
        moderate_side_effect=moderate_side_effect,
    )
    if change is ForceChange.STOP:
        return Progression(change=change, protocol=None, reasons=[reason])
    session = previous.session_number + 1
    if intake.region is Region.LUMBAR:
        step, floor = kb.force.lumbar.step_lb, kb.force.lumbar.floor_lb
    else:
        step, floor = kb.force.cervical.step_lb, kb.force.cervical.floor_lb
    limit = session_cap_lb(intake, session)
    reasons = [reason]
    current = previous.max_force_lb
    if change is ForceChange.RAISE:
        new = min(current + step, limit)
        if new <= current:
            change = ForceChange.HOLD
            new = min(current, limit)
            reasons.append(
                make_reason(
                    "R-FORCE-HOLD",
                    Effect.INFO,
                    f"Max force is at the limit for session {session} ({limit:g} lb): held.",
                )
            )
    elif change is ForceChange.HOLD:
        new = min(current, limit)
    else:
        new = min(max(current - step, floor), limit)
    return Progression(
        change=change, protocol=_protocol(intake, session, round(new, 1), reasons), reasons=reasons
    )


# --- course plan ----------------------------------------------------------------------


def _week_of_session(frequency: list[WeekPlan], session: int) -> int:
    done = 0
    for week in frequency:
        done += week.sessions
        if done >= session:
            return week.week
    return frequency[-1].week


def plan_course(
    intake: Intake, screening: ScreeningResult, start_date: date | None = None
) -> CoursePlan:
    """The decompression course for a candidate (``NotACandidateError`` otherwise).

    ``start_date`` (passed in: this module reads no clock) dates the checkpoints.
    """
    if screening.decision.status is not CandidacyStatus.CANDIDATE:
        raise NotACandidateError(
            f"no course plan: screening status is {screening.decision.status.value}"
        )
    kb = load_knowledge()
    params = kb.plan
    overall = kb.course_lengths.decompression_overall
    reasons: list[Reason] = []
    severity = severity_of(intake)
    if severity is None:
        # Unreachable for a candidate (a baseline measure is required), kept for safety.
        severity = Severity.MODERATE
    measure = "ODI" if intake.region is Region.LUMBAR else "NDI"
    reasons.append(
        make_reason(
            "R-PLAN-SEVERITY", Effect.INFO, f"Severity {severity.value} from the baseline {measure}."
        )
    )
    chronicity = intake.chronicity
    reasons.append(
        make_reason(
            "R-PLAN-CHRONICITY",
            Effect.INFO,
            f"{intake.symptom_duration_weeks:g} weeks of symptoms: {chronicity.value}.",
        )
    )
    base = params.sessions_by_severity.for_severity(severity)
    adjust = params.chronicity_adjustment.for_chronicity(chronicity)
    sessions = min(max(base + adjust, overall.min_sessions), overall.max_sessions)
    reasons.append(
        make_reason(
            "R-PLAN-SESSIONS",
            Effect.INFO,
            f"{base} sessions for {severity.value} severity, {adjust:+d} for {chronicity.value} "
            f"symptoms: {sessions} sessions (allowed {overall.min_sessions}-"
            f"{overall.max_sessions}).",
        )
    )
    weeks = course_weeks(sessions, kb)
    frequency = weekly_frequency(sessions, weeks, params.max_sessions_per_week)
    weeks = len(frequency)
    reasons.append(
        make_reason(
            "R-PLAN-WEEKS",
            Effect.INFO,
            f"{sessions} sessions over {weeks} weeks, tapering from "
            f"{frequency[0].sessions} to {frequency[-1].sessions} a week.",
        )
    )
    measures = ["NPRS", measure]
    reassess_rule = kb.rule("R-PLAN-REASSESS")

    def due(week: int) -> date | None:
        return None if start_date is None else start_date + timedelta(weeks=week - 1)

    checkpoints: list[Checkpoint] = []
    if sessions > params.reassess_after_session:
        week = _week_of_session(frequency, params.reassess_after_session)
        checkpoints.append(
            Checkpoint(
                kind=CheckpointKind.REASSESSMENT,
                after_session=params.reassess_after_session,
                week=week,
                due_on=due(week),
                measures=measures,
                citation=list(reassess_rule.source),
            )
        )
    checkpoints.append(
        Checkpoint(
            kind=CheckpointKind.DISCHARGE,
            after_session=sessions,
            week=weeks,
            due_on=due(weeks),
            measures=measures,
            citation=list(reassess_rule.source),
        )
    )
    follow_week = weeks + params.follow_up_weeks_after_discharge
    checkpoints.append(
        Checkpoint(
            kind=CheckpointKind.FOLLOW_UP,
            after_session=None,
            week=follow_week,
            due_on=due(follow_week),
            measures=measures,
            citation=[params.follow_up_source],
        )
    )
    reasons.append(
        make_reason(
            "R-PLAN-REASSESS",
            Effect.INFO,
            f"Re-assess after session {params.reassess_after_session} and at discharge; "
            f"follow up {params.follow_up_weeks_after_discharge} weeks after discharge.",
        )
    )
    pt_course: PtCoursePlan | None = None
    if screening.pathway.kind in (
        PathwayKind.DECOMPRESSION_THEN_PT,
        PathwayKind.DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS,
    ):
        size = params.pt_sessions_by_severity.for_severity(severity)
        pt_course = PtCoursePlan(
            sessions=size.sessions,
            weeks=size.weeks,
            starts_week=weeks + 1,
            citation=list(params.pt_sessions_by_severity.source),
        )
        reasons.append(
            make_reason(
                "R-PLAN-PT-COURSE",
                Effect.INFO,
                f"Then physical therapy: {size.sessions} sessions over {size.weeks} weeks.",
            )
        )
    ceiling = force_ceiling_lb(intake)
    return CoursePlan(
        region=intake.region,
        chronicity=chronicity,
        severity=severity,
        sessions=sessions,
        weeks=weeks,
        frequency=frequency,
        starting_protocol=starting_protocol(intake),
        force_ceiling_n=round(ceiling * NEWTONS_PER_LB, 1),
        force_ceiling_lb=ceiling,
        checkpoints=checkpoints,
        pt_course=pt_course,
        reasons=reasons,
    )
