"""Intake model: everything the clinic records before deciding on decompression.

Validation happens here, once: bad input (a weight of -3, an ODI answer of 7, a missing
region, an unknown diagnosis id, an ODI for a cervical patient) is a pydantic
``ValidationError`` whose location names the field. The rules downstream can then trust
every value.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spinedecomp.clinic.knowledge import ContraindicationKind, Knowledge, load_knowledge
from spinedecomp.clinic.questionnaires import NdiAnswers, Nprs, OdiAnswers
from spinedecomp.clinic.types import (
    CervicalLevel,
    Chronicity,
    Payer,
    ProviderType,
    Region,
    Sex,
)

__all__ = [
    "KG_PER_LB",
    "CareResult",
    "ConservativeCareTrial",
    "Diagnosis",
    "DiagnosticResult",
    "Intake",
    "PriorSurgery",
]

KG_PER_LB = 0.45359237
"""Exact international avoirdupois pound in kilograms."""

_Id = Annotated[str, Field(min_length=1, max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _kb() -> Knowledge:
    return load_knowledge()


class Diagnosis(_Model):
    """A working diagnosis, by knowledge-base indication id."""

    condition: _Id
    icd10: str | None = None
    note: str | None = None

    @field_validator("condition")
    @classmethod
    def _known(cls, value: str) -> str:
        ids = [i.id for i in _kb().indications]
        if value not in ids:
            raise ValueError(f"unknown condition {value!r}; known: {', '.join(ids)}")
        return value


class DiagnosticResult(_Model):
    """The result of one diagnostic test.

    ``supports`` lists the indication ids the finding confirms; ``shows`` lists
    contraindication ids the finding reveals (e.g. a bone scan showing a fracture).
    """

    test: _Id
    performed_on: date | None = None
    supports: list[_Id] = Field(default_factory=list)
    shows: list[_Id] = Field(default_factory=list)
    annular_tear: bool = False
    summary: str = ""

    @field_validator("test")
    @classmethod
    def _known_test(cls, value: str) -> str:
        ids = [t.id for t in _kb().diagnostic_tests]
        if value not in ids:
            raise ValueError(f"unknown test {value!r}; known: {', '.join(ids)}")
        return value

    @field_validator("supports")
    @classmethod
    def _known_supports(cls, value: list[str]) -> list[str]:
        ids = {i.id for i in _kb().indications}
        unknown = [v for v in value if v not in ids]
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}")
        return value

    @field_validator("shows")
    @classmethod
    def _known_shows(cls, value: list[str]) -> list[str]:
        ids = {c.id for c in _kb().contraindications}
        unknown = [v for v in value if v not in ids]
        if unknown:
            raise ValueError(f"unknown contraindication(s) {unknown}")
        return value


class CareResult(StrEnum):
    """What a conservative-care trial did for the patient."""

    HELPED = "helped"
    PARTIAL = "partial"
    NO_CHANGE = "no_change"
    WORSE = "worse"


class ConservativeCareTrial(_Model):
    """One conservative-care option tried: what, for how long, with what result."""

    option: _Id
    weeks: float = Field(ge=0, le=520, allow_inf_nan=False)
    result: CareResult

    @field_validator("option")
    @classmethod
    def _known(cls, value: str) -> str:
        ids = [c.id for c in _kb().conservative_care]
        if value not in ids:
            raise ValueError(f"unknown conservative-care option {value!r}; known: {', '.join(ids)}")
        return value

    @property
    def failed(self) -> bool:
        """True when the trial did not bring lasting relief (partial, no change or worse)."""
        return self.result is not CareResult.HELPED


class PriorSurgery(_Model):
    """A previous spinal operation."""

    description: str = Field(min_length=1)
    year: int | None = Field(default=None, ge=1900, le=2200)
    region: Region | None = None
    hardware: bool = False


class Intake(_Model):
    """A patient's intake for decompression screening.

    ``contraindications`` and ``red_flags`` map knowledge-base ids to the patient's
    answer (``true``/``false``); an id left out means "not asked yet".
    ``clinician_cleared`` lists relative contraindications a clinician has cleared.
    """

    patient_id: _Id
    assessed_on: date | None = None
    age_years: int = Field(ge=0, le=120)
    sex: Sex
    weight_kg: float = Field(gt=0, le=350, allow_inf_nan=False)
    height_cm: float = Field(ge=50, le=250, allow_inf_nan=False)
    region: Region
    cervical_level: CervicalLevel | None = None
    symptom_duration_weeks: float = Field(ge=0, le=5200, allow_inf_nan=False)
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    diagnostic_results: list[DiagnosticResult] = Field(default_factory=list)
    conservative_care: list[ConservativeCareTrial] = Field(default_factory=list)
    contraindications: dict[str, bool] = Field(default_factory=dict)
    clinician_cleared: list[str] = Field(default_factory=list)
    red_flags: dict[str, bool] = Field(default_factory=dict)
    prior_surgeries: list[PriorSurgery] = Field(default_factory=list)
    pain_nprs: Nprs
    odi: OdiAnswers | None = None
    ndi: NdiAnswers | None = None
    payer: Payer
    provider: ProviderType | None = None

    @field_validator("contraindications")
    @classmethod
    def _known_contraindications(cls, value: dict[str, bool]) -> dict[str, bool]:
        ids = [c.id for c in _kb().contraindications]
        unknown = [k for k in value if k not in ids]
        if unknown:
            raise ValueError(f"unknown contraindication(s) {unknown}; known: {', '.join(ids)}")
        return value

    @field_validator("clinician_cleared")
    @classmethod
    def _relative_only(cls, value: list[str]) -> list[str]:
        kb = _kb()
        relative = [c.id for c in kb.contraindications if c.kind is ContraindicationKind.RELATIVE]
        bad = [v for v in value if v not in relative]
        if bad:
            # An absolute contraindication can never be cleared: that is its definition.
            raise ValueError(
                f"only relative contraindications can be cleared, not {bad}; "
                f"relative: {', '.join(relative)}"
            )
        return value

    @field_validator("red_flags")
    @classmethod
    def _known_red_flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        ids = [r.id for r in _kb().red_flags]
        unknown = [k for k in value if k not in ids]
        if unknown:
            raise ValueError(f"unknown red flag(s) {unknown}; known: {', '.join(ids)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Intake:
        kb = _kb()
        if self.region is Region.LUMBAR and self.ndi is not None:
            raise ValueError("ndi is the cervical questionnaire; a lumbar intake records odi")
        if self.region is Region.CERVICAL and self.odi is not None:
            raise ValueError("odi is the lumbar questionnaire; a cervical intake records ndi")
        if self.region is Region.LUMBAR and self.cervical_level is not None:
            raise ValueError("cervical_level is only for a cervical intake")
        for i, diagnosis in enumerate(self.diagnoses):
            indication = kb.indication(diagnosis.condition)
            if self.region not in indication.regions:
                raise ValueError(
                    f"diagnoses[{i}]: {diagnosis.condition} is not a {self.region} diagnosis"
                )
        return self

    # --- derived values ---------------------------------------------------------------
    @property
    def weight_lb(self) -> float:
        """Body weight in pounds."""
        return self.weight_kg / KG_PER_LB

    @property
    def bmi(self) -> float:
        """Body-mass index (kg/m^2)."""
        return self.weight_kg / (self.height_cm / 100.0) ** 2

    @property
    def chronicity(self) -> Chronicity:
        """Acute (< 6 weeks), subacute (6-12 weeks) or chronic (> 12 weeks), van Tulder 2006."""
        weeks = _kb().plan.chronicity_weeks
        if self.symptom_duration_weeks < weeks.subacute_from:
            return Chronicity.ACUTE
        # "Chronic" is more than 12 weeks, so exactly 12 weeks is still subacute.
        if self.symptom_duration_weeks <= weeks.chronic_from:
            return Chronicity.SUBACUTE
        return Chronicity.CHRONIC

    @property
    def effective_cervical_level(self) -> CervicalLevel:
        """Cervical level for the angle of pull; mid when not recorded."""
        return self.cervical_level or CervicalLevel.MID

    def diagnosis_ids(self) -> list[str]:
        """Indication ids of the recorded diagnoses, in order, without repeats."""
        seen: list[str] = []
        for diagnosis in self.diagnoses:
            if diagnosis.condition not in seen:
                seen.append(diagnosis.condition)
        return seen

