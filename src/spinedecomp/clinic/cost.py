"""Cost estimate: per provider type and course length, with coverage by payer.

Decompression is often not covered (private plans call it experimental) and Medicare
generally does not pay for S9090, so the out-of-pocket range assumes the patient pays the
whole cost; the coverage note says when a plan might pay part of it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.clinic.knowledge import Coverage, load_knowledge
from spinedecomp.clinic.reasons import Effect, Reason, cite, make_reason
from spinedecomp.clinic.types import Payer, ProviderType

__all__ = ["BillingCodeNote", "CostEstimate", "ProviderEstimate", "estimate_cost"]


class ProviderEstimate(BaseModel):
    """Cost of a course with one kind of provider, in whole US dollars."""

    model_config = ConfigDict(frozen=True)

    provider: ProviderType
    sessions_low: int = Field(ge=1)
    sessions_high: int = Field(ge=1)
    per_session_low: int = Field(ge=0)
    per_session_high: int = Field(ge=0)
    course_low: int = Field(ge=0)
    course_high: int = Field(ge=0)
    out_of_pocket_per_session_low: int = Field(ge=0)
    out_of_pocket_per_session_high: int = Field(ge=0)
    out_of_pocket_course_low: int = Field(ge=0)
    out_of_pocket_course_high: int = Field(ge=0)
    above_quoted_course_max: bool
    citation: list[str]


class BillingCodeNote(BaseModel):
    """A billing code to mention to the payer."""

    model_config = ConfigDict(frozen=True)

    code: str
    system: str
    description: str
    citation: list[str]


class CostEstimate(BaseModel):
    """Cost estimate for a course, by provider, with coverage for the patient's payer."""

    model_config = ConfigDict(frozen=True)

    payer: Payer
    coverage: Coverage
    coverage_note: str
    sessions_from_plan: int | None
    providers: list[ProviderEstimate]
    general_per_session_low: int
    general_per_session_high: int
    quoted_course_max: int
    billing_codes: list[BillingCodeNote]
    reasons: list[Reason]


def estimate_cost(
    payer: Payer, sessions: int | None = None, provider: ProviderType | None = None
) -> CostEstimate:
    """Estimate the cost of a course.

    ``sessions`` (from the course plan) fixes the course length; without it each
    provider's typical course range is used. ``provider`` limits the table to one
    provider type; without it all three are shown.
    """
    if sessions is not None and sessions < 1:
        raise ValueError("sessions must be at least 1")
    kb = load_knowledge()
    costs = kb.costs
    rule = kb.payer_rule(payer)
    # Out-of-pocket = full cost: no payer in the table reliably covers decompression.
    rows: list[ProviderEstimate] = []
    for entry in costs.providers:
        if provider is not None and entry.provider != provider:
            continue
        low_n = sessions if sessions is not None else entry.course_sessions_min
        high_n = sessions if sessions is not None else entry.course_sessions_max
        course_low = low_n * entry.per_session_low
        course_high = high_n * entry.per_session_high
        rows.append(
            ProviderEstimate(
                provider=entry.provider,
                sessions_low=low_n,
                sessions_high=high_n,
                per_session_low=entry.per_session_low,
                per_session_high=entry.per_session_high,
                course_low=course_low,
                course_high=course_high,
                out_of_pocket_per_session_low=entry.per_session_low,
                out_of_pocket_per_session_high=entry.per_session_high,
                out_of_pocket_course_low=course_low,
                out_of_pocket_course_high=course_high,
                above_quoted_course_max=course_high > costs.quoted_course_max,
                citation=list(entry.source),
            )
        )
    reasons = [
        make_reason(
            "R-COST-PROVIDER",
            Effect.INFO,
            "Per-session prices and typical course lengths by provider type; online estimates "
            f"put a session at ${costs.general_per_session.low}-${costs.general_per_session.high} "
            f"and a full course at up to ${costs.quoted_course_max:,}.",
        ),
        make_reason("R-COST-COVERAGE", Effect.INFO, rule.note, rule.source),
    ]
    if any(r.above_quoted_course_max for r in rows):
        reasons.append(
            make_reason(
                "R-COST-PROVIDER",
                Effect.CAUTION,
                f"The upper end of this table exceeds the ${costs.quoted_course_max:,} full-course "
                "figure quoted elsewhere: the seed sources disagree, so ask the clinic for a "
                "written quote.",
                cite([costs.quoted_course_max_source]),
            )
        )
    return CostEstimate(
        payer=payer,
        coverage=rule.coverage,
        coverage_note=rule.note,
        sessions_from_plan=sessions,
        providers=rows,
        general_per_session_low=costs.general_per_session.low,
        general_per_session_high=costs.general_per_session.high,
        quoted_course_max=costs.quoted_course_max,
        billing_codes=[
            BillingCodeNote(
                code=b.code, system=b.system, description=b.description, citation=list(b.source)
            )
            for b in costs.billing_codes
        ],
        reasons=reasons,
    )
