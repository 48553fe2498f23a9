"""Candidacy and recommended pathway, each reason carrying its rule id and citation.

Order of precedence of the four outcomes:
urgent referral > not a candidate > needs more information > candidate.
All rules are evaluated every time so that the clinician sees every reason, not just the
first one that decided the outcome. An absolute contraindication always excludes, so no
candidate can ever have one (a property the tests check with hypothesis).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.clinic.intake import CareResult, Intake
from spinedecomp.clinic.knowledge import (
    ContraindicationKind,
    Fit,
    Knowledge,
    RedFlagKind,
    load_knowledge,
)
from spinedecomp.clinic.reasons import Effect, Reason, cite, make_reason
from spinedecomp.clinic.types import Region

__all__ = [
    "CandidacyDecision",
    "CandidacyStatus",
    "CitedStatement",
    "ContraindicationFinding",
    "Pathway",
    "PathwayKind",
    "PathwayStep",
    "ScreeningResult",
    "contraindication_findings",
    "decide_candidacy",
    "recommend_pathway",
    "screen",
    "unanswered_contraindications",
]


class CandidacyStatus(StrEnum):
    """Outcome of screening."""

    CANDIDATE = "candidate"
    NOT_A_CANDIDATE = "not_a_candidate"
    NEEDS_MORE_INFORMATION = "needs_more_information"
    URGENT_REFERRAL = "urgent_referral"


class ContraindicationFinding(BaseModel):
    """A contraindication present for this patient, and how it was found."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    kind: ContraindicationKind
    found_by: list[str] = Field(min_length=1)
    cleared: bool = False


