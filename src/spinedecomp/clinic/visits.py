"""Visits: the pre-session go/no-go and the post-session record with its assessment.

A red flag at any point raises an :class:`Alert`: the patient must be contacted now (or
sent for emergency assessment) and further sessions are held until a clinician reviews.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import ContraindicationKind, RedFlagKind, load_knowledge
from spinedecomp.clinic.plan import (
    ForceChange,
    Progression,
    StartingProtocol,
    next_session_protocol,
)
from spinedecomp.clinic.questionnaires import Nprs
from spinedecomp.clinic.reasons import Effect, Reason, cite, make_reason

__all__ = [
    "Alert",
    "AlertLevel",
    "GoNoGo",
    "PostSessionAssessment",
    "PostSessionRecord",
    "PreSessionCheck",
    "SideEffectReport",
    "SideEffectSeverity",
    "VisitDecision",
    "assess_post_session",
    "pre_session_check",
    "red_flag_alert",
]


class SideEffectSeverity(StrEnum):
    """How bad a side effect was."""

    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class SideEffectReport(BaseModel):
    """A side effect reported by the patient, by knowledge-base id, with its severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effect: str
    severity: SideEffectSeverity

    @field_validator("effect")
    @classmethod
    def _known(cls, value: str) -> str:
        ids = [s.id for s in load_knowledge().side_effects]
        if value not in ids:
            raise ValueError(f"unknown side effect {value!r}; known: {', '.join(ids)}")
        return value


def _check_red_flags(value: dict[str, bool]) -> dict[str, bool]:
    ids = [r.id for r in load_knowledge().red_flags]
    unknown = [k for k in value if k not in ids]
    if unknown:
        raise ValueError(f"unknown red flag(s) {unknown}; known: {', '.join(ids)}")
    return value


class VisitDecision(StrEnum):
    """Pre-session outcome."""

    GO = "go"
    GO_REDUCED = "go_reduced"
    HOLD = "hold"
    URGENT_REFERRAL = "urgent_referral"


class AlertLevel(StrEnum):
    """How fast the clinic must act."""

    CONTACT_NOW = "contact_now"
    EMERGENCY = "emergency"


class Alert(BaseModel):
    """The patient must be contacted now; sessions are held until a clinician reviews."""

    model_config = ConfigDict(frozen=True)

    level: AlertLevel
    message: str
    red_flags: list[str] = Field(min_length=1)
    sessions_held: bool = True
    citation: list[str]


class PreSessionCheck(BaseModel):
    """Answers collected before a session.

    ``red_flags``: symptoms new or worse since the last session. ``contraindication_changes``:
    contraindication answers that changed (e.g. ``pregnancy: true``).
    ``sessions_on_hold``: an earlier alert or hold is still open; ``clinician_reviewed``: a
    clinician has reviewed it since.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_number: int = Field(ge=1)
    red_flags: dict[str, bool] = Field(default_factory=dict)
    side_effects_since_last: list[SideEffectReport] = Field(default_factory=list)
    contraindication_changes: dict[str, bool] = Field(default_factory=dict)
    clinician_cleared: list[str] = Field(default_factory=list)
    sessions_on_hold: bool = False
    clinician_reviewed: bool = False

    @field_validator("red_flags")
    @classmethod
    def _known_red_flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        return _check_red_flags(value)

    @field_validator("contraindication_changes")
    @classmethod
    def _known_contraindications(cls, value: dict[str, bool]) -> dict[str, bool]:
        ids = [c.id for c in load_knowledge().contraindications]
        unknown = [k for k in value if k not in ids]
        if unknown:
            raise ValueError(f"unknown contraindication(s) {unknown}")
        return value


class GoNoGo(BaseModel):
    """Whether the session may go ahead, and how force should change."""

    model_config = ConfigDict(frozen=True)

    decision: VisitDecision
    force_change: ForceChange | None
    reasons: list[Reason]
    alert: Alert | None


class PostSessionRecord(BaseModel):
    """What happened in a session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_number: int = Field(ge=1)
    performed_on: date | None = None
    pain_before: Nprs
    pain_after: Nprs
    side_effects: list[SideEffectReport] = Field(default_factory=list)
    adjuncts: list[str] = Field(default_factory=list)
    red_flags: dict[str, bool] = Field(default_factory=dict)
    tolerated: bool = True
    max_force_n: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    notes: str = ""

    @field_validator("red_flags")
    @classmethod
    def _known_red_flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        return _check_red_flags(value)

    @field_validator("adjuncts")
    @classmethod
    def _known_adjuncts(cls, value: list[str]) -> list[str]:
        ids = [a.id for a in load_knowledge().adjuncts]
        unknown = [v for v in value if v not in ids]
        if unknown:
            raise ValueError(f"unknown adjunct(s) {unknown}; known: {', '.join(ids)}")
        return value

    @property
    def pain_change(self) -> int:
        """Pain after minus pain before (positive = worse)."""
        return self.pain_after - self.pain_before


