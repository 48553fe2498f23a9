"""Shared fixtures for the clinic tests: a clear lumbar candidate to vary one field at a time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from clinic_testdata import candidate_data, cervical_data

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import load_knowledge


@pytest.fixture
def make_intake() -> Callable[..., Intake]:
    """Factory: ``make_intake(**overrides)`` builds an Intake from the candidate data.

    ``cervical=True`` starts from the cervical candidate. Overrides replace top-level keys;
    a value of ``None`` for ``odi``/``ndi`` removes the questionnaire.
    """

    def build(*, cervical: bool = False, **overrides: Any) -> Intake:
        data = copy.deepcopy(cervical_data() if cervical else candidate_data())
        for key, value in overrides.items():
            if value is None and key in ("odi", "ndi"):
                data.pop(key, None)
            else:
                data[key] = value
        return Intake.model_validate(data)

    return build


@pytest.fixture
def answers_without() -> Callable[[str], dict[str, bool]]:
    """All contraindication answers ``false`` except that ``missing`` is left unanswered."""

    def build(missing: str) -> dict[str, bool]:
        return {c.id: False for c in load_knowledge().contraindications if c.id != missing}

    return build
