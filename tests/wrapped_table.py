"""A `Table` that delegates to the built-in simulator: the base of the test tables that
corrupt one thing (a reading, a count) and pass everything else through, as a table maker's
own driver would sit in front of its hardware."""

from __future__ import annotations

from spinedecomp.device.simulated import SimulatedTable
from spinedecomp.device.table import ActuatorCommand, SensorFrame, TableInfo


class SimulatorWrapper:
    """Implements `Table` by delegation to `sim`, keeping the table's own clock `t`."""

    def __init__(self, sim: SimulatedTable) -> None:
        self._sim = sim
        self.t = 0.0

    @property
    def info(self) -> TableInfo:
        """The wrapped table's identity."""
        return self._sim.info

    def read(self) -> SensorFrame:
        """Raw sensors."""
        return self._sim.read()

    def write(self, cmd: ActuatorCommand) -> None:
        """Command for the coming period."""
        self._sim.write(cmd)

    def advance(self, dt: float) -> None:
        """Integrate, keeping the table's own clock."""
        self.t += dt
        self._sim.advance(dt)

    def test_patient_switch(self) -> bool:
        """Set-up switch test."""
        return self._sim.test_patient_switch()

    def release(self) -> None:
        """Firmware release."""
        self._sim.release()

    def close(self) -> None:
        """Disable the drive."""
        self._sim.close()
