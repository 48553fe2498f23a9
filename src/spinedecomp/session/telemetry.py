"""Telemetry columns (one row per control period) and an in-memory recorder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

COLUMNS: tuple[str, ...] = (
    "t",  # s since start
    "target_n",  # controller set-point after slew and clamp
    "force_a_n",  # raw load cell A
    "force_b_n",  # raw load cell B
    "force_true_n",  # simulator truth (NaN on a real table)
    "position_mm",  # cable position
    "distraction_mm",  # spinal distraction (simulator only)
    "angle_deg",
    "angle_target_deg",
    "motor_cmd_mm_s",  # what the actuator got
    "phase",  # trajectory Phase
    "state",  # SessionState code
    "guarding",  # muscle guarding activation 0..1 (simulator only)
    "cycle",
)
COL = {name: i for i, name in enumerate(COLUMNS)}
N_COL = len(COLUMNS)

BlockSink = Callable[[npt.NDArray[np.float64]], None]


class Recorder:
    """Keeps every telemetry row of a session in memory, in blocks."""

    def __init__(self) -> None:
        self._blocks: list[npt.NDArray[np.float64]] = []
        self.rows = 0

    def __call__(self, block: npt.NDArray[np.float64]) -> None:
        self._blocks.append(block)
        self.rows += block.shape[0]

    def array(self) -> npt.NDArray[np.float64]:
        """All rows so far as one (rows, N_COL) array."""
        if not self._blocks:
            return np.zeros((0, N_COL))
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        return self._blocks[0]
