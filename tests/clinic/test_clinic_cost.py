"""Cost estimate: provider table, course length, payer coverage and billing codes."""

from __future__ import annotations

import pytest

from spinedecomp.clinic.cost import estimate_cost
from spinedecomp.clinic.knowledge import Coverage
from spinedecomp.clinic.types import Payer, ProviderType


def test_typical_ranges_without_a_plan() -> None:
    estimate = estimate_cost(Payer.SELF_PAY)
    rows = {p.provider: p for p in estimate.providers}
    assert set(rows) == set(ProviderType)
    chiro = rows[ProviderType.CHIROPRACTOR]
    assert (chiro.sessions_low, chiro.sessions_high) == (15, 20)
    assert (chiro.course_low, chiro.course_high) == (750, 4000)
    pt = rows[ProviderType.PHYSICAL_THERAPIST]
    assert (pt.course_low, pt.course_high) == (900, 5000)
    clinic = rows[ProviderType.SPECIALISED_CLINIC]
    assert (clinic.course_low, clinic.course_high) == (1500, 7500)
    assert clinic.above_quoted_course_max and not chiro.above_quoted_course_max
    assert any(r.rule_id == "R-COST-PROVIDER" and "disagree" in r.message for r in estimate.reasons)


def test_sessions_from_the_plan_and_one_provider() -> None:
    estimate = estimate_cost(Payer.SELF_PAY, sessions=20, provider=ProviderType.PHYSICAL_THERAPIST)
    assert estimate.sessions_from_plan == 20
    [row] = estimate.providers
    assert (row.sessions_low, row.sessions_high) == (20, 20)
    assert (row.course_low, row.course_high) == (1500, 5000)
    assert (row.out_of_pocket_per_session_low, row.out_of_pocket_per_session_high) == (75, 250)
    assert not row.above_quoted_course_max
    assert not any("disagree" in r.message for r in estimate.reasons)


@pytest.mark.parametrize(
    ("payer", "coverage", "phrase"),
    [
        (Payer.SELF_PAY, Coverage.SELF_PAY, "payment plans"),
        (Payer.PRIVATE_INSURANCE, Coverage.OFTEN_NOT_COVERED, "experimental"),
        (Payer.MEDICARE, Coverage.VARIES, "S9090"),
    ],
)
def test_coverage_by_payer(payer: Payer, coverage: Coverage, phrase: str) -> None:
    estimate = estimate_cost(payer, sessions=15)
    assert estimate.coverage is coverage
    assert phrase in estimate.coverage_note
    coverage_reason = next(r for r in estimate.reasons if r.rule_id == "R-COST-COVERAGE")
    assert coverage_reason.message == estimate.coverage_note


def test_billing_codes_and_general_figures() -> None:
    estimate = estimate_cost(Payer.MEDICARE)
    assert {(b.system, b.code) for b in estimate.billing_codes} == {
        ("CPT", "97012"),
        ("HCPCS", "S9090"),
    }
    assert (estimate.general_per_session_low, estimate.general_per_session_high) == (20, 200)
    assert estimate.quoted_course_max == 6000


def test_out_of_pocket_equals_cost_since_coverage_is_unreliable() -> None:
    for payer in Payer:
        for row in estimate_cost(payer).providers:
            assert row.out_of_pocket_course_low == row.course_low
            assert row.out_of_pocket_course_high == row.course_high


def test_invalid_sessions() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        estimate_cost(Payer.SELF_PAY, sessions=0)


def test_json_dump() -> None:
    dumped = estimate_cost(Payer.PRIVATE_INSURANCE, sessions=18).model_dump(mode="json")
    assert dumped["payer"] == "private_insurance"
    assert dumped["coverage"] == "often_not_covered"