class PostSessionAssessment(BaseModel):
    """Assessment of a session record and the plan for the next session."""

    model_config = ConfigDict(frozen=True)

    session_number: int
    pain_change: int
    tolerated: bool
    alert: Alert | None
    reasons: list[Reason]
    progression: Progression

    @model_validator(mode="after")
    def _held_when_alerted(self) -> PostSessionAssessment:
        # An alert must always stop the course: never plan a session past a red flag.
        if self.alert is not None and self.progression.protocol is not None:
            raise ValueError("a session cannot be planned while an alert is open")
        return self


def red_flag_alert(red_flags: dict[str, bool]) -> tuple[Alert | None, list[Reason]]:
    """Alert and reasons for the red flags answered ``true`` (no alert if none)."""
    kb = load_knowledge()
    present = [kb.red_flag(rf) for rf, yes in red_flags.items() if yes]
    if not present:
        return None, []
    emergency = [rf for rf in present if rf.kind is RedFlagKind.EMERGENCY]
    contact = [rf for rf in present if rf.kind is RedFlagKind.CONTACT_NOW]
    reasons: list[Reason] = []
    if emergency:
        reasons.append(
            make_reason(
                "R-VISIT-EMERGENCY",
                Effect.URGENT,
                "Urgent-referral sign: " + "; ".join(rf.name for rf in emergency) + ".",
                cite(*(rf.source for rf in emergency)),
            )
        )
    if contact:
        reasons.append(
            make_reason(
                "R-VISIT-CONTACT-NOW",
                Effect.URGENT,
                "Red flag: " + ", ".join(rf.name.lower() for rf in contact) + ".",
                cite(*(rf.source for rf in contact)),
            )
        )
    names = ", ".join(rf.name.lower() for rf in present)
    if emergency:
        level = AlertLevel.EMERGENCY
        message = (
            f"EMERGENCY: {names}. Contact the patient now and arrange same-day emergency "
            "assessment. Further sessions are held until a clinician reviews."
        )
    else:
        level = AlertLevel.CONTACT_NOW
        message = (
            f"Contact the patient now: {names}. Further sessions are held until a "
            "clinician reviews."
        )
    alert = Alert(
        level=level,
        message=message,
        red_flags=[rf.id for rf in present],
        citation=cite(*(r.citation for r in reasons)),
    )
    return alert, reasons


def _side_effect_reasons(
    reports: list[SideEffectReport],
) -> tuple[bool, bool, bool, list[Reason]]:
    """(serious_or_severe, step_back, mild, reasons) for a list of side-effect reports."""
    kb = load_knowledge()
    serious = step_back = mild = False
    reasons: list[Reason] = []
    for report in reports:
        entry = kb.side_effect(report.effect)
        label = f"{entry.name.lower()} ({report.severity.value})"
        if entry.serious or report.severity is SideEffectSeverity.SEVERE:
            serious = True
            reasons.append(
                make_reason(
                    "R-VISIT-SERIOUS-SIDE-EFFECT",
                    Effect.EXCLUDES,
                    f"Serious or severe side effect: {label}. Hold until a clinician reviews.",
                    entry.source,
                )
            )
        elif report.severity is SideEffectSeverity.MODERATE or entry.neurological:
            step_back = True
            reasons.append(
                make_reason(
                    "R-VISIT-MODERATE-SIDE-EFFECT",
                    Effect.CAUTION,
                    f"Side effect: {label}. Step max force back.",
                    entry.source,
                )
            )
        else:
            mild = True
            reasons.append(
                make_reason(
                    "R-VISIT-MILD-SIDE-EFFECT",
                    Effect.INFO,
                    f"Mild side effect: {label}. Keep the same max force.",
                    entry.source,
                )
            )
        if report.effect == "persisting_pain":
            reasons.append(
                make_reason(
                    "R-VISIT-PERSISTING-PAIN",
                    Effect.CAUTION,
                    "Persisting pain: review the underlying cause at the next re-assessment.",
                    entry.source,
                )
            )
    return serious, step_back, mild, reasons


