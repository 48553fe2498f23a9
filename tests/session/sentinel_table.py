"""A table whose driver passes an invalid reading through, for `--device
python:tests.session.sentinel_table:make` (issue 12 item 11).

It wraps the simulator behind the `Table` protocol and, like a real table, does not report the
true force (NaN), so the summary works from the load cells. From `SENTINEL_AT_S` (env
`SENTINEL_AT_S`, default 60 s) for `SENTINEL_PERIODS` periods it reports what env
`SENTINEL_MODE` says:

- `both`: both cells read +21,474,836.47 N (0x7FFF_FFFF counts at 0.01 N, a saturated register);
- `a-sentinel`: cell A reads -21,474,836.48 N (the Modbus sentinel 0x8000_0000 taken as a
  number instead of "no valid reading");
- `a-nan`: cell A reads NaN (the sentinel decoded as it should be).
"""

from __future__ import annotations

import dataclasses
import math
import os

from spinedecomp.core.units import Region
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import SensorFrame, TableInfo
from tests.wrapped_table import SimulatorWrapper

SENTINEL_N = -0x8000_0000 * 0.01  # -21,474,836.48 N
SATURATED_N = 0x7FFF_FFFF * 0.01  # +21,474,836.47 N


class SentinelTable(SimulatorWrapper):
    """Implements `Table` by delegation, corrupting the cells for a few periods."""

    def __init__(self, mode: str, at_s: float, periods: int) -> None:
        super().__init__(SimulatedTable(PatientModel(Region.LUMBAR, 80.0)))
        self.mode = mode
        self.at_s = at_s
        self.periods = periods
        self.corrupted = 0

    @property
    def info(self) -> TableInfo:
        """The wrapped table's identity, not simulated: a real table hides the true force."""
        return dataclasses.replace(self._sim.info, simulated=False)

    def read(self) -> SensorFrame:
        """Raw sensors, the true force hidden, the cells corrupted in the window."""
        frame = dataclasses.replace(self._sim.read(), force_true_n=math.nan,
                                    distraction_mm=math.nan, guarding=math.nan)
        if self.t >= self.at_s and self.corrupted < self.periods:
            self.corrupted += 1
            if self.mode == "both":
                return dataclasses.replace(frame, force_a_n=SATURATED_N, force_b_n=SATURATED_N)
            if self.mode == "a-sentinel":
                return dataclasses.replace(frame, force_a_n=SENTINEL_N)
            return dataclasses.replace(frame, force_a_n=math.nan)
        return frame


def make() -> SentinelTable:
    """The factory named on the command line; configured by the environment."""
    return SentinelTable(os.environ.get("SENTINEL_MODE", "both"),
                         float(os.environ.get("SENTINEL_AT_S", "60")),
                         int(os.environ.get("SENTINEL_PERIODS", "1")))