class CitedStatement(BaseModel):
    """A plain statement with its citation."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    citation: list[str]


class CandidacyDecision(BaseModel):
    """Whether decompression is appropriate now, with every reason."""

    model_config = ConfigDict(frozen=True)

    status: CandidacyStatus
    reasons: list[Reason]
    contraindications: list[ContraindicationFinding]
    urgent_red_flags: list[str]
    statements: list[CitedStatement]

    def reasons_for(self, rule_id: str) -> list[Reason]:
        """The reasons produced by ``rule_id``."""
        return [r for r in self.reasons if r.rule_id == rule_id]

    @property
    def absolute_contraindications(self) -> list[str]:
        """Ids of the absolute contraindications present."""
        return [
            c.id for c in self.contraindications if c.kind is ContraindicationKind.ABSOLUTE
        ]


class PathwayKind(StrEnum):
    """Recommended next step of care."""

    URGENT_REFERRAL = "urgent_referral"
    CLINICIAN_REVIEW = "clinician_review"
    CONSERVATIVE_CARE_FIRST = "conservative_care_first"
    COMPLETE_ASSESSMENT = "complete_assessment"
    PHYSICAL_THERAPY = "physical_therapy"
    DECOMPRESSION = "decompression"
    DECOMPRESSION_THEN_PT = "decompression_then_pt"
    DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS = "decompression_with_neuropathy_adjuncts"
    ESCALATION = "escalation"


class PathwayStep(BaseModel):
    """One step of a pathway."""

    model_config = ConfigDict(frozen=True)

    order: int = Field(ge=1)
    id: str
    text: str
    applicable: bool = True
    citation: list[str]


class Pathway(BaseModel):
    """The recommended pathway and why."""

    model_config = ConfigDict(frozen=True)

    kind: PathwayKind
    steps: list[PathwayStep]
    reasons: list[Reason]


class ScreeningResult(BaseModel):
    """Candidacy decision and pathway together."""

    model_config = ConfigDict(frozen=True)

    decision: CandidacyDecision
    pathway: Pathway


# --- contraindications -----------------------------------------------------------------


def _kind_for(kb: Knowledge, contraindication_id: str) -> ContraindicationKind:
    return kb.contraindication(contraindication_id).kind


def contraindication_findings(intake: Intake) -> list[ContraindicationFinding]:
    """Contraindications present: from the answers, from test findings, from prior surgery.

    When an answer says "no" but a test result or the surgical history says "yes", the
    finding wins: a contraindication is never ignored because of an inconsistent answer.
    """
    kb = load_knowledge()
    found: dict[str, list[str]] = {}
    for cid, present in intake.contraindications.items():
        if present:
            found.setdefault(cid, []).append("patient answer")
    for result in intake.diagnostic_results:
        for cid in result.shows:
            found.setdefault(cid, []).append(f"{result.test} finding")
    for surgery in intake.prior_surgeries:
        if surgery.region not in (None, intake.region):
            continue
        found.setdefault("prior_spinal_surgery", []).append(f"surgery: {surgery.description}")
        if surgery.hardware:
            found.setdefault("spinal_hardware", []).append(f"surgery: {surgery.description}")
    return [
        ContraindicationFinding(
            id=c.id,
            name=c.name,
            kind=c.kind,
            found_by=found[c.id],
            cleared=c.kind is ContraindicationKind.RELATIVE and c.id in intake.clinician_cleared,
        )
        for c in kb.contraindications
        if c.id in found
    ]


def unanswered_contraindications(intake: Intake) -> list[str]:
    """Applicable contraindication questions with no answer and no finding."""
    kb = load_knowledge()
    present = {f.id for f in contraindication_findings(intake)}
    return [
        c.id
        for c in kb.contraindications
        if intake.sex in c.asked_of and c.id not in intake.contraindications and c.id not in present
    ]


# --- candidacy -------------------------------------------------------------------------


def _statements(kb: Knowledge) -> list[CitedStatement]:
    return [CitedStatement(id=s.id, text=s.text, citation=list(s.source)) for s in kb.statements]


def _red_flag_reasons(intake: Intake, kb: Knowledge) -> tuple[list[Reason], list[str]]:
    reasons: list[Reason] = []
    emergency = [rf for rf in kb.red_flags if rf.kind is RedFlagKind.EMERGENCY]
    present = [rf for rf in emergency if intake.red_flags.get(rf.id) is True]
    for rf in present:
        reasons.append(
            make_reason(
                "R-URGENT-RED-FLAG",
                Effect.URGENT,
                f"Urgent-referral sign: {rf.name}. Same-day emergency assessment; "
                "do not start decompression.",
                rf.source,
            )
        )
    unanswered = [rf for rf in emergency if rf.id not in intake.red_flags]
    if unanswered:
        reasons.append(
            make_reason(
                "R-RED-FLAG-SCREEN",
                Effect.NEEDS_INFORMATION,
                "Red-flag screen incomplete: ask about " + ", ".join(r.name for r in unanswered),
                cite(*(r.source for r in unanswered)),
            )
        )
    return reasons, [rf.id for rf in present]


def _contraindication_reasons(
    intake: Intake, kb: Knowledge
) -> tuple[list[Reason], list[ContraindicationFinding]]:
    reasons: list[Reason] = []
    findings = contraindication_findings(intake)
    for f in findings:
        entry = kb.contraindication(f.id)
        how = ", ".join(f.found_by)
        if f.kind is ContraindicationKind.ABSOLUTE:
            reasons.append(
                make_reason(
                    "R-ABSOLUTE-CONTRAINDICATION",
                    Effect.EXCLUDES,
                    f"Absolute contraindication: {f.name} ({how}).",
                    entry.source,
                )
            )
        elif f.cleared:
            reasons.append(
                make_reason(
                    "R-RELATIVE-CONTRAINDICATION",
                    Effect.CAUTION,
                    f"Relative contraindication cleared by a clinician: {f.name} ({how}). "
                    "Proceed with caution.",
                    entry.source,
                )
            )
        else:
            reasons.append(
                make_reason(
                    "R-RELATIVE-CONTRAINDICATION",
                    Effect.NEEDS_INFORMATION,
                    f"Relative contraindication: {f.name} ({how}). A clinician must clear it "
                    "before decompression.",
                    entry.source,
                )
            )
    unanswered = unanswered_contraindications(intake)
    if unanswered:
        reasons.append(
            make_reason(
                "R-CONTRAINDICATION-SCREEN",
                Effect.NEEDS_INFORMATION,
                "Contraindication screen incomplete: "
                + "; ".join(kb.contraindication(c).question for c in unanswered),
                cite(*(kb.contraindication(c).source for c in unanswered)),
            )
        )
    return reasons, findings


def _confirming_tests(intake: Intake, kb: Knowledge, condition: str) -> list[str]:
    """Tests in the intake that confirm ``condition`` and are able to confirm it."""
    indication = kb.indication(condition)
    return [
        result.test
        for result in intake.diagnostic_results
        if result.test in indication.confirmed_by and condition in result.supports
    ]


def _imaging_confirmed(intake: Intake, kb: Knowledge, condition: str) -> bool:
    return any(kb.diagnostic_test(t).imaging for t in _confirming_tests(intake, kb, condition))


def _diagnosis_reasons(intake: Intake, kb: Knowledge) -> list[Reason]:
    reasons: list[Reason] = []
    ids = intake.diagnosis_ids()
    if not ids:
        return [
            make_reason(
                "R-DIAGNOSIS-REQUIRED",
                Effect.NEEDS_INFORMATION,
                "No diagnosis recorded: a clinical evaluation with a working diagnosis is "
                "needed to judge candidacy.",
            )
        ]
    indications = [kb.indication(i) for i in ids]
    for ind in indications:
        if ind.cautions:
            names = ", ".join(kb.contraindication(c).name.lower() for c in ind.cautions)
            reasons.append(
                make_reason(
                    "R-DIAGNOSIS-CAUTION",
                    Effect.CAUTION,
                    f"{ind.name}: check carefully for {names} before treating.",
                    ind.source,
                )
            )
    decompression_fits = [i for i in indications if i.fit is not Fit.PT_PREFERRED]
    if not decompression_fits:
        names = ", ".join(i.name for i in indications)
        reasons.append(
            make_reason(
                "R-PT-PREFERRED",
                Effect.EXCLUDES,
                f"{names}: physical therapy gives more durable results than decompression "
                "for pain rooted in muscular weakness or movement dysfunction.",
                cite(*(i.source for i in indications)),
            )
        )
        return reasons
    confirmed = [i for i in decompression_fits if _confirming_tests(intake, kb, i.id)]
    imaging = [i for i in confirmed if _imaging_confirmed(intake, kb, i.id)]
    for ind in confirmed:
        by = ", ".join(kb.diagnostic_test(t).name for t in _confirming_tests(intake, kb, ind.id))
        reasons.append(
            make_reason(
                "R-CONFIRMED-DIAGNOSIS",
                Effect.SUPPORTS,
                f"{ind.name} confirmed by {by}.",
                ind.source,
            )
        )
    # Decompression acts on a structural cause, so at least one diagnosis must be shown on
    # imaging; nerve tests alone show that a nerve suffers, not why.
    if not imaging:
        unconfirmed = [i for i in decompression_fits if i not in imaging]
        imaging_tests = sorted(
            {t for i in unconfirmed for t in i.confirmed_by if kb.diagnostic_test(t).imaging}
        )
        lead = (
            "Confirmed only by nerve tests so far"
            if confirmed
            else "No diagnosis is confirmed by a diagnostic test yet"
        )
        reasons.append(
            make_reason(
                "R-CONFIRMED-DIAGNOSIS",
                Effect.NEEDS_INFORMATION,
                f"{lead} ("
                + ", ".join(i.name for i in unconfirmed)
                + "). Imaging that can confirm it: "
                + ", ".join(kb.diagnostic_test(t).name for t in imaging_tests)
                + ".",
                cite(*(i.source for i in unconfirmed)),
            )
        )
    neuropathy = [i for i in decompression_fits if i.requires_spinal_cause]
    spinal_causes = [i for i in imaging if not i.requires_spinal_cause]
    if neuropathy and not spinal_causes:
        reasons.append(
            make_reason(
                "R-NEUROPATHY-SPINAL-CAUSE",
                Effect.NEEDS_INFORMATION,
                "Neuropathy qualifies only when a spinal cause (disc, degeneration, stenosis, "
                "nerve root) is confirmed; decompression does not treat neuropathy from other "
                "causes such as diabetes.",
                cite(*(i.source for i in neuropathy)),
            )
        )
    return reasons


def _care_reasons(intake: Intake, kb: Knowledge) -> list[Reason]:
    reasons: list[Reason] = []
    first_line = [t for t in intake.conservative_care if kb.care_option(t.option).first_line]
    decompression = [t for t in intake.conservative_care if t.option == "spinal_decompression"]
    pt = [t for t in first_line if t.option == "physical_therapy"]
    if decompression and all(t.failed for t in decompression):
        if pt and all(t.failed for t in pt):
            reasons.append(
                make_reason(
                    "R-ESCALATE",
                    Effect.EXCLUDES,
                    "Decompression and physical therapy have both been completed without lasting "
                    "relief: consider the escalation options rather than another course.",
                )
            )
        else:
            reasons.append(
                make_reason(
                    "R-DECOMPRESSION-TRIED",
                    Effect.EXCLUDES,
                    "A previous decompression course did not bring lasting relief and physical "
                    "therapy has not been tried: physical therapy is the next step.",
                )
            )
    if not first_line:
        untried = [c.name.lower() for c in kb.conservative_care if c.first_line]
        reasons.append(
            make_reason(
                "R-CONSERVATIVE-FIRST",
                Effect.NEEDS_INFORMATION,
                "Conservative care has not been tried yet; decompression is not typically "
                "first-line. Try: " + ", ".join(untried) + ".",
            )
        )
    elif all(not t.failed for t in first_line):
        reasons.append(
            make_reason(
                "R-CONSERVATIVE-WORKING",
                Effect.NEEDS_INFORMATION,
                "Conservative care is helping: continue it and re-screen if relief stops.",
            )
        )
    else:
        tried = ", ".join(
            f"{kb.care_option(t.option).name.lower()} ({t.weeks:g} week"
            f"{'' if t.weeks == 1 else 's'}, "
            f"{t.result.value.replace('_', ' ')})"
            for t in first_line
        )
        reasons.append(
            make_reason(
                "R-CONSERVATIVE-FIRST",
                Effect.SUPPORTS,
                f"Conservative care tried without lasting relief: {tried}.",
            )
        )
    return reasons


def _baseline_reasons(intake: Intake) -> list[Reason]:
    if intake.region is Region.LUMBAR and intake.odi is None:
        return [
            make_reason(
                "R-BASELINE-MEASURE",
                Effect.NEEDS_INFORMATION,
                "Record a baseline Oswestry Disability Index so the response can be judged.",
            )
        ]
    if intake.region is Region.CERVICAL and intake.ndi is None:
        return [
            make_reason(
                "R-BASELINE-MEASURE",
                Effect.NEEDS_INFORMATION,
                "Record a baseline Neck Disability Index so the response can be judged.",
            )
        ]
    return []


def decide_candidacy(intake: Intake) -> CandidacyDecision:
    """Decide whether ``intake`` describes a candidate for decompression, with reasons."""
    kb = load_knowledge()
    red_flag_reasons, urgent = _red_flag_reasons(intake, kb)
    ci_reasons, findings = _contraindication_reasons(intake, kb)
    reasons = [
        *red_flag_reasons,
        *ci_reasons,
        *_diagnosis_reasons(intake, kb),
        *_care_reasons(intake, kb),
        *_baseline_reasons(intake),
    ]
    effects = {r.effect for r in reasons}
    if Effect.URGENT in effects:
        status = CandidacyStatus.URGENT_REFERRAL
    elif Effect.EXCLUDES in effects:
        status = CandidacyStatus.NOT_A_CANDIDATE
    elif Effect.NEEDS_INFORMATION in effects:
        status = CandidacyStatus.NEEDS_MORE_INFORMATION
    else:
        status = CandidacyStatus.CANDIDATE
    return CandidacyDecision(
        status=status,
        reasons=reasons,
        contraindications=findings,
        urgent_red_flags=urgent,
        statements=_statements(kb),
    )


# --- pathway ---------------------------------------------------------------------------


def _steps(kb: Knowledge, ids: list[str], inapplicable: frozenset[str] = frozenset()) -> list[
    PathwayStep
]:
    return [
        PathwayStep(
            order=n,
            id=step_id,
            text=kb.pathway_step(step_id).text,
            applicable=step_id not in inapplicable,
            citation=list(kb.pathway_step(step_id).source),
        )
        for n, step_id in enumerate(ids, start=1)
    ]


def _escalation_steps(intake: Intake, kb: Knowledge) -> list[PathwayStep]:
    tear = any(r.annular_tear for r in intake.diagnostic_results)
    # Biologic disc repair is only for pain driven by an annular tear (seed 003).
    skip = frozenset() if tear else frozenset({"biologic_disc_repair"})
    return _steps(kb, ["medication_injections", "surgical_consult", "biologic_disc_repair"], skip)


def recommend_pathway(intake: Intake, decision: CandidacyDecision) -> Pathway:
    """The recommended pathway for ``intake`` given its candidacy ``decision``."""
    kb = load_knowledge()
    fired = {r.rule_id for r in decision.reasons if r.effect is not Effect.SUPPORTS}
    status = decision.status
    if status is CandidacyStatus.URGENT_REFERRAL:
        return Pathway(
            kind=PathwayKind.URGENT_REFERRAL,
            steps=_steps(kb, ["emergency_assessment"]),
            reasons=decision.reasons_for("R-URGENT-RED-FLAG"),
        )
    if status is CandidacyStatus.NOT_A_CANDIDATE:
        if decision.absolute_contraindications:
            return Pathway(
                kind=PathwayKind.CLINICIAN_REVIEW,
                steps=_steps(kb, ["clinician_review_alternatives"]),
                reasons=decision.reasons_for("R-ABSOLUTE-CONTRAINDICATION"),
            )
        if "R-ESCALATE" in fired:
            return Pathway(
                kind=PathwayKind.ESCALATION,
                steps=_escalation_steps(intake, kb),
                reasons=decision.reasons_for("R-ESCALATE"),
            )
        return Pathway(
            kind=PathwayKind.PHYSICAL_THERAPY,
            steps=_steps(kb, ["physical_therapy_course"]),
            reasons=[
                *decision.reasons_for("R-PT-PREFERRED"),
                *decision.reasons_for("R-DECOMPRESSION-TRIED"),
            ],
        )
    if status is CandidacyStatus.NEEDS_MORE_INFORMATION:
        missing = [r for r in decision.reasons if r.effect is Effect.NEEDS_INFORMATION]
        care_only = all(
            r.rule_id in ("R-CONSERVATIVE-FIRST", "R-CONSERVATIVE-WORKING") for r in missing
        )
        if care_only:
            return Pathway(
                kind=PathwayKind.CONSERVATIVE_CARE_FIRST,
                steps=_steps(kb, ["try_conservative_care"]),
                reasons=missing,
            )
        return Pathway(
            kind=PathwayKind.COMPLETE_ASSESSMENT,
            steps=_steps(kb, ["complete_assessment"]),
            reasons=missing,
        )
    # Candidate.
    has_neuropathy = any(kb.indication(i).requires_spinal_cause for i in intake.diagnosis_ids())
    pt_trials = [t for t in intake.conservative_care if t.option == "physical_therapy"]
    pt_failed = bool(pt_trials) and all(t.result is not CareResult.HELPED for t in pt_trials)
    if has_neuropathy:
        kind = PathwayKind.DECOMPRESSION_WITH_NEUROPATHY_ADJUNCTS
        step_ids = ["decompression_course", "neuropathy_adjuncts", "escalate_if_no_benefit"]
        reason = make_reason(
            "R-PATHWAY-NEUROPATHY",
            Effect.SUPPORTS,
            "Neuropathy with a spinal cause: decompression combined with physical therapy, "
            "nutritional support and nerve therapies.",
        )
    elif pt_failed:
        kind = PathwayKind.DECOMPRESSION
        step_ids = ["decompression_course", "home_exercise", "escalate_if_no_benefit"]
        reason = make_reason(
            "R-PATHWAY-PT-DONE",
            Effect.SUPPORTS,
            "Physical therapy already tried without lasting relief: decompression with a home "
            "exercise programme.",
        )
    else:
        kind = PathwayKind.DECOMPRESSION_THEN_PT
        step_ids = ["decompression_course", "pt_after_decompression", "escalate_if_no_benefit"]
        reason = make_reason(
            "R-PATHWAY-SEQUENTIAL",
            Effect.SUPPORTS,
            "Structural disc-related pain: decompression first to reduce the mechanical load, "
            "then physical therapy to rebuild the stabilising muscles.",
        )
    return Pathway(kind=kind, steps=_steps(kb, step_ids), reasons=[reason])


def screen(intake: Intake) -> ScreeningResult:
    """Candidacy decision and recommended pathway for ``intake``."""
    decision = decide_candidacy(intake)
    return ScreeningResult(decision=decision, pathway=recommend_pathway(intake, decision))
