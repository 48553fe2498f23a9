"""The simulated table: the embedded default device, physics in `spinedecomp.device.physics`.

Parameters come from the patient's body weight and the region. Faults are applied by the
fault schedule (`spinedecomp.device.faults`) at exact times. Noise comes from a seeded numpy
generator so every run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.core.units import Region, kg_to_n, limits_for
from spinedecomp.device import physics as ph
from spinedecomp.device.table import ActuatorCommand, SensorFrame, TableInfo


@dataclass(frozen=True)
class PatientModel:
    """Patient and table parameters (see docs/simulator.md for the reasoning)."""

    region: Region
    body_weight_kg: float
    split_table: bool = True
    noise: bool = True
    seed: int = 0
    slack_mm: float | None = None


def physics_params(model: PatientModel) -> npt.NDArray[np.float64]:
    """Build the physics parameter array for a patient."""
    p = np.zeros(ph.N_PARAM)
    bw_n = kg_to_n(model.body_weight_kg)
    scale = math.sqrt(model.body_weight_kg / 80.0)
    lim = limits_for(model.region)
    if model.region is Region.LUMBAR:
        # Lower body is about half the body weight; friction ~ half the segment weight on a
        # fixed table (Saunders lumbar guide), a few percent on a split table.
        seg = 0.5 * bw_n
        p[ph.P_FF] = seg * (0.04 if model.split_table else 0.5)
        p[ph.P_KCH] = 15.0 * scale
        p[ph.P_SLACK] = 25.0 if model.slack_mm is None else model.slack_mm
        p[ph.P_K1] = 120.0 * scale
        p[ph.P_K2] = 250.0 * scale
        p[ph.P_C2] = 250.0 * scale * 25.0  # creep time constant 25 s
        p[ph.P_GUARD_R0] = 15.0
        p[ph.P_GUARD_RSCALE] = 30.0
        p[ph.P_GUARD_FREF] = 0.35 * bw_n
        p[ph.P_NOISE_SD] = 1.0
        p[ph.P_QUANT] = 0.05
    else:
        seg = 0.08 * bw_n  # the head
        p[ph.P_FF] = seg * 0.1  # sliding head piece
        p[ph.P_KCH] = 6.0 * scale
        p[ph.P_SLACK] = 12.0 if model.slack_mm is None else model.slack_mm
        p[ph.P_K1] = 40.0 * scale
        p[ph.P_K2] = 80.0 * scale
        p[ph.P_C2] = 80.0 * scale * 20.0
        p[ph.P_GUARD_R0] = 5.0
        p[ph.P_GUARD_RSCALE] = 10.0
        p[ph.P_GUARD_FREF] = 0.08 * bw_n
        p[ph.P_NOISE_SD] = 0.3
        p[ph.P_QUANT] = 0.02
    p[ph.P_GUARD_GAIN] = 1.5
    p[ph.P_GUARD_TAU_ON] = 0.3
    p[ph.P_GUARD_TAU_OFF] = 15.0
    p[ph.P_MOTOR_TAU] = 0.02
    p[ph.P_VMAX] = 100.0
    p[ph.P_AMAX] = 2000.0
    p[ph.P_B_FREE] = 4.0
    rng = np.random.default_rng(model.seed + 7919)
    p[ph.P_GAIN_A] = 1.0 + rng.uniform(-0.002, 0.002)
    p[ph.P_GAIN_B] = 1.0 + rng.uniform(-0.002, 0.002)
    p[ph.P_OFF_A] = rng.uniform(-0.5, 0.5) * p[ph.P_NOISE_SD]
    p[ph.P_OFF_B] = rng.uniform(-0.5, 0.5) * p[ph.P_NOISE_SD]
    if not model.noise:
        p[ph.P_NOISE_SD] = 0.0
        p[ph.P_OFF_A] = p[ph.P_OFF_B] = 0.0
        p[ph.P_GAIN_A] = p[ph.P_GAIN_B] = 1.0
        p[ph.P_QUANT] = 1e-6
    p[ph.P_ANGLE_RATE] = 2.0
    p[ph.P_TRAVEL_MAX] = lim.travel.absolute.hi + 20.0  # the mechanical stop is past the limit
    return p


class SimulatedTable:
    """A traction table in software: implements `Table` and exposes its arrays so the
    session engine can run whole blocks of periods in one compiled loop."""

    def __init__(self, model: PatientModel, *, angle_deg: float = 0.0) -> None:
        self.model = model
        self.params = physics_params(model)
        self.state = np.zeros(ph.N_STATE)
        self.state[ph.S_ANGLE] = angle_deg
        self.state[ph.S_SW_A] = 1.0
        self.state[ph.S_ENABLED] = 0.0
        self.faults = np.zeros(ph.N_FAULT)
        self.rng = np.random.default_rng(model.seed)
        self._cmd = ActuatorCommand(0.0, angle_deg, False, 0)
        lim = limits_for(model.region)
        self._info = TableInfo(
            name="spinedecomp simulated table",
            firmware="sim-1",
            simulated=True,
            regions=(Region.LUMBAR, Region.CERVICAL),
            force_limit_n=lim.force.absolute.hi,
            angle_min_deg=lim.angle.absolute.lo,
            angle_max_deg=lim.angle.absolute.hi,
            travel_max_mm=lim.travel.absolute.hi,
        )
        # Establish the load-cell readings at rest.
        self.advance(1e-3)

    @property
    def info(self) -> TableInfo:
        """Identity and capabilities."""
        return self._info

    def noise(self, n: int) -> npt.NDArray[np.float64]:
        """Load-cell noise for the next `n` periods (two channels)."""
        sd = float(self.params[ph.P_NOISE_SD])
        if sd == 0.0:
            return np.zeros((n, 2))
        return self.rng.normal(0.0, sd, size=(n, 2))

    def read(self) -> SensorFrame:
        """Raw sensors now."""
        s = self.state
        return SensorFrame(
            force_a_n=float(s[ph.S_LC_A]),
            force_b_n=float(s[ph.S_LC_B]),
            position_mm=float(s[ph.S_XM]),
            angle_deg=float(s[ph.S_ANGLE]),
            switch_a=float(s[ph.S_SW_A]),
            switch_b=float(s[ph.S_SW_B]),
            motor_enabled=bool(s[ph.S_ENABLED] > 0.5),
            comm_ok=True,
            force_true_n=float(s[ph.S_T]),
            distraction_mm=float(s[ph.S_DIST]),
            guarding=float(s[ph.S_G]),
        )

    def write(self, cmd: ActuatorCommand) -> None:
        """Store the command for the next `advance`."""
        self._cmd = cmd

    def advance(self, dt: float) -> None:
        """Integrate the physics over one period under the last command."""
        nz = self.noise(1)
        c = self._cmd
        ph.physics_step(self.state, self.params, self.faults, dt, c.velocity_mm_s,
                        1.0 if c.enable else 0.0, c.angle_deg, nz[0, 0], nz[0, 1])

    def test_patient_switch(self) -> bool:
        """The simulated patient presses and releases the switch when asked."""
        if self.faults[ph.FLT_SWITCH_UNPLUGGED] > 0.5 or self.faults[ph.FLT_SWITCH_B_STUCK] > 0.5:
            return False
        idle_ok = self.state[ph.S_SW_A] == 1.0 and self.state[ph.S_SW_B] == 0.0
        self.faults[ph.FLT_SWITCH_PRESSED] = 1.0
        self.advance(1e-3)
        pressed_ok = self.state[ph.S_SW_A] == 0.0 and self.state[ph.S_SW_B] == 1.0
        self.faults[ph.FLT_SWITCH_PRESSED] = 0.0
        self.advance(1e-3)
        released_ok = self.state[ph.S_SW_A] == 1.0 and self.state[ph.S_SW_B] == 0.0
        return bool(idle_ok and pressed_ok and released_ok)

    def release(self) -> None:
        """The simulated firmware's own release: disable the drive (the reel freewheels)."""
        self._cmd = ActuatorCommand(0.0, self._cmd.angle_deg, False, self._cmd.heartbeat)

    def close(self) -> None:
        """Disable the drive."""
        self.release()
