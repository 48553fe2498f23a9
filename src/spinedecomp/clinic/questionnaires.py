"""Pain and disability questionnaires: NPRS, Oswestry Disability Index, Neck Disability Index.

Every answer is validated where it is entered (an ODI answer of 7 is a validation error
naming the section), so scoring itself cannot fail and always stays in range:
NPRS 0-10, ODI 0-100 %, NDI 0-50 points (0-100 %).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spinedecomp.clinic.knowledge import Band, load_knowledge
from spinedecomp.clinic.types import Severity

__all__ = [
    "NDI_SECTIONS",
    "ODI_SECTIONS",
    "NdiAnswers",
    "NdiScore",
    "Nprs",
    "OdiAnswers",
    "OdiScore",
    "score_ndi",
    "score_nprs",
    "score_odi",
]

# Strict ints: a YAML `true` or a float such as 2.5 is not a valid answer.
Nprs = Annotated[int, Field(ge=0, le=10, strict=True)]
"""Pain on the 0-10 numeric rating scale."""

_Item = Annotated[int | None, Field(default=None, ge=0, le=5, strict=True)]

ODI_SECTIONS: tuple[str, ...] = (
    "pain_intensity",
    "personal_care",
    "lifting",
    "walking",
    "sitting",
    "standing",
    "sleeping",
    "sex_life",
    "social_life",
    "travelling",
)
"""The ten ODI sections (version 2.1a order, Fairbank & Pynsent 2000)."""

NDI_SECTIONS: tuple[str, ...] = (
    "pain_intensity",
    "personal_care",
    "lifting",
    "reading",
    "headaches",
    "concentration",
    "work",
    "driving",
    "sleeping",
    "recreation",
)
"""The ten NDI items (Vernon & Mior 1991)."""


class _Answers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def answers(self) -> list[int | None]:
        """Answers in questionnaire order (``None`` = section not answered)."""
        return [getattr(self, name) for name in self._sections()]

    @classmethod
    def _sections(cls) -> tuple[str, ...]:
        raise NotImplementedError

    @classmethod
    def _max_missing(cls) -> int:
        raise NotImplementedError

    @model_validator(mode="after")
    def _not_too_many_missing(self) -> _Answers:
        missing = [n for n, v in zip(self._sections(), self.answers(), strict=True) if v is None]
        if len(missing) > self._max_missing():
            raise ValueError(
                f"{len(missing)} sections unanswered ({', '.join(missing)}); at most "
                f"{self._max_missing()} may be left out for a valid score"
            )
        return self


class OdiAnswers(_Answers):
    """Oswestry Disability Index answers: each section 0 (no disability) to 5.

    At most one section may be left out (scored over the answered sections, Fairbank &
    Pynsent 2000).
    """

    pain_intensity: _Item
    personal_care: _Item
    lifting: _Item
    walking: _Item
    sitting: _Item
    standing: _Item
    sleeping: _Item
    sex_life: _Item
    social_life: _Item
    travelling: _Item

    @classmethod
    def _sections(cls) -> tuple[str, ...]:
        return ODI_SECTIONS

    @classmethod
    def _max_missing(cls) -> int:
        return load_knowledge().outcomes.odi.max_missing


class NdiAnswers(_Answers):
    """Neck Disability Index answers: each item 0 (no disability) to 5.

    At most one item may be left out; the total is then pro-rated to the 50-point scale
    (the ODI rule applied by analogy, see docs/clinic.md).
    """

    pain_intensity: _Item
    personal_care: _Item
    lifting: _Item
    reading: _Item
    headaches: _Item
    concentration: _Item
    work: _Item
    driving: _Item
    sleeping: _Item
    recreation: _Item

    @classmethod
    def _sections(cls) -> tuple[str, ...]:
        return NDI_SECTIONS

    @classmethod
    def _max_missing(cls) -> int:
        return load_knowledge().outcomes.ndi.max_missing


class OdiScore(BaseModel):
    """A scored ODI: percent 0-100 with its band."""

    model_config = ConfigDict(frozen=True)

    percent: float = Field(ge=0, le=100)
    answered: int = Field(ge=0, le=10)
    band: str
    severity: Severity


class NdiScore(BaseModel):
    """A scored NDI: points 0-50 (pro-rated if one item is missing) and percent 0-100."""

    model_config = ConfigDict(frozen=True)

    points: float = Field(ge=0, le=50)
    percent: float = Field(ge=0, le=100)
    answered: int = Field(ge=0, le=10)
    band: str
    severity: Severity


def _band(bands: list[Band], value: float) -> Band:
    # Bands are listed from the lowest; the last one whose start is <= value applies.
    chosen = bands[0]
    for band in bands:
        if value >= band.from_:
            chosen = band
    return chosen


def score_nprs(value: int) -> int:
    """Validate a pain NPRS (integer 0-10) and return it; raise ``ValueError`` otherwise."""
    spec = load_knowledge().outcomes.nprs
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"NPRS must be a whole number, got {value!r}")
    if not spec.min <= value <= spec.max:
        raise ValueError(f"NPRS must be between {spec.min} and {spec.max}, got {value}")
    return value


def score_odi(answers: OdiAnswers) -> OdiScore:
    """ODI percent = sum of answered sections / (5 x answered) x 100 (Fairbank & Pynsent)."""
    given = [a for a in answers.answers() if a is not None]
    percent = round(100.0 * sum(given) / (5 * len(given)), 1)
    band = _band(load_knowledge().outcomes.odi.bands, percent)
    return OdiScore(percent=percent, answered=len(given), band=band.label, severity=band.severity)


def score_ndi(answers: NdiAnswers) -> NdiScore:
    """NDI points 0-50 (pro-rated over answered items) and percent (Vernon & Mior 1991)."""
    given = [a for a in answers.answers() if a is not None]
    points = round(50.0 * sum(given) / (5 * len(given)), 1)
    band = _band(load_knowledge().outcomes.ndi.bands, points)
    return NdiScore(
        points=points,
        percent=round(points * 2, 1),
        answered=len(given),
        band=band.label,
        severity=band.severity,
    )
