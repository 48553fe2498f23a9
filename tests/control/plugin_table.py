"""A table a maker would plug in with `--device python:tests.control.plugin_table:make`.

It wraps the simulator behind nothing but the `Table` protocol, so the engine drives it with
its step loop (one read, one write per period), as it would any table that is not the
built-in simulator. Its plant is one of the family, not the nominal one.
"""

from __future__ import annotations

from spinedecomp.core.units import Region
from spinedecomp.device.plant import draw_plant
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import ActuatorCommand, SensorFrame
from tests.wrapped_table import SimulatorWrapper


class WrappedTable(SimulatorWrapper):
    """Implements `Table` by delegation; counts reads per write to check the contract."""

    def __init__(self) -> None:
        plant = draw_plant(Region.LUMBAR, 80.0, seed=424242, max_force_n=400.0)
        super().__init__(SimulatedTable(PatientModel(Region.LUMBAR, 80.0, plant=plant)))
        self.reads_since_write = 0
        self.max_reads_per_period = 0
        self.writes = 0

    def read(self) -> SensorFrame:
        """Raw sensors."""
        self.reads_since_write += 1
        return self._sim.read()

    def write(self, cmd: ActuatorCommand) -> None:
        """Command for the coming period."""
        self.max_reads_per_period = max(self.max_reads_per_period, self.reads_since_write)
        self.reads_since_write = 0
        self.writes += 1
        self._sim.write(cmd)


LAST: list[WrappedTable] = []


def make() -> WrappedTable:
    """The factory named on the command line."""
    t = WrappedTable()
    LAST.append(t)
    return t


def not_a_table() -> object:
    """A factory that returns something else."""
    return object()
