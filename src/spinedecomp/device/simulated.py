"""The simulated table: the embedded default device, physics in `spinedecomp.device.physics`.

Parameters come from the patient's body weight and the region. Faults are applied by the
fault schedule (`spinedecomp.device.faults`) at exact times. Noise comes from a seeded numpy
generator so every run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.core.units import Region, limits_for
from spinedecomp.device import physics as ph
from spinedecomp.device.plant import PlantParams, nominal_plant
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
    plant: PlantParams | None = None  # a plant drawn from the family; None = the nominal one


def plant_for(model: PatientModel) -> PlantParams:
    """The plant a patient model stands for: its own drawn plant, or the nominal one."""
    if model.plant is not None:
        return model.plant
    return nominal_plant(model.region, model.body_weight_kg, split_table=model.split_table,
                         noise=model.noise, seed=model.seed, slack_mm=model.slack_mm)


def physics_params(model: PatientModel) -> npt.NDArray[np.float64]:
    """Build the physics parameter array for a patient."""
    return plant_for(model).params()


class SimulatedTable:
    """A traction table in software: implements `Table` and exposes its arrays so the
    session engine can run whole blocks of periods in one compiled loop."""

    def __init__(self, model: PatientModel, *, angle_deg: float = 0.0) -> None:
        self.model = model
        self.plant = plant_for(model)
        self.params = self.plant.params()
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
            dynamics=self.plant.declared,
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
            effort_n=float(s[ph.S_EFFORT]),
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
        """The simulated patient presses and releases the switch when asked. A press already
        in place (a fault injected before the test) is seen as "not idle" and stays in place
        after the test: the test never erases a real press."""
        if self.faults[ph.FLT_SWITCH_UNPLUGGED] > 0.5 or self.faults[ph.FLT_SWITCH_B_STUCK] > 0.5:
            return False
        held = self.faults[ph.FLT_SWITCH_PRESSED]
        self.advance(1e-3)  # the switch as it is now, faults included
        idle_ok = self.state[ph.S_SW_A] == 1.0 and self.state[ph.S_SW_B] == 0.0
        self.faults[ph.FLT_SWITCH_PRESSED] = 1.0
        self.advance(1e-3)
        pressed_ok = self.state[ph.S_SW_A] == 0.0 and self.state[ph.S_SW_B] == 1.0
        self.faults[ph.FLT_SWITCH_PRESSED] = 0.0
        self.advance(1e-3)
        released_ok = self.state[ph.S_SW_A] == 1.0 and self.state[ph.S_SW_B] == 0.0
        self.faults[ph.FLT_SWITCH_PRESSED] = held
        self.advance(1e-3)
        return bool(idle_ok and pressed_ok and released_ok)

    def release(self) -> None:
        """The simulated firmware's own release: disable the drive (the reel freewheels)."""
        self._cmd = ActuatorCommand(0.0, self._cmd.angle_deg, False, self._cmd.heartbeat)

    def close(self) -> None:
        """Disable the drive."""
        self.release()
