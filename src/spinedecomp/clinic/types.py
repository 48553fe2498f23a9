"""Small shared vocabulary of the clinic package (enumerations used across modules)."""

from __future__ import annotations

from enum import StrEnum

# One Region for the whole product: the clinic plans what the table runs.
from spinedecomp.core.units import Region as Region


class Sex(StrEnum):
    """Sex as recorded at intake; drives the first-session force cap and the pregnancy question."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


class Chronicity(StrEnum):
    """Symptom duration class (acute < 6 weeks, subacute 6-12, chronic > 12)."""

    ACUTE = "acute"
    SUBACUTE = "subacute"
    CHRONIC = "chronic"


class Severity(StrEnum):
    """Severity used by the course plan, from the ODI/NDI band."""

    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class CervicalLevel(StrEnum):
    """Cervical level treated; sets the angle of pull."""

    UPPER = "upper"
    MID = "mid"
    LOWER = "lower"


class Payer(StrEnum):
    """Who pays for the course."""

    SELF_PAY = "self_pay"
    PRIVATE_INSURANCE = "private_insurance"
    MEDICARE = "medicare"


class ProviderType(StrEnum):
    """Kind of provider delivering decompression (cost table of seed 001)."""

    CHIROPRACTOR = "chiropractor"
    PHYSICAL_THERAPIST = "physical_therapist"
    SPECIALISED_CLINIC = "specialised_clinic"
