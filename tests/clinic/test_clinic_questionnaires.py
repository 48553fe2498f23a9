"""NPRS, ODI and NDI scoring: every answer validated, scores always in range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spinedecomp.clinic.questionnaires import (
    NDI_SECTIONS,
    ODI_SECTIONS,
    NdiAnswers,
    OdiAnswers,
    score_ndi,
    score_nprs,
    score_odi,
)
from spinedecomp.clinic.types import Severity


def odi(value: int, **overrides: int | None) -> OdiAnswers:
    data: dict[str, int | None] = dict.fromkeys(ODI_SECTIONS, value)
    data.update(overrides)
    return OdiAnswers.model_validate(data)


def ndi(value: int, **overrides: int | None) -> NdiAnswers:
    data: dict[str, int | None] = dict.fromkeys(NDI_SECTIONS, value)
    data.update(overrides)
    return NdiAnswers.model_validate(data)


def test_odi_extremes_and_example() -> None:
    assert score_odi(odi(0)).percent == 0
    assert score_odi(odi(5)).percent == 100
    # Fairbank & Pynsent worked example: 16 of 50 -> 32 %.
    answers = odi(1, pain_intensity=3, lifting=4, sitting=2)
    assert sum(a for a in answers.answers() if a is not None) == 16
    assert score_odi(answers).percent == 32.0


def test_odi_one_missing_section_is_scored_over_45() -> None:
    answers = odi(2, sex_life=None, pain_intensity=0)  # 16 of 45
    score = score_odi(answers)
    assert score.answered == 9
    assert score.percent == pytest.approx(35.6)


def test_odi_two_missing_sections_is_an_error() -> None:
    with pytest.raises(ValidationError, match="2 sections unanswered"):
        odi(2, sex_life=None, travelling=None)


@pytest.mark.parametrize("bad", [7, -1, 6])
def test_odi_answer_out_of_range_names_the_section(bad: int) -> None:
    with pytest.raises(ValidationError) as exc:
        odi(2, lifting=bad)
    assert exc.value.errors()[0]["loc"] == ("lifting",)


@pytest.mark.parametrize("bad", [2.5, True, "3"])
def test_odi_answer_must_be_a_whole_number(bad: object) -> None:
    data: dict[str, object] = dict.fromkeys(ODI_SECTIONS, 1)
    data["walking"] = bad
    with pytest.raises(ValidationError) as exc:
        OdiAnswers.model_validate(data)
    assert exc.value.errors()[0]["loc"] == ("walking",)


def test_odi_unknown_section_rejected() -> None:
    data: dict[str, int] = dict.fromkeys(ODI_SECTIONS, 1)
    data["dancing"] = 2
    with pytest.raises(ValidationError, match="dancing"):
        OdiAnswers.model_validate(data)


@pytest.mark.parametrize(
    ("value", "band", "severity"),
    [
        (1, "minimal disability", Severity.MILD),  # 20 %
        (2, "moderate disability", Severity.MODERATE),  # 40 %
        (3, "severe disability", Severity.SEVERE),  # 60 %
        (4, "crippled", Severity.SEVERE),  # 80 %
        (5, "bed-bound or exaggerating", Severity.SEVERE),  # 100 %
    ],
)
def test_odi_bands(value: int, band: str, severity: Severity) -> None:
    score = score_odi(odi(value))
    assert (score.band, score.severity) == (band, severity)


def test_ndi_points_percent_and_prorating() -> None:
    full = score_ndi(ndi(2))
    assert (full.points, full.percent, full.answered) == (20, 40, 10)
    prorated = score_ndi(ndi(2, driving=None))  # 18 of 45 -> 20 of 50
    assert (prorated.points, prorated.answered) == (20, 9)
    with pytest.raises(ValidationError, match="unanswered"):
        ndi(2, driving=None, work=None)


@pytest.mark.parametrize(
    ("total", "band"),
    [(4, "no disability"), (5, "mild disability"), (15, "moderate disability"),
     (25, "severe disability"), (35, "complete disability")],
)
def test_ndi_bands(total: int, band: str) -> None:
    # Spread ``total`` points over the ten items (each 0-5).
    items = [min(5, max(0, total - 5 * i)) for i in range(10)]
    answers = NdiAnswers.model_validate(dict(zip(NDI_SECTIONS, items, strict=True)))
    assert score_ndi(answers).points == total
    assert score_ndi(answers).band == band


def test_ndi_answer_out_of_range_names_the_item() -> None:
    with pytest.raises(ValidationError) as exc:
        ndi(1, headaches=9)
    assert exc.value.errors()[0]["loc"] == ("headaches",)


@pytest.mark.parametrize("good", [0, 5, 10])
def test_nprs_valid(good: int) -> None:
    assert score_nprs(good) == good


@pytest.mark.parametrize("bad", [-1, 11, True, 2.5])
def test_nprs_invalid(bad: object) -> None:
    with pytest.raises(ValueError, match="NPRS"):
        score_nprs(bad)  # type: ignore[arg-type]


answer = st.one_of(st.none(), st.integers(min_value=0, max_value=5))


@given(st.lists(answer, min_size=10, max_size=10))
def test_odi_score_always_in_range(values: list[int | None]) -> None:
    data = dict(zip(ODI_SECTIONS, values, strict=True))
    if values.count(None) > 1:
        with pytest.raises(ValidationError):
            OdiAnswers.model_validate(data)
        return
    score = score_odi(OdiAnswers.model_validate(data))
    assert 0 <= score.percent <= 100
    assert score.answered == 10 - values.count(None)


@given(st.lists(answer, min_size=10, max_size=10))
def test_ndi_score_always_in_range(values: list[int | None]) -> None:
    data = dict(zip(NDI_SECTIONS, values, strict=True))
    if values.count(None) > 1:
        with pytest.raises(ValidationError):
            NdiAnswers.model_validate(data)
        return
    score = score_ndi(NdiAnswers.model_validate(data))
    assert 0 <= score.points <= 50
    assert score.percent == pytest.approx(2 * score.points)


@given(st.lists(st.integers(min_value=-20, max_value=20), min_size=10, max_size=10))
def test_odi_rejects_every_out_of_range_answer(values: list[int]) -> None:
    data = dict(zip(ODI_SECTIONS, values, strict=True))
    bad = [name for name, v in data.items() if not 0 <= v <= 5]
    if bad:
        with pytest.raises(ValidationError) as exc:
            OdiAnswers.model_validate(data)
        assert {e["loc"][0] for e in exc.value.errors()} == set(bad)
    else:
        assert 0 <= score_odi(OdiAnswers.model_validate(data)).percent <= 100
