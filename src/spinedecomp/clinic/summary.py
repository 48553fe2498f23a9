"""Patient-facing summary in plain language: decision, next steps, what to expect, when to call."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from spinedecomp.clinic.cost import CostEstimate
from spinedecomp.clinic.knowledge import RedFlagKind, load_knowledge
from spinedecomp.clinic.plan import CoursePlan
from spinedecomp.clinic.reasons import Effect, cite
from spinedecomp.clinic.screening import CandidacyStatus, ScreeningResult
from spinedecomp.clinic.types import ProviderType, Region

__all__ = ["PatientSummary", "SummarySection", "patient_summary"]

_HEADLINES: dict[CandidacyStatus, str] = {
    CandidacyStatus.CANDIDATE: (
        "Non-surgical spinal decompression looks like a reasonable option for you."
    ),
    CandidacyStatus.NOT_A_CANDIDATE: "Decompression is not the right treatment for you now.",
    CandidacyStatus.NEEDS_MORE_INFORMATION: (
        "We need a little more information before deciding on decompression."
    ),
    CandidacyStatus.URGENT_REFERRAL: (
        "Please get emergency medical care today. Do not wait for a decompression appointment."
    ),
}

_PROVIDER_NAMES: dict[ProviderType, str] = {
    ProviderType.CHIROPRACTOR: "Chiropractor",
    ProviderType.PHYSICAL_THERAPIST: "Physical therapist",
    ProviderType.SPECIALISED_CLINIC: "Specialised clinic",
}


class SummarySection(BaseModel):
    """One titled section of the summary."""

    model_config = ConfigDict(frozen=True)

    title: str
    lines: list[str]
    citation: list[str]


class PatientSummary(BaseModel):
    """Plain-language summary for the patient."""

    model_config = ConfigDict(frozen=True)

    headline: str
    sections: list[SummarySection]

    def render_text(self) -> str:
        """The summary as plain text (one bullet per line)."""
        out = [self.headline, ""]
        for section in self.sections:
            out.append(section.title)
            out.extend(f"  - {line}" for line in section.lines)
            out.append("")
        return "\n".join(out).rstrip() + "\n"


def patient_summary(
    region: Region,
    screening: ScreeningResult,
    plan: CoursePlan | None,
    cost: CostEstimate | None,
) -> PatientSummary:
    """Build the patient-facing summary from the screening, plan and cost estimate."""
    kb = load_knowledge()
    decision, pathway = screening.decision, screening.pathway
    sections: list[SummarySection] = []

    found = [r for r in decision.reasons if r.effect not in (Effect.SUPPORTS, Effect.INFO)]
    if found:
        sections.append(
            SummarySection(
                title="What we found",
                lines=[r.message for r in found],
                citation=cite(*(r.citation for r in found)),
            )
        )
    sections.append(
        SummarySection(
            title="Recommended next steps",
            lines=[s.text for s in pathway.steps if s.applicable],
            citation=cite(*(s.citation for s in pathway.steps)),
        )
    )
    if plan is not None:
        per_week = ", ".join(str(w.sessions) for w in plan.frequency)
        lines = [
            f"About {plan.sessions} sessions over {plan.weeks} weeks "
            f"(sessions per week: {per_week}).",
            f"We check your progress after session {kb.plan.reassess_after_session} and at the "
            "end of the course, and again about 6 months later.",
        ]
        if plan.pt_course is not None:
            lines.append(
                f"Then about {plan.pt_course.sessions} physical therapy sessions over "
                f"{plan.pt_course.weeks} weeks."
            )
        sections.append(
            SummarySection(
                title="Your plan",
                lines=lines,
                citation=cite(*(r.citation for r in plan.reasons)),
            )
        )
    if decision.status is not CandidacyStatus.URGENT_REFERRAL:
        minutes = kb.visit_minutes
        harness = (
            "A harness goes around your waist and pelvis."
            if region is Region.LUMBAR
            else "A harness or cradle supports your head and neck."
        )
        sections.append(
            SummarySection(
                title="What to expect in a session",
                lines=[
                    f"A visit takes about {minutes.low}-{minutes.high} minutes.",
                    f"You lie on a padded table. {harness}",
                    "The table gently pulls and releases in cycles while the clinician watches "
                    "the force on screen.",
                    "You should feel a gentle stretch, not pain. You hold a stop switch and can "
                    "stop the table at any moment.",
                ],
                citation=cite(
                    minutes.source,
                    ["seeds/000_4f6379353aa37af4.txt", "seeds/001_deae0fd9ccbd9a89.txt"],
                ),
            )
        )
        common = [s for s in kb.side_effects if s.expected]
        others = [s for s in kb.side_effects if not s.expected and s.id != "persisting_pain"]
        sections.append(
            SummarySection(
                title="After a session",
                lines=[
                    "It is common to feel sore or stiff: "
                    + ", ".join(s.name.lower() for s in common)
                    + ".",
                    "Less often: " + ", ".join(s.name.lower() for s in others) + ".",
                ],
                citation=cite(*(s.source for s in kb.side_effects)),
            )
        )
    contact = [r for r in kb.red_flags if r.kind is RedFlagKind.CONTACT_NOW]
    emergency = [r for r in kb.red_flags if r.kind is RedFlagKind.EMERGENCY]
    sections.append(
        SummarySection(
            title="Call us now if you have",
            lines=[r.name for r in contact],
            citation=cite(*(r.source for r in contact)),
        )
    )
    sections.append(
        SummarySection(
            title="Go to emergency care at once if you have",
            lines=[r.name for r in emergency],
            citation=cite(*(r.source for r in emergency)),
        )
    )
    if cost is not None and decision.status is not CandidacyStatus.URGENT_REFERRAL:
        lines = [
            f"{_PROVIDER_NAMES[p.provider]}: ${p.per_session_low}-${p.per_session_high} a "
            f"session; {p.sessions_low}"
            + (f"-{p.sessions_high}" if p.sessions_high != p.sessions_low else "")
            + f" sessions: about ${p.course_low:,}-${p.course_high:,} in all."
            for p in cost.providers
        ]
        lines.append(cost.coverage_note)
        sections.append(
            SummarySection(
                title="Cost",
                lines=lines,
                citation=cite(*(r.citation for r in cost.reasons)),
            )
        )
    sections.append(
        SummarySection(
            title="Good to know",
            lines=[s.text for s in decision.statements],
            citation=cite(*(s.citation for s in decision.statements)),
        )
    )
    return PatientSummary(headline=_HEADLINES[decision.status], sections=sections)
