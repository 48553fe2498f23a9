"""Force controller configuration, built into the kernel's parameter array."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.control import law as cl
from spinedecomp.core.units import Region, limits_for


@dataclass(frozen=True)
class ControllerConfig:
    """Gains and limits of the force loop for one region."""

    crossover_rad_s: float
    integral_rad_s: float
    filter_hz: float
    k_min: float
    k_max: float
    k0: float
    vmax_mm_s: float
    rate_max_n_s: float
    slew_down_n_s: float
    contact_n: float
    v_slack_mm_s: float
    est_period_s: float = 0.02
    setpoint_expire_s: float = 0.1
    expire_rate_n_s: float = 100.0

    @staticmethod
    def for_region(region: Region) -> ControllerConfig:
        """Defaults tuned on the simulator across 45-160 kg (see docs/control.md)."""
        lim = limits_for(region)
        if region is Region.LUMBAR:
            return ControllerConfig(crossover_rad_s=12.0, integral_rad_s=3.0, filter_hz=15.0,
                                    k_min=2.0, k_max=80.0, k0=12.0, vmax_mm_s=100.0,
                                    rate_max_n_s=lim.max_rate_of_rise_n_per_s,
                                    slew_down_n_s=250.0, contact_n=8.0, v_slack_mm_s=20.0)
        return ControllerConfig(crossover_rad_s=12.0, integral_rad_s=3.0, filter_hz=15.0,
                                k_min=0.5, k_max=30.0, k0=5.0, vmax_mm_s=60.0,
                                rate_max_n_s=lim.max_rate_of_rise_n_per_s,
                                slew_down_n_s=80.0, contact_n=5.0, v_slack_mm_s=6.0)

    def params(self, dt: float) -> npt.NDArray[np.float64]:
        """The kernel parameter array for a control period of `dt` seconds."""
        cp = np.zeros(cl.N_CPARAM)
        cp[cl.CP_WC] = self.crossover_rad_s
        cp[cl.CP_WI] = self.integral_rad_s
        cp[cl.CP_FILT_HZ] = self.filter_hz
        cp[cl.CP_KMIN] = self.k_min
        cp[cl.CP_KMAX] = self.k_max
        cp[cl.CP_VMAX] = self.vmax_mm_s
        cp[cl.CP_RATE_MAX] = self.rate_max_n_s
        cp[cl.CP_SLEW_DOWN] = self.slew_down_n_s
        cp[cl.CP_CONTACT_N] = self.contact_n
        cp[cl.CP_V_SLACK] = self.v_slack_mm_s
        cp[cl.CP_EST_PERIODS] = max(1.0, round(self.est_period_s / dt))
        cp[cl.CP_SP_EXPIRE] = max(1.0, round(self.setpoint_expire_s / dt))
        cp[cl.CP_EXPIRE_RATE] = self.expire_rate_n_s
        cp[cl.CP_K0] = self.k0
        return cp

    def new_state(self) -> npt.NDArray[np.float64]:
        """A fresh controller state."""
        c = np.zeros(cl.N_CSTATE)
        c[cl.C_KEST] = self.k0
        return c
