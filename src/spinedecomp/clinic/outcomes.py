"""Outcomes: responder status by MCID, immediate and sustained improvement, cohort summary.

Definitions used (see docs/clinic.md):
- responder on a measure: improvement from baseline reaches the measure's MCID
  (NPRS >= 2 points; ODI >= 10 points or >= 30 %; NDI >= 10 points);
- responder overall: responder on at least one recorded measure;
- immediate improvement: responder at discharge (end of the course);
- sustained improvement: responder at the 6-month follow-up, against the same baseline.
The cohort summary sets the clinic's rates beside the published 86 % and 36.8 %, with the
caveats of those figures, and Wilson 95 % intervals so small clinics are not over-read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spinedecomp.clinic.knowledge import load_knowledge
from spinedecomp.clinic.questionnaires import NdiAnswers, Nprs, OdiAnswers, score_ndi, score_odi
from spinedecomp.clinic.reasons import Effect, Reason, make_reason
from spinedecomp.clinic.types import Region

__all__ = [
    "CohortSummary",
    "Measure",
    "Measurement",
    "OutcomeChange",
    "PatientOutcome",
    "PublishedComparison",
    "Rate",
    "ResponderStatus",
    "assess_response",
    "reassessment_review",
    "summarise_cohort",
    "wilson_interval",
]


class Measure(StrEnum):
    """Outcome measures."""

    NPRS = "nprs"
    ODI = "odi"
    NDI = "ndi"


class Measurement(BaseModel):
    """Outcome measures taken at one time point (each answer validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nprs: Nprs | None = None
    odi: OdiAnswers | None = None
    ndi: NdiAnswers | None = None

    @model_validator(mode="after")
    def _something(self) -> Measurement:
        if self.nprs is None and self.odi is None and self.ndi is None:
            raise ValueError("a measurement needs at least one of nprs, odi, ndi")
        return self

    def value(self, measure: Measure) -> float | None:
        """Score of ``measure`` (NPRS 0-10, ODI % 0-100, NDI points 0-50), or None."""
        if measure is Measure.NPRS:
            return None if self.nprs is None else float(self.nprs)
        if measure is Measure.ODI:
            return None if self.odi is None else score_odi(self.odi).percent
        return None if self.ndi is None else score_ndi(self.ndi).points


class OutcomeChange(BaseModel):
    """Change on one measure from baseline to follow-up (improvement is positive)."""

    model_config = ConfigDict(frozen=True)

    measure: Measure
    baseline: float
    follow_up: float
    improvement: float
    percent_improvement: float | None
    threshold: str
    responder: bool
    reason: Reason


class ResponderStatus(BaseModel):
    """Responder status on every measure recorded at both time points."""

    model_config = ConfigDict(frozen=True)

    changes: list[OutcomeChange]
    responder: bool


def _change(measure: Measure, before: float, after: float) -> OutcomeChange:
    kb = load_knowledge().outcomes
    improvement = round(before - after, 2)
    percent = None if before == 0 else round(100.0 * improvement / before, 1)
    if measure is Measure.NPRS:
        responder = improvement >= kb.nprs.mcid_points
        threshold = f">= {kb.nprs.mcid_points:g} points"
        rule = "R-OUTCOME-NPRS"
    elif measure is Measure.ODI:
        by_fraction = percent is not None and percent >= 100 * kb.odi.mcid_fraction
        responder = improvement >= kb.odi.mcid_points or by_fraction
        threshold = f">= {kb.odi.mcid_points:g} points or >= {kb.odi.mcid_fraction:.0%}"
        rule = "R-OUTCOME-ODI"
    else:
        responder = improvement >= kb.ndi.responder_points
        threshold = (
            f">= {kb.ndi.responder_points:g} points (MCID {kb.ndi.mcid_points:g}, "
            f"MDC {kb.ndi.mdc_points:g})"
        )
        rule = "R-OUTCOME-NDI"
    verdict = "responder" if responder else "not a responder"
    reason = make_reason(
        rule,
        Effect.SUPPORTS if responder else Effect.INFO,
        f"{measure.value.upper()} {before:g} -> {after:g} (improvement {improvement:g}; "
        f"threshold {threshold}): {verdict}.",
    )
    return OutcomeChange(
        measure=measure,
        baseline=before,
        follow_up=after,
        improvement=improvement,
        percent_improvement=percent,
        threshold=threshold,
        responder=responder,
        reason=reason,
    )


def assess_response(baseline: Measurement, follow_up: Measurement) -> ResponderStatus:
    """Responder status from ``baseline`` to ``follow_up`` on every measure both recorded."""
    changes: list[OutcomeChange] = []
    for measure in Measure:
        before, after = baseline.value(measure), follow_up.value(measure)
        if before is not None and after is not None:
            changes.append(_change(measure, before, after))
    return ResponderStatus(changes=changes, responder=any(c.responder for c in changes))


def reassessment_review(baseline: Measurement, current: Measurement) -> Reason:
    """At a re-assessment: no MCID on any measure -> the clinician reviews the pathway."""
    status = assess_response(baseline, current)
    if status.responder:
        return make_reason(
            "R-OUTCOME-REASSESS",
            Effect.SUPPORTS,
            "Improvement reaches the MCID on at least one measure: continue the plan.",
        )
    return make_reason(
        "R-OUTCOME-REASSESS",
        Effect.CAUTION,
        "No measure has improved by its MCID yet: review the diagnosis and the pathway.",
    )


class PatientOutcome(BaseModel):
    """One patient's measurements at baseline, discharge and the 6-month follow-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1)
    region: Region
    baseline: Measurement
    discharge: Measurement | None = None
    six_months: Measurement | None = None

    def immediate_improvement(self) -> bool | None:
        """Responder at discharge (None if discharge not measured)."""
        if self.discharge is None:
            return None
        return assess_response(self.baseline, self.discharge).responder

    def sustained_improvement(self) -> bool | None:
        """Responder at six months against the baseline (None if not measured)."""
        if self.six_months is None:
            return None
        return assess_response(self.baseline, self.six_months).responder


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion (95 % by default)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError("need 0 <= successes <= n and n > 0")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; floating point can miss it slightly.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


class Rate(BaseModel):
    """A clinic proportion with its 95 % interval (None when nobody was measured)."""

    model_config = ConfigDict(frozen=True)

    measured: int = Field(ge=0)
    improved: int = Field(ge=0)
    rate: float | None
    ci_low: float | None
    ci_high: float | None


class PublishedComparison(BaseModel):
    """A published figure set beside the clinic's own."""

    model_config = ConfigDict(frozen=True)

    label: str
    published: float
    clinic: Rate
    caveat: str | None
    citation: list[str]


class CohortSummary(BaseModel):
    """The clinic's outcome figures beside the published ones."""

    model_config = ConfigDict(frozen=True)

    patients: int
    immediate: Rate
    sustained: Rate
    comparisons: list[PublishedComparison]


def _rate(flags: list[bool | None]) -> Rate:
    measured = [f for f in flags if f is not None]
    improved = sum(1 for f in measured if f)
    if not measured:
        return Rate(measured=0, improved=0, rate=None, ci_low=None, ci_high=None)
    low, high = wilson_interval(improved, len(measured))
    return Rate(
        measured=len(measured),
        improved=improved,
        rate=round(improved / len(measured), 4),
        ci_low=round(low, 4),
        ci_high=round(high, 4),
    )


def summarise_cohort(outcomes: Sequence[PatientOutcome]) -> CohortSummary:
    """Immediate and sustained improvement rates beside the published 86 % and 36.8 %."""
    kb = load_knowledge()
    immediate = _rate([o.immediate_improvement() for o in outcomes])
    sustained = _rate([o.sustained_improvement() for o in outcomes])
    comparisons: list[PublishedComparison] = []
    for figure_id, clinic_rate in (
        ("immediate_improvement_86", immediate),
        ("sustained_improvement_6mo_368", sustained),
    ):
        figure = kb.evidence_figure(figure_id)
        assert figure.value is not None
        comparisons.append(
            PublishedComparison(
                label=figure.label,
                published=figure.value,
                clinic=clinic_rate,
                caveat=figure.caveat,
                citation=list(figure.source),
            )
        )
    return CohortSummary(
        patients=len(outcomes), immediate=immediate, sustained=sustained, comparisons=comparisons
    )
