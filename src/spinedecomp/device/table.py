"""The `Table` protocol: what the session engine needs from any traction table.

The simulator and the Modbus driver both implement it, so protocols, controller and safety
monitor run unchanged on either. Values are raw: the safety monitor must see what the
sensors said, not a filtered or corrected value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from spinedecomp.core.units import Region


@dataclass(frozen=True)
class TableInfo:
    """Identity and capabilities reported by a table."""

    name: str
    firmware: str
    simulated: bool
    regions: tuple[Region, ...]
    force_limit_n: float  # the table's own absolute limit
    angle_min_deg: float
    angle_max_deg: float
    travel_max_mm: float


@dataclass(frozen=True)
class SensorFrame:
    """One period's raw readings."""

    force_a_n: float
    force_b_n: float
    position_mm: float
    angle_deg: float
    switch_a: float  # normally closed: 1 = not pressed
    switch_b: float  # normally open: 0 = not pressed
    motor_enabled: bool
    comm_ok: bool = True
    # Only a simulator knows these; a real table reports NaN.
    force_true_n: float = math.nan
    distraction_mm: float = math.nan
    guarding: float = math.nan


@dataclass(frozen=True)
class ActuatorCommand:
    """One period's command to the table."""

    velocity_mm_s: float  # cable velocity, + = pull
    angle_deg: float
    enable: bool
    heartbeat: int


@runtime_checkable
class Table(Protocol):
    """A traction table, simulated or real."""

    @property
    def info(self) -> TableInfo:
        """Identity and capabilities."""
        ...

    def read(self) -> SensorFrame:
        """Raw sensors now."""
        ...

    def write(self, cmd: ActuatorCommand) -> None:
        """Command the actuators for the coming period."""
        ...

    def advance(self, dt: float) -> None:
        """Let `dt` seconds pass (a simulator integrates; a real table does nothing)."""
        ...

    def test_patient_switch(self) -> bool:
        """Set-up check: the patient switch is connected and both channels change state when
        it is pressed and released."""
        ...

    def release(self) -> None:
        """Ask the table's own firmware to release (last resort when the link is failing)."""
        ...

    def close(self) -> None:
        """Disable the drive and free the connection."""
        ...
