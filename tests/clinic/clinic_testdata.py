"""Test data for the clinic tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spinedecomp.clinic.knowledge import load_knowledge

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intakes"

_ODI_MODERATE = {  # 40 % = moderate disability
    "pain_intensity": 3,
    "personal_care": 1,
    "lifting": 3,
    "walking": 2,
    "sitting": 2,
    "standing": 2,
    "sleeping": 2,
    "sex_life": 1,
    "social_life": 2,
    "travelling": 2,
}

_NDI_MODERATE = {  # 20 points = moderate disability
    "pain_intensity": 3,
    "personal_care": 1,
    "lifting": 2,
    "reading": 2,
    "headaches": 2,
    "concentration": 1,
    "work": 2,
    "driving": 2,
    "sleeping": 2,
    "recreation": 3,
}


def candidate_data() -> dict[str, Any]:
    """A chronic lumbar disc herniation on MRI after failed home care: a clear candidate."""
    kb = load_knowledge()
    return {
        "patient_id": "p-1",
        "age_years": 45,
        "sex": "female",
        "weight_kg": 70.0,
        "height_cm": 168.0,
        "region": "lumbar",
        "symptom_duration_weeks": 20,
        "diagnoses": [{"condition": "disc_herniation"}],
        "diagnostic_results": [{"test": "mri", "supports": ["disc_herniation"]}],
        "conservative_care": [
            {"option": "home_care_stretching", "weeks": 8, "result": "partial"},
            {"option": "otc_medication", "weeks": 8, "result": "no_change"},
        ],
        "contraindications": {c.id: False for c in kb.contraindications},
        "red_flags": {r.id: False for r in kb.red_flags if r.kind.value == "emergency"},
        "pain_nprs": 6,
        "odi": dict(_ODI_MODERATE),
        "payer": "self_pay",
    }


def cervical_data() -> dict[str, Any]:
    """A cervical radiculopathy candidate (MRI-confirmed) after failed home care."""
    data = candidate_data()
    data.update(
        region="cervical",
        cervical_level="lower",
        diagnoses=[{"condition": "radiculopathy"}],
        diagnostic_results=[{"test": "mri", "supports": ["radiculopathy"]}],
        ndi=dict(_NDI_MODERATE),
    )
    del data["odi"]
    return data
