"""Typed loader of the clinic knowledge base (knowledge.yaml).

The YAML file is the single reviewed source of every clinical list and number the clinic
rules use. Loading validates it completely: every entry must cite at least one source,
every cited source must be declared in ``sources:``, and every cross-reference (tests that
confirm a diagnosis, contraindications a test can detect, rule ids) must resolve. A file
that breaks any of this is rejected with a pydantic ``ValidationError`` naming the entry.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from importlib import resources
from typing import Annotated, Any, Literal, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spinedecomp.clinic.types import (
    Chronicity,
    Payer,
    ProviderType,
    Region,
    Severity,
    Sex,
)

__all__ = [
    "Adjunct",
    "Choice",
    "CitedEntry",
    "ConservativeCareOption",
    "Contraindication",
    "ContraindicationKind",
    "Coverage",
    "DiagnosticTest",
    "EvidenceDirection",
    "EvidenceFigure",
    "Fit",
    "Indication",
    "Knowledge",
    "RedFlag",
    "RedFlagKind",
    "Rule",
    "SideEffect",
    "Source",
    "knowledge_text",
    "load_knowledge",
    "parse_knowledge",
]

NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    # Typos in the YAML must fail loudly rather than be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """A seed article or a published source that entries cite."""

    kind: Literal["seed", "published"]
    title: NonEmptyStr


class CitedEntry(_Model):
    """Base of every knowledge entry: it must name at least one source."""

    source: list[NonEmptyStr] = Field(min_length=1)
    note: str | None = None
    check: bool = False

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # A single citation may be written as a plain string in the YAML.
        if isinstance(value, str):
            return [value]
        return value


class ConservativeCareOption(CitedEntry):
    """A conservative-care option (tried before decompression when ``first_line``)."""

    id: NonEmptyStr
    name: NonEmptyStr
    first_line: bool


class IcdCode(_Model):
    """An ICD-10-CM code for an indication."""

    code: Annotated[str, Field(pattern=r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")]
    description: NonEmptyStr
    region: Region | None = None
    check: bool = False


class Fit(StrEnum):
    """How well decompression fits a diagnosis."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    ADJUNCT = "adjunct"
    PT_PREFERRED = "pt_preferred"


class Indication(CitedEntry):
    """A condition decompression may treat, with its codes and confirming tests."""

    id: NonEmptyStr
    name: NonEmptyStr
    regions: list[Region] = Field(min_length=1)
    fit: Fit
    confirmed_by: list[str]
    icd10: list[IcdCode] = Field(min_length=1)
    cautions: list[str] = Field(default_factory=list)
    requires_spinal_cause: bool = False


