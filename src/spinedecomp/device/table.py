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
class TableDynamics:
    """What a table maker may declare about the drive, so the controller can take up slack
    and set its loop gain without assuming the slowest drive it supports.

    `motor_lag_s` is the time constant of the cable velocity's response to a velocity
    command, `transport_delay_s` the dead time between a command written and the drive acting
    on it (bus, firmware), `stiffness_max_n_per_mm` the stiffest cable + harness + patient the
    table can present at its load cell. A value left out is taken as the worst case of the
    operating envelope in docs/device-protocol.md.
    """

    motor_lag_s: float | None
    transport_delay_s: float | None = 0.0
    stiffness_max_n_per_mm: float | None = None


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
    dynamics: TableDynamics | None = None  # None: nothing declared, worst case assumed


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
    # The drive's effort (motor torque or current) scaled to cable tension, N: a force channel
    # diverse from the two cells. NaN when the table does not report it.
    effort_n: float = math.nan
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
    """A traction table, simulated or real.

    The session engine drives any other table than the built-in simulator with a step loop,
    one control period of `1/rate_hz` seconds at a time, always in this order:

    1. `read()` exactly once, at the start of the period: these raw values are what the
       controller and the safety monitor act on, and what the telemetry records;
    2. the controller and the safety monitor compute the command (no table call);
    3. `write(cmd)` exactly once with that command, which holds until the next `write`;
    4. `advance(dt)`, then the engine's clock waits for the start of the next period.

    Set-up calls `test_patient_switch()` once and `read()` a few hundred times (the tare
    window) before the first period, with the drive disabled. `release()` may be called at any
    time, also in addition to a released command; `close()` ends every session.
    """

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
