"""One call from an intake to everything the clinic shows: scores, decision, pathway, plan,
cost and the patient-facing summary. Used by ``spinedecomp screen`` and, later, the web API."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from spinedecomp.clinic.cost import CostEstimate, estimate_cost
from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import load_knowledge
from spinedecomp.clinic.plan import CoursePlan, plan_course
from spinedecomp.clinic.questionnaires import NdiScore, OdiScore, score_ndi, score_odi
from spinedecomp.clinic.screening import (
    CandidacyDecision,
    CandidacyStatus,
    Pathway,
    screen,
)
from spinedecomp.clinic.summary import PatientSummary, patient_summary
from spinedecomp.clinic.types import Chronicity, Region

__all__ = ["BaselineScores", "ClinicReport", "build_report"]


class BaselineScores(BaseModel):
    """Baseline outcome scores from the intake."""

    model_config = ConfigDict(frozen=True)

    nprs: int
    odi: OdiScore | None
    ndi: NdiScore | None


class ClinicReport(BaseModel):
    """Screening report for one intake (``model_dump(mode="json")`` for storage and APIs)."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    region: Region
    chronicity: Chronicity
    knowledge_status: str
    scores: BaselineScores
    decision: CandidacyDecision
    pathway: Pathway
    plan: CoursePlan | None
    cost: CostEstimate | None
    summary: PatientSummary


def build_report(intake: Intake, start_date: date | None = None) -> ClinicReport:
    """Screen ``intake`` and build the full report.

    A plan is made only for a candidate; a cost estimate is given unless the patient needs
    urgent referral (cost is not the conversation to have then). ``start_date`` (optional,
    never read from a clock) dates the plan's checkpoints.
    """
    screening = screen(intake)
    status = screening.decision.status
    plan = plan_course(intake, screening, start_date) if status is CandidacyStatus.CANDIDATE else None
    cost = (
        None
        if status is CandidacyStatus.URGENT_REFERRAL
        else estimate_cost(
            intake.payer,
            sessions=plan.sessions if plan is not None else None,
            provider=intake.provider,
        )
    )
    scores = BaselineScores(
        nprs=intake.pain_nprs,
        odi=score_odi(intake.odi) if intake.odi is not None else None,
        ndi=score_ndi(intake.ndi) if intake.ndi is not None else None,
    )
    return ClinicReport(
        patient_id=intake.patient_id,
        region=intake.region,
        chronicity=intake.chronicity,
        knowledge_status=load_knowledge().review.status,
        scores=scores,
        decision=screening.decision,
        pathway=screening.pathway,
        plan=plan,
        cost=cost,
        summary=patient_summary(intake.region, screening, plan, cost),
    )
