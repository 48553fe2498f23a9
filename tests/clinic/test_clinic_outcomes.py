"""Outcomes: responder status by MCID, immediate/sustained improvement, cohort summary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spinedecomp.clinic.outcomes import (
    Measure,
    Measurement,
    PatientOutcome,
    assess_response,
    reassessment_review,
    summarise_cohort,
    wilson_interval,
)
from spinedecomp.clinic.questionnaires import NDI_SECTIONS, ODI_SECTIONS
from spinedecomp.clinic.reasons import Effect


def odi_total(total: int) -> dict[str, int]:
    """ODI answers summing to ``total`` (0-50), so the percent is 2 x total."""
    return {name: min(5, max(0, total - 5 * i)) for i, name in enumerate(ODI_SECTIONS)}


def ndi_total(total: int) -> dict[str, int]:
    return {name: min(5, max(0, total - 5 * i)) for i, name in enumerate(NDI_SECTIONS)}


def m(**fields: object) -> Measurement:
    return Measurement.model_validate(fields)


def change(measure: Measure, before: Measurement, after: Measurement):  # type: ignore[no-untyped-def]
    return next(c for c in assess_response(before, after).changes if c.measure is measure)


@pytest.mark.parametrize(("before", "after", "responder"), [(7, 5, True), (7, 6, False), (3, 0, True)])
def test_nprs_mcid_two_points(before: int, after: int, responder: bool) -> None:
    result = change(Measure.NPRS, m(nprs=before), m(nprs=after))
    assert result.responder is responder
    assert result.reason.rule_id == "R-OUTCOME-NPRS"
    assert "PMC7053735" in result.reason.citation


@pytest.mark.parametrize(
    ("before", "after", "responder"),
    [
        (25, 20, True),  # 50 % -> 40 %: 10 points
        (25, 21, False),  # 50 % -> 42 %: 8 points and 16 %
        (10, 7, True),  # 20 % -> 14 %: 6 points but 30 %
        (10, 8, False),  # 20 % -> 16 %: 4 points and 20 %
    ],
)
def test_odi_mcid_ten_points_or_thirty_percent(before: int, after: int, responder: bool) -> None:
    result = change(Measure.ODI, m(odi=odi_total(before)), m(odi=odi_total(after)))
    assert result.responder is responder
    assert result.reason.rule_id == "R-OUTCOME-ODI"


@pytest.mark.parametrize(("before", "after", "responder"), [(30, 20, True), (30, 22, False)])
def test_ndi_responder_ten_points(before: int, after: int, responder: bool) -> None:
    # 8 points clears the 7.5 MCID but not the 10.2 MDC: not counted as a responder.
    result = change(Measure.NDI, m(ndi=ndi_total(before)), m(ndi=ndi_total(after)))
    assert result.responder is responder
    assert "MDC 10.2" in result.threshold


def test_responder_overall_is_any_measure() -> None:
    before = m(nprs=6, odi=odi_total(20))
    assert assess_response(before, m(nprs=3, odi=odi_total(20))).responder
    assert not assess_response(before, m(nprs=5, odi=odi_total(19))).responder
    # Measures not recorded at both points are skipped.
    only_pain = assess_response(before, m(nprs=5))
    assert [c.measure for c in only_pain.changes] == [Measure.NPRS]


def test_worsening_is_negative_improvement() -> None:
    result = change(Measure.NPRS, m(nprs=3), m(nprs=6))
    assert result.improvement == -3 and not result.responder


def test_measurement_validation() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        Measurement()
    with pytest.raises(ValidationError) as exc:
        Measurement.model_validate({"nprs": 11})
    assert exc.value.errors()[0]["loc"] == ("nprs",)
    bad = odi_total(10)
    bad["walking"] = 7
    with pytest.raises(ValidationError) as exc:
        Measurement.model_validate({"odi": bad})
    assert exc.value.errors()[0]["loc"] == ("odi", "walking")


def test_reassessment_review_both_ways() -> None:
    assert reassessment_review(m(nprs=7), m(nprs=4)).effect is Effect.SUPPORTS
    review = reassessment_review(m(nprs=7), m(nprs=6))
    assert review.effect is Effect.CAUTION
    assert review.rule_id == "R-OUTCOME-REASSESS"


def outcome(pid: str, base: int, discharge: int | None, six: int | None) -> PatientOutcome:
    return PatientOutcome(
        patient_id=pid,
        region="lumbar",
        baseline=m(nprs=base),
        discharge=None if discharge is None else m(nprs=discharge),
        six_months=None if six is None else m(nprs=six),
    )


def test_immediate_and_sustained_improvement() -> None:
    o = outcome("a", 8, 4, 7)
    assert o.immediate_improvement() is True
    assert o.sustained_improvement() is False
    assert outcome("b", 8, None, None).immediate_improvement() is None


def test_cohort_summary_beside_published_figures() -> None:
    cohort = [
        outcome("a", 8, 4, 5),
        outcome("b", 7, 6, None),
        outcome("c", 6, 2, 6),
        outcome("d", 9, 5, 4),
        outcome("e", 5, None, None),
    ]
    summary = summarise_cohort(cohort)
    assert summary.patients == 5
    assert (summary.immediate.measured, summary.immediate.improved) == (4, 3)
    assert summary.immediate.rate == 0.75
    assert (summary.sustained.measured, summary.sustained.improved) == (3, 2)
    assert summary.sustained.rate == pytest.approx(0.6667, abs=1e-4)
    assert summary.immediate.ci_low is not None and summary.immediate.ci_low < 0.75
    published = {c.published for c in summary.comparisons}
    assert published == {0.86, 0.368}
    immediate = summary.comparisons[0]
    assert "seeds/001_deae0fd9ccbd9a89.txt" in immediate.citation
    assert immediate.caveat and "Gionis" in immediate.caveat
    assert "seeds/003_5fabe3272d7ba8cc.txt" in summary.comparisons[1].citation


def test_empty_cohort() -> None:
    summary = summarise_cohort([])
    assert summary.immediate.rate is None and summary.immediate.measured == 0


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@given(st.integers(min_value=1, max_value=500), st.data())
def test_wilson_interval_contains_the_rate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    low, high = wilson_interval(k, n)
    assert 0 <= low <= k / n <= high <= 1