class ContraindicationKind(StrEnum):
    """Absolute: never a candidate. Relative: needs clinician clearance."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class Contraindication(CitedEntry):
    """A reason not to treat, with the question asked at intake."""

    id: NonEmptyStr
    name: NonEmptyStr
    question: NonEmptyStr
    kind: ContraindicationKind
    asked_of: list[Sex] = Field(default_factory=lambda: list(Sex))


class DiagnosticTest(CitedEntry):
    """A diagnostic test and the contraindications a positive finding can reveal."""

    id: NonEmptyStr
    name: NonEmptyStr
    purpose: NonEmptyStr
    imaging: bool
    detects: list[str]


class SideEffect(CitedEntry):
    """A reported side effect of decompression."""

    id: NonEmptyStr
    name: NonEmptyStr
    expected: bool
    neurological: bool = False
    serious: bool = False


class RedFlagKind(StrEnum):
    """contact_now: call the patient now. emergency: same-day emergency referral."""

    CONTACT_NOW = "contact_now"
    EMERGENCY = "emergency"


class RedFlag(CitedEntry):
    """A symptom that must stop treatment and trigger contact or referral."""

    id: NonEmptyStr
    name: NonEmptyStr
    kind: RedFlagKind


class Adjunct(CitedEntry):
    """A therapy used alongside a session."""

    id: NonEmptyStr
    name: NonEmptyStr


class CourseRange(CitedEntry):
    """A range of sessions (and optionally weeks) for a course."""

    min_sessions: int = Field(ge=1)
    max_sessions: int = Field(ge=1)
    min_weeks: int | None = Field(default=None, ge=1)
    max_weeks: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> CourseRange:
        if self.min_sessions > self.max_sessions:
            raise ValueError("min_sessions is above max_sessions")
        if (self.min_weeks is None) != (self.max_weeks is None):
            raise ValueError("give both min_weeks and max_weeks, or neither")
        if self.min_weeks is not None and self.max_weeks is not None and (
            self.min_weeks > self.max_weeks
        ):
            raise ValueError("min_weeks is above max_weeks")
        return self


class CourseLengths(_Model):
    """Course lengths quoted by the seeds."""

    decompression_overall: CourseRange
    decompression_typical: CourseRange
    physical_therapy: CourseRange


class VisitMinutes(CitedEntry):
    """Length of one visit as patients are told."""

    low: int = Field(gt=0)
    high: int = Field(gt=0)


class ChronicityWeeks(CitedEntry):
    """Week thresholds between acute, subacute and chronic."""

    subacute_from: float = Field(gt=0)
    chronic_from: float = Field(gt=0)


class SessionsBySeverity(CitedEntry):
    """Base decompression sessions for each severity."""

    mild: int = Field(ge=1)
    moderate: int = Field(ge=1)
    severe: int = Field(ge=1)

    def for_severity(self, severity: Severity) -> int:
        """Sessions for ``severity``."""
        return {Severity.MILD: self.mild, Severity.MODERATE: self.moderate}.get(
            severity, self.severe
        )


class ChronicityAdjustment(CitedEntry):
    """Sessions added (or removed) for each chronicity class."""

    acute: int
    subacute: int
    chronic: int

    def for_chronicity(self, chronicity: Chronicity) -> int:
        """Adjustment for ``chronicity``."""
        return {Chronicity.ACUTE: self.acute, Chronicity.SUBACUTE: self.subacute}.get(
            chronicity, self.chronic
        )


class PtCourseSize(_Model):
    """Sessions and weeks of a PT course."""

    sessions: int = Field(ge=1)
    weeks: int = Field(ge=1)


class PtBySeverity(CitedEntry):
    """PT course size for each severity."""

    mild: PtCourseSize
    moderate: PtCourseSize
    severe: PtCourseSize

    def for_severity(self, severity: Severity) -> PtCourseSize:
        """PT course for ``severity``."""
        return {Severity.MILD: self.mild, Severity.MODERATE: self.moderate}.get(
            severity, self.severe
        )


class PlanParameters(_Model):
    """Numbers behind the course plan."""

    chronicity_weeks: ChronicityWeeks
    sessions_by_severity: SessionsBySeverity
    chronicity_adjustment: ChronicityAdjustment
    pt_sessions_by_severity: PtBySeverity
    reassess_after_session: int = Field(ge=1)
    reassess_note: NonEmptyStr
    reassess_source: NonEmptyStr
    follow_up_weeks_after_discharge: int = Field(ge=1)
    follow_up_source: NonEmptyStr
    max_sessions_per_week: int = Field(ge=1, le=7)


class StartFractions(_Model):
    """Fraction of body weight for the first lumbar max force, by chronicity."""

    acute: float = Field(gt=0, lt=1)
    subacute: float = Field(gt=0, lt=1)
    chronic: float = Field(gt=0, lt=1)

    def for_chronicity(self, chronicity: Chronicity) -> float:
        """Fraction for ``chronicity``."""
        return {Chronicity.ACUTE: self.acute, Chronicity.SUBACUTE: self.subacute}.get(
            chronicity, self.chronic
        )


class CapBySex(_Model):
    """First-sessions force cap in pounds, by sex."""

    female: float = Field(gt=0)
    male: float = Field(gt=0)
    other: float = Field(gt=0)

    def for_sex(self, sex: Sex) -> float:
        """Cap for ``sex``."""
        return {Sex.FEMALE: self.female, Sex.MALE: self.male}.get(sex, self.other)


class LumbarForce(CitedEntry):
    """Lumbar force guidance."""

    start_fraction_of_body_weight: StartFractions
    first_sessions: int = Field(ge=1)
    first_sessions_cap_lb: CapBySex
    step_lb: float = Field(gt=0)
    rest_fraction_of_max: float = Field(gt=0, le=1)
    rest_max_lb: float = Field(gt=0)
    ceiling_fraction_of_body_weight: float = Field(gt=0, le=1)
    floor_lb: float = Field(gt=0)
    hold_s: float = Field(ge=1, le=99)
    rest_s: float = Field(ge=1, le=99)
    angle_deg: float = Field(ge=0, le=30)
    first_duration_min: float = Field(gt=0)
    duration_min: float = Field(gt=0)


class CervicalAngles(_Model):
    """Cervical angle of pull by level."""

    upper: float = Field(ge=0, le=30)
    mid: float = Field(ge=0, le=30)
    lower: float = Field(ge=0, le=30)


class CervicalForce(CitedEntry):
    """Cervical force guidance."""

    start_lb: float = Field(gt=0)
    ceiling_lb: float = Field(gt=0)
    ceiling_fraction_of_body_weight: float = Field(gt=0, le=1)
    separation_min_lb: float = Field(gt=0)
    step_lb: float = Field(gt=0)
    rest_fraction_of_max: float = Field(gt=0, le=1)
    floor_lb: float = Field(gt=0)
    hold_s: float = Field(ge=1, le=99)
    rest_s: float = Field(ge=1, le=99)
    angle_deg: CervicalAngles
    first_duration_min: float = Field(gt=0)
    duration_min: float = Field(gt=0)


class ForceGuidance(_Model):
    """Force guidance per region."""

    lumbar: LumbarForce
    cervical: CervicalForce


class Choice(CitedEntry):
    """An engineering choice where no source gives the number directly."""

    id: NonEmptyStr
    text: NonEmptyStr


class NprsSpec(CitedEntry):
    """Pain NPRS range and MCID."""

    min: int
    max: int
    mcid_points: float = Field(gt=0)


class Band(_Model):
    """A score band starting at ``from_``."""

    label: NonEmptyStr
    from_: float = Field(alias="from", ge=0)
    severity: Severity


class OdiSpec(CitedEntry):
    """Oswestry Disability Index scoring and MCID."""

    sections: int
    max_missing: int = Field(ge=0)
    mcid_points: float = Field(gt=0)
    mcid_fraction: float = Field(gt=0, lt=1)
    bands: list[Band] = Field(min_length=1)


class NdiSpec(CitedEntry):
    """Neck Disability Index scoring and MCID."""

    sections: int
    max_missing: int = Field(ge=0)
    mcid_points: float = Field(gt=0)
    mdc_points: float = Field(gt=0)
    responder_points: float = Field(gt=0)
    bands: list[Band] = Field(min_length=1)


class OutcomeSpecs(_Model):
    """Outcome measures."""

    nprs: NprsSpec
    odi: OdiSpec
    ndi: NdiSpec


class EvidenceDirection(StrEnum):
    """Which way a figure points."""

    SUPPORTS = "supports"
    SCEPTICAL = "sceptical"
    MIXED = "mixed"
    PROMOTIONAL = "promotional"


class EvidenceFigure(CitedEntry):
    """A published or quoted evidence figure."""

    id: NonEmptyStr
    label: NonEmptyStr
    value: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1)
    direction: EvidenceDirection
    traced_to: str | None = None
    caveat: str | None = None


class ProviderCost(CitedEntry):
    """Cost of decompression with one kind of provider (seed 001 table)."""

    provider: ProviderType
    per_session_low: int = Field(ge=0)
    per_session_high: int = Field(ge=0)
    course_sessions_min: int = Field(ge=1)
    course_sessions_max: int = Field(ge=1)


class MoneyRange(CitedEntry):
    """A dollar range."""

    low: int = Field(ge=0)
    high: int = Field(ge=0)


class BillingCode(CitedEntry):
    """A procedure or billing code."""

    code: NonEmptyStr
    system: Literal["CPT", "HCPCS"]
    description: NonEmptyStr


class Coverage(StrEnum):
    """How a payer treats decompression."""

    SELF_PAY = "self_pay"
    OFTEN_NOT_COVERED = "often_not_covered"
    VARIES = "varies"


class PayerRule(CitedEntry):
    """Coverage note for one payer."""

    payer: Payer
    coverage: Coverage
    note: str  # required here, optional on other entries


class Costs(_Model):
    """Provider cost table, payer rules and billing codes."""

    providers: list[ProviderCost] = Field(min_length=1)
    general_per_session: MoneyRange
    quoted_course_max: int = Field(gt=0)
    quoted_course_max_source: NonEmptyStr
    billing_codes: list[BillingCode]
    payers: list[PayerRule]


class Statement(CitedEntry):
    """A plain statement shown to patients and clinicians."""

    id: NonEmptyStr
    text: NonEmptyStr


class PathwayStepText(CitedEntry):
    """Text of one pathway step."""

    id: NonEmptyStr
    text: NonEmptyStr


class Rule(CitedEntry):
    """A clinical rule the code applies; reasons cite it by id."""

    id: Annotated[str, Field(pattern=r"^R-[A-Z0-9-]+$")]
    title: NonEmptyStr


class Review(_Model):
    """Review state of the knowledge file."""

    status: Literal["draft", "reviewed"]
    reviewed_by: list[str]
    notes: str


class Knowledge(_Model):
    """The whole knowledge base, validated."""

    schema_version: Literal[1]
    review: Review
    sources: dict[str, Source] = Field(min_length=1)
    conservative_care: list[ConservativeCareOption]
    indications: list[Indication]
    contraindications: list[Contraindication]
    diagnostic_tests: list[DiagnosticTest]
    side_effects: list[SideEffect]
    red_flags: list[RedFlag]
    adjuncts: list[Adjunct]
    course_lengths: CourseLengths
    visit_minutes: VisitMinutes
    plan: PlanParameters
    force: ForceGuidance
    choices: list[Choice]
    outcomes: OutcomeSpecs
    evidence: list[EvidenceFigure]
    costs: Costs
    statements: list[Statement]
    pathway_steps: list[PathwayStepText]
    rules: list[Rule]

    @model_validator(mode="after")
    def _cross_references(self) -> Knowledge:
        # Unique ids per list, so look-ups by id are unambiguous.
        lists: dict[str, list[str]] = {
            "conservative_care": [e.id for e in self.conservative_care],
            "indications": [e.id for e in self.indications],
            "contraindications": [e.id for e in self.contraindications],
            "diagnostic_tests": [e.id for e in self.diagnostic_tests],
            "side_effects": [e.id for e in self.side_effects],
            "red_flags": [e.id for e in self.red_flags],
            "adjuncts": [e.id for e in self.adjuncts],
            "choices": [e.id for e in self.choices],
            "evidence": [e.id for e in self.evidence],
            "statements": [e.id for e in self.statements],
            "pathway_steps": [e.id for e in self.pathway_steps],
            "rules": [e.id for e in self.rules],
        }
        for name, ids in lists.items():
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"{name}: duplicate ids {duplicates}")
        for where, cited in self._citations():
            unknown = [s for s in cited if s not in self.sources]
            if unknown:
                raise ValueError(f"{where}: cites unknown source(s) {unknown}")
        tests = set(lists["diagnostic_tests"])
        contraindications = set(lists["contraindications"])
        for ind in self.indications:
            missing = [t for t in ind.confirmed_by if t not in tests]
            if missing:
                raise ValueError(f"indications.{ind.id}: unknown confirming tests {missing}")
            missing = [c for c in ind.cautions if c not in contraindications]
            if missing:
                raise ValueError(f"indications.{ind.id}: unknown cautions {missing}")
        for test in self.diagnostic_tests:
            missing = [c for c in test.detects if c not in contraindications]
            if missing:
                raise ValueError(f"diagnostic_tests.{test.id}: unknown detects {missing}")
        providers = [p.provider for p in self.costs.providers]
        if sorted(providers) != sorted(ProviderType):
            raise ValueError("costs.providers must list each provider type exactly once")
        payers = [p.payer for p in self.costs.payers]
        if sorted(payers) != sorted(Payer):
            raise ValueError("costs.payers must list each payer exactly once")
        unused_seeds = [
            key
            for key, src in self.sources.items()
            if src.kind == "seed" and not any(key in c for _, c in self._citations())
        ]
        if unused_seeds:
            raise ValueError(f"seed sources never cited: {unused_seeds}")
        return self

    def _citations(self) -> list[tuple[str, list[str]]]:
        """Every (where, sources) pair in the file, for citation checks."""
        out: list[tuple[str, list[str]]] = []
        sections: dict[str, list[Any]] = {
            "conservative_care": list(self.conservative_care),
            "indications": list(self.indications),
            "contraindications": list(self.contraindications),
            "diagnostic_tests": list(self.diagnostic_tests),
            "side_effects": list(self.side_effects),
            "red_flags": list(self.red_flags),
            "adjuncts": list(self.adjuncts),
            "choices": list(self.choices),
            "evidence": list(self.evidence),
            "statements": list(self.statements),
            "pathway_steps": list(self.pathway_steps),
            "rules": list(self.rules),
        }
        for name, entries in sections.items():
            out.extend((f"{name}.{e.id}", e.source) for e in entries)
        cl = self.course_lengths
        out += [
            ("course_lengths.decompression_overall", cl.decompression_overall.source),
            ("course_lengths.decompression_typical", cl.decompression_typical.source),
            ("course_lengths.physical_therapy", cl.physical_therapy.source),
            ("visit_minutes", self.visit_minutes.source),
            ("plan.chronicity_weeks", self.plan.chronicity_weeks.source),
            ("plan.sessions_by_severity", self.plan.sessions_by_severity.source),
            ("plan.chronicity_adjustment", self.plan.chronicity_adjustment.source),
            ("plan.pt_sessions_by_severity", self.plan.pt_sessions_by_severity.source),
            ("plan.reassess_source", [self.plan.reassess_source]),
            ("plan.follow_up_source", [self.plan.follow_up_source]),
            ("force.lumbar", self.force.lumbar.source),
            ("force.cervical", self.force.cervical.source),
            ("outcomes.nprs", self.outcomes.nprs.source),
            ("outcomes.odi", self.outcomes.odi.source),
            ("outcomes.ndi", self.outcomes.ndi.source),
            ("costs.general_per_session", self.costs.general_per_session.source),
            ("costs.quoted_course_max_source", [self.costs.quoted_course_max_source]),
        ]
        out.extend((f"costs.providers.{p.provider}", p.source) for p in self.costs.providers)
        out.extend((f"costs.billing_codes.{b.code}", b.source) for b in self.costs.billing_codes)
        out.extend((f"costs.payers.{p.payer}", p.source) for p in self.costs.payers)
        return out

    # --- look-ups -------------------------------------------------------------------
    def rule(self, rule_id: str) -> Rule:
        """The rule with ``rule_id`` (KeyError if the YAML has no such rule)."""
        return _by_id(self.rules, rule_id, "rule")

    def indication(self, indication_id: str) -> Indication:
        """The indication with ``indication_id``."""
        return _by_id(self.indications, indication_id, "indication")

    def contraindication(self, contraindication_id: str) -> Contraindication:
        """The contraindication with ``contraindication_id``."""
        return _by_id(self.contraindications, contraindication_id, "contraindication")

    def diagnostic_test(self, test_id: str) -> DiagnosticTest:
        """The diagnostic test with ``test_id``."""
        return _by_id(self.diagnostic_tests, test_id, "diagnostic test")

    def care_option(self, option_id: str) -> ConservativeCareOption:
        """The conservative-care option with ``option_id``."""
        return _by_id(self.conservative_care, option_id, "conservative-care option")

    def side_effect(self, side_effect_id: str) -> SideEffect:
        """The side effect with ``side_effect_id``."""
        return _by_id(self.side_effects, side_effect_id, "side effect")

    def red_flag(self, red_flag_id: str) -> RedFlag:
        """The red flag with ``red_flag_id``."""
        return _by_id(self.red_flags, red_flag_id, "red flag")

    def statement(self, statement_id: str) -> Statement:
        """The statement with ``statement_id``."""
        return _by_id(self.statements, statement_id, "statement")

    def pathway_step(self, step_id: str) -> PathwayStepText:
        """The pathway step text with ``step_id``."""
        return _by_id(self.pathway_steps, step_id, "pathway step")

    def evidence_figure(self, figure_id: str) -> EvidenceFigure:
        """The evidence figure with ``figure_id``."""
        return _by_id(self.evidence, figure_id, "evidence figure")

    def provider_cost(self, provider: ProviderType) -> ProviderCost:
        """The cost row for ``provider``."""
        return next(p for p in self.costs.providers if p.provider == provider)

    def payer_rule(self, payer: Payer) -> PayerRule:
        """The coverage rule for ``payer``."""
        return next(p for p in self.costs.payers if p.payer == payer)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_T = TypeVar("_T", bound=_HasId)


def _by_id(entries: list[_T], wanted: str, what: str) -> _T:
    for entry in entries:
        if entry.id == wanted:
            return entry
    raise KeyError(f"no {what} with id {wanted!r} in the knowledge base")


def parse_knowledge(text: str) -> Knowledge:
    """Parse and validate knowledge YAML text (raises ``ValidationError`` or ``YAMLError``)."""
    data = yaml.safe_load(text)
    return Knowledge.model_validate(data)


def knowledge_text() -> str:
    """The packaged knowledge.yaml as text (read through importlib.resources)."""
    return resources.files("spinedecomp.clinic").joinpath("knowledge.yaml").read_text("utf-8")


@functools.cache
def load_knowledge() -> Knowledge:
    """The packaged knowledge base, parsed and validated once per process."""
    return parse_knowledge(knowledge_text())
