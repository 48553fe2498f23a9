"""One registry of physical quantities, their units and their ranges per region.

Every layer (controller, safety monitor, protocol validation, API, UI) reads its limits from
here, so a limit is changed in one place. Forces are newtons internally; pounds are only a
display unit.

Sources for the numbers (see docs/control.md):
- Lumbar forces 2-200 lb on commercial tables (Akron ATP9, FDA 510(k) K992733); a hardware
  limit blocking output above 100 kg (TM-300, K992545) is our absolute device limit.
- Cervical: 10-30 lb typical, up to 7-10% body weight (Saunders cervical guide, Comfortrac).
- Angle of pull 0-30 degrees (DRX5000, K023160).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LB_TO_N = 4.4482216152605
KG_TO_N = 9.80665


def lb_to_n(lb: float) -> float:
    """Convert pounds-force to newtons."""
    return lb * LB_TO_N


def n_to_lb(n: float) -> float:
    """Convert newtons to pounds-force (display only)."""
    return n / LB_TO_N


def kg_to_n(kg: float) -> float:
    """Weight of a mass in kilograms, in newtons."""
    return kg * KG_TO_N


class Region(StrEnum):
    """Body region the harness pulls on."""

    LUMBAR = "lumbar"
    CERVICAL = "cervical"


class Unit(StrEnum):
    """Units of the quantities in the registry."""

    NEWTON = "N"
    MILLIMETRE = "mm"
    DEGREE = "deg"
    SECOND = "s"
    KILOGRAM = "kg"


@dataclass(frozen=True)
class Range:
    """A closed interval [lo, hi]."""

    lo: float
    hi: float

    def contains(self, value: float) -> bool:
        """True when lo <= value <= hi (NaN is never contained)."""
        return self.lo <= value <= self.hi

    def clamp(self, value: float) -> float:
        """The nearest value inside the range."""
        return min(self.hi, max(self.lo, value))

    def describe(self, unit: Unit) -> str:
        """Human text for error messages, e.g. '0-890 N'."""
        return f"{self.lo:g}-{self.hi:g} {unit.value}"


@dataclass(frozen=True)
class Quantity:
    """A physical quantity: its unit, the range the device can never exceed (absolute) and the
    range a protocol may use (safe)."""

    name: str
    unit: Unit
    absolute: Range
    safe: Range


@dataclass(frozen=True)
class RegionLimits:
    """All quantity limits for one region."""

    region: Region
    force: Quantity
    angle: Quantity
    travel: Quantity
    # Rate of rise of force allowed to the actuator (N/s); a last layer before the motor.
    max_rate_of_rise_n_per_s: float
    # Force at or below which a released patient is considered safe (N): one maker drops to
    # 15 N on a stop (Eltrac 471, REFERENCE.md).
    safe_rest_force_n: float
    # Any target above this needs an explicit operator confirmation: TM-300 asks above 18 kg.
    confirm_force_n: float


_LUMBAR = RegionLimits(
    region=Region.LUMBAR,
    force=Quantity("force", Unit.NEWTON, absolute=Range(0.0, kg_to_n(100.0)),
                   safe=Range(0.0, lb_to_n(200.0))),
    angle=Quantity("angle", Unit.DEGREE, absolute=Range(-2.0, 35.0), safe=Range(0.0, 30.0)),
    travel=Quantity("cable travel", Unit.MILLIMETRE, absolute=Range(-5.0, 300.0),
                    safe=Range(0.0, 250.0)),
    max_rate_of_rise_n_per_s=120.0,
    safe_rest_force_n=15.0,
    confirm_force_n=kg_to_n(18.0),
)

_CERVICAL = RegionLimits(
    region=Region.CERVICAL,
    # A cervical harness never needs lumbar forces: the safe ceiling is 45 lb, the absolute
    # limit 60 lb, well above the 10-30 lb clinical range and far below lumbar settings.
    force=Quantity("force", Unit.NEWTON, absolute=Range(0.0, lb_to_n(60.0)),
                   safe=Range(0.0, lb_to_n(45.0))),
    angle=Quantity("angle", Unit.DEGREE, absolute=Range(-2.0, 35.0), safe=Range(0.0, 30.0)),
    travel=Quantity("cable travel", Unit.MILLIMETRE, absolute=Range(-5.0, 200.0),
                    safe=Range(0.0, 150.0)),
    max_rate_of_rise_n_per_s=40.0,
    safe_rest_force_n=15.0,
    confirm_force_n=kg_to_n(18.0),
)

REGION_LIMITS: dict[Region, RegionLimits] = {Region.LUMBAR: _LUMBAR, Region.CERVICAL: _CERVICAL}

# Body weights outside this range are not plausible for an adult on a traction table.
BODY_WEIGHT_KG = Quantity("body weight", Unit.KILOGRAM, absolute=Range(25.0, 300.0),
                          safe=Range(30.0, 250.0))
# Hold and rest times on commercial tables: 1-99 s (Akron ATP9, K992733).
HOLD_REST_S = Quantity("hold/rest time", Unit.SECOND, absolute=Range(1.0, 99.0),
                       safe=Range(1.0, 99.0))
# Static traction up to 99 minutes on commercial tables.
SESSION_MIN = Quantity("session duration", Unit.SECOND, absolute=Range(60.0, 99.0 * 60.0),
                       safe=Range(60.0, 60.0 * 60.0))


def limits_for(region: Region | str) -> RegionLimits:
    """Limits for a region (accepts the enum or its string value)."""
    return REGION_LIMITS[Region(region)]
