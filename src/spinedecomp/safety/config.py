"""Safety monitor configuration: thresholds and time filters, built into the kernel's
parameter array. Every number here is documented in docs/safety.md."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinedecomp.core.units import Region, kg_to_n, limits_for
from spinedecomp.safety import law as zl


@dataclass(frozen=True)
class SafetyConfig:
    """Thresholds and filters of the safety monitor for one region."""

    region: Region
    abs_limit_n: float
    overforce_margin_n: float = 15.0
    overforce_margin_rel: float = 0.05
    overforce_s: float = 0.020
    rate_limit_n_s: float = 180.0
    rate_s: float = 0.030
    disagree_n: float = 20.0
    disagree_rel: float = 0.10
    disagree_s: float = 0.050
    frozen_s: float = 0.200
    heartbeat_s: float = 0.020
    comm_s: float = 0.050
    angle_tol_deg: float = 3.0
    angle_s: float = 15.0
    release_rate_n_s: float = 300.0
    safe_n: float = 15.0
    stall_tol_n: float = 40.0
    stall_s: float = 0.300
    motor_off_delay_s: float = 5.0
    release_gain: float = 2.0
    vmax_mm_s: float = 100.0
    sensor_min_n: float = -50.0
    sensor_max_n: float = 2000.0
    travel_max_mm: float = 300.0
    angle_min_deg: float = -2.0
    angle_max_deg: float = 35.0
    switch_disagree_s: float = 0.050
    track_n: float = 30.0
    track_rel: float = 0.15
    track_s: float = 1.5
    zero_s: float = 3.0
    tare_a_n: float = 0.0
    tare_b_n: float = 0.0
    # Each cell's noise (sd) measured at tare: the disagreement and frozen checks sit above it,
    # so a live but noisy cell is never judged failed by chance.
    noise_a_n: float = 0.0
    noise_b_n: float = 0.0
    rate_abs_n_s: float = 2000.0
    rate_abs_s: float = 0.050
    rate_min_force_n: float = 45.0
    pull_speed_mm_s: float = 0.5
    frozen_travel_mm: float = 4.0
    frozen_change_n: float = 1.0
    frozen_min_force_n: float = 20.0
    effort_margin_n: float = 40.0
    effort_margin_rel: float = 0.20
    effort_s: float = 0.200
    drop_n: float = 40.0
    drop_rel: float = 0.25
    drop_window_s: float = 0.5
    drop_payout_mm: float = 0.05
    frozen_kmax_n_mm: float = 150.0  # the envelope's stiffest plant (docs/control.md)
    effort_learn_s: float = 20.0
    effort_cal_n: float = 25.0
    effort_cal_rel: float = 0.06
    release_x_tol_mm: float = 2.0
    release_v_min_mm_s: float = 10.0
    freewheel_max_s: float = 30.0
    pull_cap_rate_n_s: float = 300.0  # 2.5x the lumbar rate-of-rise limit
    slack_v_cap_mm_s: float = 100.0  # the session sets it to twice its approach speed
    clamp_ramp_n_s: float = 125.0
    rate_filter_hz: float = 4.0
    tare_limit_n: float = 30.0  # a cell offset beyond this at set-up is a fault, not a tare
    tare_noise_limit_n: float = 8.0  # nor is a cell noisier than this (sd over the window)
    # Any set-point above this needs an explicit operator confirmation (TM-300: 18 kg).
    confirm_force_n: float = kg_to_n(18.0)

    @staticmethod
    def for_region(region: Region, **overrides: float) -> SafetyConfig:
        """Defaults for a region, from the quantity registry."""
        lim = limits_for(region)
        base = SafetyConfig(
            region=region,
            abs_limit_n=lim.force.absolute.hi,
            rate_limit_n_s=2.0 * lim.max_rate_of_rise_n_per_s,
            release_rate_n_s=300.0 if region is Region.LUMBAR else 100.0,
            safe_n=lim.safe_rest_force_n,
            travel_max_mm=lim.travel.absolute.hi,
            angle_min_deg=lim.angle.absolute.lo,
            angle_max_deg=lim.angle.absolute.hi,
            disagree_n=20.0 if region is Region.LUMBAR else 8.0,
            sensor_max_n=2.0 * lim.force.absolute.hi,
            confirm_force_n=lim.confirm_force_n,
            track_n=30.0 if region is Region.LUMBAR else 12.0,
            release_gain=2.0 if region is Region.LUMBAR else 4.0,
            stall_tol_n=40.0 if region is Region.LUMBAR else 15.0,
            rate_abs_n_s=2000.0 if region is Region.LUMBAR else 600.0,
            rate_min_force_n=45.0 if region is Region.LUMBAR else 20.0,
            frozen_travel_mm=0.5 if region is Region.LUMBAR else 1.0,
            effort_margin_n=40.0 if region is Region.LUMBAR else 15.0,
            drop_n=40.0 if region is Region.LUMBAR else 15.0,
            frozen_kmax_n_mm=150.0 if region is Region.LUMBAR else 40.0,
            effort_cal_n=25.0 if region is Region.LUMBAR else 10.0,
            pull_cap_rate_n_s=2.5 * lim.max_rate_of_rise_n_per_s,
            frozen_change_n=1.0 if region is Region.LUMBAR else 0.5,
            frozen_min_force_n=20.0 if region is Region.LUMBAR else 8.0,
            clamp_ramp_n_s=125.0 if region is Region.LUMBAR else 40.0,
            tare_limit_n=30.0 if region is Region.LUMBAR else 12.0,
            tare_noise_limit_n=8.0 if region is Region.LUMBAR else 5.0,
        )
        if not overrides:
            return base
        fields = {**base.__dict__, **overrides}
        return SafetyConfig(**fields)

    def params(self, dt: float | None = None) -> npt.NDArray[np.float64]:
        """The kernel parameter array. With `dt`, every time filter lasts at least two
        control periods, so one sample never decides (documented per rate in docs/safety.md)."""
        zp = np.zeros(zl.N_ZPARAM)
        zp[zl.ZP_ABS_LIMIT] = self.abs_limit_n
        zp[zl.ZP_OVER_MARGIN_N] = self.overforce_margin_n
        zp[zl.ZP_OVER_MARGIN_REL] = self.overforce_margin_rel
        zp[zl.ZP_RATE_LIMIT] = self.rate_limit_n_s
        # Two cells' difference carries both noises: 3 sd of it on top of the fixed limit
        # (0.3 N per cell adds 1.3 N; 3 N per cell, the noisiest the envelope allows, 13 N).
        zp[zl.ZP_DISAGREE_N] = self.disagree_n + 3.0 * math.hypot(self.noise_a_n, self.noise_b_n)
        zp[zl.ZP_DISAGREE_REL] = self.disagree_rel
        zp[zl.ZP_SENSOR_MIN] = self.sensor_min_n
        zp[zl.ZP_SENSOR_MAX] = self.sensor_max_n
        zp[zl.ZP_TRAVEL_MAX] = self.travel_max_mm
        zp[zl.ZP_ANGLE_MIN] = self.angle_min_deg
        zp[zl.ZP_ANGLE_MAX] = self.angle_max_deg
        zp[zl.ZP_ANGLE_TOL] = self.angle_tol_deg
        zp[zl.ZP_RELEASE_RATE] = self.release_rate_n_s
        zp[zl.ZP_SAFE_N] = self.safe_n
        zp[zl.ZP_STALL_TOL] = self.stall_tol_n
        zp[zl.ZP_MOTOR_OFF_DELAY] = self.motor_off_delay_s
        zp[zl.ZP_KR] = self.release_gain
        zp[zl.ZP_VMAX] = self.vmax_mm_s
        zp[zl.ZP_OVERFORCE_S] = self.overforce_s
        zp[zl.ZP_RATE_S] = self.rate_s
        zp[zl.ZP_DISAGREE_S] = self.disagree_s
        zp[zl.ZP_FROZEN_S] = self.frozen_s
        zp[zl.ZP_HEARTBEAT_S] = self.heartbeat_s
        zp[zl.ZP_COMM_S] = self.comm_s
        zp[zl.ZP_ANGLE_S] = self.angle_s
        zp[zl.ZP_STALL_S] = self.stall_s
        zp[zl.ZP_SW_DISAGREE_S] = self.switch_disagree_s
        zp[zl.ZP_TRACK_N] = self.track_n
        zp[zl.ZP_TRACK_REL] = self.track_rel
        zp[zl.ZP_TRACK_S] = self.track_s
        zp[zl.ZP_ZERO_S] = self.zero_s
        zp[zl.ZP_TARE_A] = self.tare_a_n
        zp[zl.ZP_TARE_B] = self.tare_b_n
        zp[zl.ZP_RATE_ABS] = self.rate_abs_n_s
        zp[zl.ZP_RATE_ABS_S] = self.rate_abs_s
        zp[zl.ZP_RATE_MIN_F] = self.rate_min_force_n
        zp[zl.ZP_PULL_V] = self.pull_speed_mm_s
        zp[zl.ZP_FROZEN_X] = self.frozen_travel_mm
        # A live cell wanders by its noise; "has not changed" must mean beyond 4 sd of it.
        zp[zl.ZP_FROZEN_DF] = max(self.frozen_change_n,
                                  4.0 * max(self.noise_a_n, self.noise_b_n))
        zp[zl.ZP_FROZEN_MIN_F] = self.frozen_min_force_n
        zp[zl.ZP_EFFORT_N] = self.effort_margin_n
        zp[zl.ZP_EFFORT_REL] = self.effort_margin_rel
        zp[zl.ZP_EFFORT_S] = self.effort_s
        zp[zl.ZP_DROP_N] = self.drop_n
        zp[zl.ZP_DROP_REL] = self.drop_rel
        zp[zl.ZP_DROP_S] = self.drop_window_s
        zp[zl.ZP_DROP_X] = self.drop_payout_mm
        zp[zl.ZP_FROZEN_KMAX] = self.frozen_kmax_n_mm
        zp[zl.ZP_EFF_LEARN_S] = self.effort_learn_s
        zp[zl.ZP_EFF_CAL_N] = self.effort_cal_n
        zp[zl.ZP_EFF_CAL_REL] = self.effort_cal_rel
        zp[zl.ZP_REL_X_TOL] = self.release_x_tol_mm
        zp[zl.ZP_REL_VMIN] = self.release_v_min_mm_s
        zp[zl.ZP_FREEWHEEL_MAX] = self.freewheel_max_s
        zp[zl.ZP_PULL_CAP_RATE] = self.pull_cap_rate_n_s
        zp[zl.ZP_SLACK_V_CAP] = self.slack_v_cap_mm_s
        zp[zl.ZP_CLAMP_RAMP] = self.clamp_ramp_n_s
        zp[zl.ZP_RATE_FILT_HZ] = self.rate_filter_hz
        if dt is not None:
            for i in (zl.ZP_OVERFORCE_S, zl.ZP_RATE_S, zl.ZP_DISAGREE_S, zl.ZP_HEARTBEAT_S,
                      zl.ZP_COMM_S, zl.ZP_STALL_S, zl.ZP_SW_DISAGREE_S, zl.ZP_RATE_ABS_S):
                zp[i] = max(zp[i], 2.0 * dt - 1e-9)
        return zp
