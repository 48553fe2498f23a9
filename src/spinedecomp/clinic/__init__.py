"""Clinic workflow: screening, pathways, course plans, visits, outcomes and cost.

Pure rules and data, no I/O: every clinical list and number comes from the cited
knowledge base ``knowledge.yaml`` (see :mod:`spinedecomp.clinic.knowledge`), read once
through importlib.resources. Dates are passed in; nothing here reads a clock.

Typical use::

    intake = Intake.model_validate(data)        # validation errors name the field
    report = build_report(intake)               # decision, pathway, plan, cost, summary
    report.model_dump(mode="json")              # for storage and the web API
"""

from spinedecomp.clinic.cost import CostEstimate, estimate_cost
from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import Knowledge, load_knowledge
from spinedecomp.clinic.outcomes import (
    CohortSummary,
    Measurement,
    PatientOutcome,
    assess_response,
    summarise_cohort,
)
from spinedecomp.clinic.plan import (
    NEWTONS_PER_LB,
    CoursePlan,
    ForceChange,
    Progression,
    StartingProtocol,
    next_session_protocol,
    plan_course,
    starting_protocol,
)
from spinedecomp.clinic.questionnaires import NdiAnswers, OdiAnswers, score_ndi, score_odi
from spinedecomp.clinic.reasons import Effect, Reason
from spinedecomp.clinic.report import ClinicReport, build_report
from spinedecomp.clinic.screening import (
    CandidacyDecision,
    CandidacyStatus,
    Pathway,
    PathwayKind,
    ScreeningResult,
    screen,
)
from spinedecomp.clinic.summary import PatientSummary
from spinedecomp.clinic.types import Chronicity, Payer, ProviderType, Region, Severity, Sex
from spinedecomp.clinic.visits import (
    Alert,
    GoNoGo,
    PostSessionAssessment,
    PostSessionRecord,
    PreSessionCheck,
    assess_post_session,
    pre_session_check,
)

__all__ = [
    "NEWTONS_PER_LB",
    "Alert",
    "CandidacyDecision",
    "CandidacyStatus",
    "Chronicity",
    "ClinicReport",
    "CohortSummary",
    "CostEstimate",
    "CoursePlan",
    "Effect",
    "ForceChange",
    "GoNoGo",
    "Intake",
    "Knowledge",
    "Measurement",
    "NdiAnswers",
    "OdiAnswers",
    "Pathway",
    "PathwayKind",
    "PatientOutcome",
    "PatientSummary",
    "Payer",
    "PostSessionAssessment",
    "PostSessionRecord",
    "PreSessionCheck",
    "Progression",
    "ProviderType",
    "Reason",
    "Region",
    "ScreeningResult",
    "Severity",
    "Sex",
    "StartingProtocol",
    "assess_post_session",
    "assess_response",
    "build_report",
    "estimate_cost",
    "load_knowledge",
    "next_session_protocol",
    "plan_course",
    "pre_session_check",
    "score_ndi",
    "score_odi",
    "screen",
    "starting_protocol",
    "summarise_cohort",
]
