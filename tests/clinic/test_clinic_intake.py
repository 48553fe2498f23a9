"""Intake validation: bad input is an error naming the field; derived values are right."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from clinic_testdata import candidate_data
from pydantic import ValidationError

from spinedecomp.clinic.intake import KG_PER_LB, Intake
from spinedecomp.clinic.types import Chronicity


def error_locs(data: dict[str, Any]) -> list[tuple[int | str, ...]]:
    with pytest.raises(ValidationError) as exc:
        Intake.model_validate(data)
    return [e["loc"] for e in exc.value.errors()]


def with_(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(candidate_data())
    data.update(changes)
    return data


def test_candidate_data_is_valid() -> None:
    intake = Intake.model_validate(candidate_data())
    assert intake.region.value == "lumbar"


def test_negative_weight_names_weight_kg() -> None:
    assert error_locs(with_(weight_kg=-3)) == [("weight_kg",)]


def test_missing_region_names_region() -> None:
    data = candidate_data()
    del data["region"]
    assert error_locs(data) == [("region",)]


def test_odi_answer_of_7_names_the_section() -> None:
    data = candidate_data()
    data["odi"]["lifting"] = 7
    assert error_locs(data) == [("odi", "lifting")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight_kg", 0),
        ("weight_kg", float("nan")),
        ("weight_kg", 1000),
        ("height_cm", 10),
        ("age_years", -1),
        ("pain_nprs", 11),
        ("pain_nprs", 3.5),
        ("symptom_duration_weeks", -2),
        ("region", "thoracic"),
        ("sex", "unknown"),
        ("payer", "cash"),
        ("provider", "surgeon"),
        ("cervical_level", "high"),
    ],
)
def test_out_of_range_values_name_their_field(field: str, value: Any) -> None:
    assert error_locs(with_(**{field: value}))[0][0] == field


def test_unknown_diagnosis_is_rejected() -> None:
    locs = error_locs(with_(diagnoses=[{"condition": "flat_feet"}]))
    assert locs == [("diagnoses", 0, "condition")]


def test_unknown_test_and_findings_are_rejected() -> None:
    assert error_locs(with_(diagnostic_results=[{"test": "ct_scan"}])) == [
        ("diagnostic_results", 0, "test")
    ]
    assert error_locs(
        with_(diagnostic_results=[{"test": "mri", "supports": ["flat_feet"]}])
    ) == [("diagnostic_results", 0, "supports")]
    assert error_locs(
        with_(diagnostic_results=[{"test": "mri", "shows": ["broken_heart"]}])
    ) == [("diagnostic_results", 0, "shows")]


def test_unknown_care_option_and_bad_weeks() -> None:
    assert error_locs(
        with_(conservative_care=[{"option": "yoga", "weeks": 1, "result": "helped"}])
    ) == [("conservative_care", 0, "option")]
    assert error_locs(
        with_(conservative_care=[{"option": "rest", "weeks": -1, "result": "helped"}])
    ) == [("conservative_care", 0, "weeks")]
    assert error_locs(
        with_(conservative_care=[{"option": "rest", "weeks": 1, "result": "great"}])
    ) == [("conservative_care", 0, "result")]


def test_unknown_contraindication_and_red_flag_keys() -> None:
    assert error_locs(with_(contraindications={"vampirism": True})) == [("contraindications",)]
    assert error_locs(with_(red_flags={"itching": True})) == [("red_flags",)]


def test_absolute_contraindication_cannot_be_cleared() -> None:
    assert error_locs(with_(clinician_cleared=["pregnancy"])) == [("clinician_cleared",)]
    Intake.model_validate(with_(clinician_cleared=["anticoagulation"]))


def test_questionnaire_must_match_region() -> None:
    data = with_(ndi=dict.fromkeys(
        ["pain_intensity", "personal_care", "lifting", "reading", "headaches",
         "concentration", "work", "driving", "sleeping", "recreation"], 1))
    with pytest.raises(ValidationError, match="ndi is the cervical questionnaire"):
        Intake.model_validate(data)
    data = with_(region="cervical", diagnoses=[{"condition": "radiculopathy"}])
    with pytest.raises(ValidationError, match="odi is the lumbar questionnaire"):
        Intake.model_validate(data)


def test_cervical_level_only_for_cervical() -> None:
    with pytest.raises(ValidationError, match="cervical_level"):
        Intake.model_validate(with_(cervical_level="mid"))


def test_diagnosis_must_fit_the_region(make_intake: Callable[..., Intake]) -> None:
    with pytest.raises(ValidationError, match="sciatica is not a cervical diagnosis"):
        make_intake(cervical=True, diagnoses=[{"condition": "sciatica"}])


def test_extra_fields_are_rejected() -> None:
    assert error_locs(with_(favourite_colour="blue")) == [("favourite_colour",)]


@pytest.mark.parametrize(
    ("weeks", "expected"),
    [
        (0, Chronicity.ACUTE),
        (5.9, Chronicity.ACUTE),
        (6, Chronicity.SUBACUTE),
        (12, Chronicity.SUBACUTE),
        (12.1, Chronicity.CHRONIC),
        (200, Chronicity.CHRONIC),
    ],
)
def test_chronicity(make_intake: Callable[..., Intake], weeks: float, expected: Chronicity) -> None:
    assert make_intake(symptom_duration_weeks=weeks).chronicity is expected


def test_derived_values(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake(weight_kg=80, height_cm=200)
    assert intake.weight_lb == pytest.approx(80 / KG_PER_LB)
    assert intake.weight_lb == pytest.approx(176.37, abs=0.01)
    assert intake.bmi == pytest.approx(20.0)
    assert make_intake(cervical=True, cervical_level=None).effective_cervical_level.value == "mid"


def test_diagnosis_ids_are_unique_in_order(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake(
        diagnoses=[
            {"condition": "sciatica"},
            {"condition": "disc_herniation"},
            {"condition": "sciatica", "icd10": "M54.31"},
        ]
    )
    assert intake.diagnosis_ids() == ["sciatica", "disc_herniation"]


def test_intake_round_trips_through_json(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake()
    assert Intake.model_validate(intake.model_dump(mode="json")) == intake
