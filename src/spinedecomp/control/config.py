"""Force controller configuration, built into the kernel's parameter array.

The loop gain and the approach speed are not tuned on one plant: they are computed from the
table's drive dynamics (declared in `TableInfo.dynamics`, else the worst case of the operating
envelope) and the control period, so the same rules hold on any table of the envelope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.control import law as cl
from spinedecomp.core.units import Region, limits_for


@dataclass(frozen=True)
class DriveEnvelope:
    """The drive dynamics the controller designs for (docs/device-protocol.md, envelope)."""

    motor_lag_s: float
    transport_delay_s: float
    stiffness_max_n_per_mm: float


# The worst case the controller supports; a table that declares nothing is treated as this.
WORST_MOTOR_LAG_S = 0.150
WORST_TRANSPORT_DELAY_S = 0.020
STIFFNESS_MAX = {Region.LUMBAR: 150.0, Region.CERVICAL: 40.0}
STIFFNESS_MIN = {Region.LUMBAR: 1.0, Region.CERVICAL: 0.25}
# Slowest and fastest sensible control rates: below 50 Hz the 20 ms safety filters would be
# shorter than a period and a contact could not be stopped within its force budget.
RATE_MIN_HZ = 50.0
RATE_MAX_HZ = 5000.0


def envelope(region: Region, motor_lag_s: float | None = None,
             transport_delay_s: float | None = None,
             stiffness_max_n_per_mm: float | None = None) -> DriveEnvelope:
    """The envelope for a table: what it declares, the worst case for what it does not."""
    return DriveEnvelope(
        motor_lag_s=WORST_MOTOR_LAG_S if motor_lag_s is None else motor_lag_s,
        transport_delay_s=WORST_TRANSPORT_DELAY_S if transport_delay_s is None else transport_delay_s,
        stiffness_max_n_per_mm=(STIFFNESS_MAX[region] if stiffness_max_n_per_mm is None
                                else min(stiffness_max_n_per_mm, STIFFNESS_MAX[region])),
    )


@dataclass(frozen=True)
class ControllerConfig:
    """Gains and limits of the force loop for one region."""

    region: Region
    crossover_max_rad_s: float
    integral_ratio: float  # integral corner as a fraction of the crossover
    filter_hz: float
    vmax_mm_s: float
    rate_max_n_s: float
    slew_down_n_s: float
    contact_n: float
    contact_budget_n: float  # force overshoot allowed when the harness comes into contact
    v_approach_max_mm_s: float
    est_period_s: float = 2.0
    setpoint_expire_s: float = 0.1
    expire_rate_n_s: float = 100.0
    rls_lambda: float = 0.9
    guard_n: float = 10.0
    guard_rel: float = 0.06
    guard_calm_s: float = 1.0
    phase_budget_rad: float = 0.6
    stiffness_margin: float = 2.0

    @staticmethod
    def for_region(region: Region) -> ControllerConfig:
        """Defaults for a region (docs/control.md, "Force controller")."""
        lim = limits_for(region)
        if region is Region.LUMBAR:
            return ControllerConfig(region=region, crossover_max_rad_s=12.0, integral_ratio=0.25,
                                    filter_hz=15.0, vmax_mm_s=100.0,
                                    rate_max_n_s=lim.max_rate_of_rise_n_per_s,
                                    slew_down_n_s=250.0, contact_n=5.0, contact_budget_n=30.0,
                                    v_approach_max_mm_s=20.0, guard_n=12.0)
        return ControllerConfig(region=region, crossover_max_rad_s=12.0, integral_ratio=0.25,
                                filter_hz=15.0, vmax_mm_s=60.0,
                                rate_max_n_s=lim.max_rate_of_rise_n_per_s,
                                slew_down_n_s=80.0, contact_n=3.0, contact_budget_n=10.0,
                                v_approach_max_mm_s=8.0, guard_n=5.0)

    def loop_delay_s(self, dt: float, env: DriveEnvelope) -> float:
        """Dead time of the loop besides the motor lag: transport, half a period of the
        zero-order hold plus one period of computation, and the measurement filter."""
        return env.transport_delay_s + 1.5 * dt + 1.0 / (2.0 * math.pi * self.filter_hz)

    def crossover(self, dt: float, env: DriveEnvelope) -> float:
        """The highest crossover that keeps the phase budget with the stiffness estimate off
        by `stiffness_margin` (the loop sees k_true / k_est times the designed gain)."""
        lag, td = env.motor_lag_s, self.loop_delay_s(dt, env)
        m = self.stiffness_margin
        lo, hi = 0.05, self.crossover_max_rad_s
        if math.atan(m * hi * lag) + m * hi * td <= self.phase_budget_rad:
            return hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if math.atan(m * mid * lag) + m * mid * td <= self.phase_budget_rad:
                lo = mid
            else:
                hi = mid
        return lo

    def approach_speed(self, dt: float, env: DriveEnvelope) -> float:
        """Slack take-up speed: on the stiffest plant of the envelope, the force overshoot
        while the drive stops after contact stays within the contact budget."""
        t_stop = env.motor_lag_s + env.transport_delay_s + dt + \
            1.0 / (2.0 * math.pi * self.filter_hz) + 0.02
        v = self.contact_budget_n / (env.stiffness_max_n_per_mm * t_stop)
        return min(self.v_approach_max_mm_s, v)

    def params(self, dt: float, env: DriveEnvelope | None = None, *, noise_sd_n: float = 1.0,
               tare_a_n: float = 0.0, tare_b_n: float = 0.0) -> npt.NDArray[np.float64]:
        """The kernel parameter array for a control period of `dt` seconds on a table of the
        given envelope (the worst case if None)."""
        env = env or envelope(self.region)
        wc = self.crossover(dt, env)
        cp = np.zeros(cl.N_CPARAM)
        cp[cl.CP_WC] = wc
        cp[cl.CP_WI] = self.integral_ratio * wc
        cp[cl.CP_FILT_HZ] = self.filter_hz
        cp[cl.CP_KMIN] = STIFFNESS_MIN[self.region]
        cp[cl.CP_KMAX] = 1.5 * STIFFNESS_MAX[self.region]
        cp[cl.CP_VMAX] = self.vmax_mm_s
        cp[cl.CP_RATE_MAX] = self.rate_max_n_s
        cp[cl.CP_SLEW_DOWN] = self.slew_down_n_s
        cp[cl.CP_CONTACT_N] = self.contact_n
        cp[cl.CP_V_APPROACH] = self.approach_speed(dt, env)
        cp[cl.CP_EST_PERIODS] = max(1.0, round(self.est_period_s / dt))
        cp[cl.CP_SP_EXPIRE] = max(1.0, round(self.setpoint_expire_s / dt))
        cp[cl.CP_EXPIRE_RATE] = self.expire_rate_n_s
        # Start from the stiffest plant: the gentlest gain; the estimate comes down in the
        # first moments of contact.
        cp[cl.CP_K0] = env.stiffness_max_n_per_mm
        cp[cl.CP_TARE_A] = tare_a_n
        cp[cl.CP_TARE_B] = tare_b_n
        cp[cl.CP_RLS_LAMBDA] = self.rls_lambda
        # Noise of a filtered force increment (two samples of the filtered mean of two cells),
        # plus a floor for model error (creep, quantisation).
        alpha = 1.0 - math.exp(-2.0 * math.pi * self.filter_hz * dt)
        sd_filt = noise_sd_n / math.sqrt(2.0) * math.sqrt(alpha / (2.0 - alpha))
        cp[cl.CP_RLS_R] = 2.0 * sd_filt * sd_filt + 0.25
        cp[cl.CP_RLS_PMAX] = 1e3
        cp[cl.CP_EST_DF] = max(0.3 * self.contact_n, 3.0 * sd_filt * math.sqrt(2.0))
        cp[cl.CP_GUARD_N] = self.guard_n
        cp[cl.CP_GUARD_REL] = self.guard_rel
        cp[cl.CP_GUARD_CALM_S] = self.guard_calm_s
        cp[cl.CP_BACKOFF] = 2.0 * wc
        return cp

    def new_state(self, env: DriveEnvelope | None = None) -> npt.NDArray[np.float64]:
        """A fresh controller state."""
        env = env or envelope(self.region)
        c = np.zeros(cl.N_CSTATE)
        c[cl.C_KEST] = env.stiffness_max_n_per_mm
        c[cl.C_P] = 1e3
        return c