def pre_session_check(intake: Intake, check: PreSessionCheck) -> GoNoGo:
    """Go/no-go before a session: red flags, open holds, contraindication changes, side effects."""
    kb = load_knowledge()
    reasons: list[Reason] = []
    alert, flag_reasons = red_flag_alert(check.red_flags)
    reasons.extend(flag_reasons)
    hold = False
    if check.sessions_on_hold:
        if check.clinician_reviewed:
            reasons.append(
                make_reason(
                    "R-VISIT-HOLD-UNTIL-REVIEW",
                    Effect.INFO,
                    "Earlier hold reviewed by a clinician: sessions may resume.",
                )
            )
        else:
            hold = True
            reasons.append(
                make_reason(
                    "R-VISIT-HOLD-UNTIL-REVIEW",
                    Effect.EXCLUDES,
                    "Sessions are on hold after an earlier alert: a clinician must review first.",
                )
            )
    for cid, present in check.contraindication_changes.items():
        if not present:
            continue
        entry = kb.contraindication(cid)
        if entry.kind is ContraindicationKind.RELATIVE and cid in check.clinician_cleared:
            reasons.append(
                make_reason(
                    "R-VISIT-CONTRAINDICATION",
                    Effect.CAUTION,
                    f"New relative contraindication cleared by a clinician: {entry.name}.",
                    entry.source,
                )
            )
            continue
        hold = True
        what = (
            "absolute contraindication: decompression must stop; re-screen"
            if entry.kind is ContraindicationKind.ABSOLUTE
            else "relative contraindication: hold until a clinician clears it"
        )
        reasons.append(
            make_reason(
                "R-VISIT-CONTRAINDICATION",
                Effect.EXCLUDES,
                f"New {what} ({entry.name}).",
                entry.source,
            )
        )
    serious, step_back, mild, effect_reasons = _side_effect_reasons(check.side_effects_since_last)
    reasons.extend(effect_reasons)
    hold = hold or serious
    if alert is not None and alert.level is AlertLevel.EMERGENCY:
        decision, change = VisitDecision.URGENT_REFERRAL, ForceChange.STOP
    elif alert is not None or hold:
        decision, change = VisitDecision.HOLD, ForceChange.STOP
    elif step_back:
        decision, change = VisitDecision.GO_REDUCED, ForceChange.STEP_BACK
    elif mild:
        decision, change = VisitDecision.GO, ForceChange.HOLD
    else:
        decision, change = VisitDecision.GO, None
    return GoNoGo(decision=decision, force_change=change, reasons=reasons, alert=alert)


def assess_post_session(
    intake: Intake, record: PostSessionRecord, protocol_used: StartingProtocol
) -> PostSessionAssessment:
    """Assess a session record and plan the next session's parameters.

    ``protocol_used`` is the parameter set the session ran with (its session number must
    match the record's).
    """
    if protocol_used.session_number != record.session_number:
        raise ValueError(
            f"protocol is for session {protocol_used.session_number}, "
            f"record is for session {record.session_number}"
        )
    reasons: list[Reason] = []
    alert, flag_reasons = red_flag_alert(record.red_flags)
    reasons.extend(flag_reasons)
    mcid = load_knowledge().outcomes.nprs.mcid_points
    tolerated = record.tolerated
    if record.pain_change >= mcid:
        tolerated = False
        reasons.append(
            make_reason(
                "R-VISIT-PAIN-INCREASE",
                Effect.CAUTION,
                f"Pain rose {record.pain_change} points during the session "
                f"({record.pain_before} -> {record.pain_after}): not tolerated.",
            )
        )
    serious, step_back, mild, effect_reasons = _side_effect_reasons(record.side_effects)
    reasons.extend(effect_reasons)
    if serious and alert is None:
        progression = Progression(
            change=ForceChange.STOP,
            protocol=None,
            reasons=[
                make_reason(
                    "R-VISIT-HOLD-UNTIL-REVIEW",
                    Effect.EXCLUDES,
                    "Serious or severe side effect: no further session until a clinician reviews.",
                )
            ],
        )
    else:
        progression = next_session_protocol(
            intake,
            protocol_used,
            tolerated=tolerated,
            red_flag=alert is not None,
            mild_side_effect=mild,
            moderate_side_effect=step_back,
        )
    return PostSessionAssessment(
        session_number=record.session_number,
        pain_change=record.pain_change,
        tolerated=tolerated,
        alert=alert,
        reasons=reasons,
        progression=progression,
    )
