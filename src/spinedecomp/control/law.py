"""The force control law: load-cell force -> cable velocity, as a numba kernel.

PI with anti-windup, feed-forward of the set-point's rate through an online estimate of the
cable-to-force stiffness, automatic slack take-up, and, as the very last layer before the
actuator, the clamp: no pull once measured force reaches min(protocol cap, clinician cap,
device absolute limit), and a rate-of-rise limit on the commanded velocity.

The controller owns only its own state array; the safety monitor never reads it except the
heartbeat counter, which it only compares (see spinedecomp.safety.law).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]

# ---- state ---------------------------------------------------------------------------------
C_FILT = 0  # filtered measured force, N
C_INTEG = 1  # integrator output, mm/s
C_KEST = 2  # stiffness estimate, N/mm
C_PREV_TARGET = 3  # previous (slewed) target, N
C_TARGET = 4  # slewed target after the clamp, N
C_HEARTBEAT = 5  # incremented every period the controller runs
C_CMD = 6  # last velocity command, mm/s
C_EST_X = 7  # cable position at the last stiffness sample, mm
C_EST_F = 8  # filtered force at the last stiffness sample, N
C_EST_N = 9  # periods since the last stiffness sample
C_SP_AGE = 10  # periods since the last fresh set-point
C_CLAMP_ACTIVE = 11  # 1 when the clamp limited the command this period
N_CSTATE = 12

# ---- parameters ----------------------------------------------------------------------------
CP_WC = 0  # crossover, rad/s
CP_WI = 1  # integral corner, rad/s
CP_FILT_HZ = 2  # measurement low-pass cut-off
CP_KMIN = 3  # stiffness estimate bounds, N/mm
CP_KMAX = 4
CP_VMAX = 5  # velocity command limit, mm/s
CP_RATE_MAX = 6  # rate-of-rise limit, N/s
CP_SLEW_DOWN = 7  # set-point fall limit, N/s
CP_CONTACT_N = 8  # force that marks slack taken up
CP_V_SLACK = 9  # slack take-up speed, mm/s
CP_EST_PERIODS = 10  # periods between stiffness samples
CP_SP_EXPIRE = 11  # periods after which a set-point expires
CP_EXPIRE_RATE = 12  # ramp-down rate of an expired set-point, N/s
CP_K0 = 13  # initial stiffness estimate, N/mm
N_CPARAM = 14


@njit(cache=True)
def measured_force(fa: float, fb: float, last: float) -> float:
    """The force the controller acts on: the mean of the valid channels, else the last value.

    Judging whether a channel is trustworthy is the safety monitor's job, not the
    controller's: here an invalid channel is only skipped.
    """
    va = not math.isnan(fa)
    vb = not math.isnan(fb)
    if va and vb:
        return 0.5 * (fa + fb)
    if va:
        return fa
    if vb:
        return fb
    return last


@njit(cache=True)
def controller_step(c: F64, cp: F64, dt: float, target: float, fresh: float, clamp: float,
                    fa: float, fb: float, x: float) -> float:
    """One control period: returns the cable velocity command (mm/s, + = pull)."""
    c[C_HEARTBEAT] += 1.0
    f = measured_force(fa, fb, c[C_FILT])
    alpha = 1.0 - math.exp(-2.0 * math.pi * cp[CP_FILT_HZ] * dt)
    c[C_FILT] += alpha * (f - c[C_FILT])
    ff_meas = c[C_FILT]

    # Set-points expire: without a fresh command the target ramps down.
    if fresh > 0.5:
        c[C_SP_AGE] = 0.0
    else:
        c[C_SP_AGE] += 1.0
    prev = c[C_TARGET]
    expired = c[C_SP_AGE] > cp[CP_SP_EXPIRE]
    tgt = max(0.0, prev - cp[CP_EXPIRE_RATE] * dt) if expired else target
    # Slew the set-point: never faster than the rate-of-rise limit up, the release rate down.
    up = cp[CP_RATE_MAX] * dt
    down = cp[CP_SLEW_DOWN] * dt
    tgt = min(max(tgt, prev - down), prev + up)
    tgt = min(tgt, clamp)
    tgt = max(tgt, 0.0)
    c[C_PREV_TARGET] = prev
    c[C_TARGET] = tgt

    # Online stiffness estimate from force/position changes over a few periods.
    c[C_EST_N] += 1.0
    if c[C_EST_N] >= cp[CP_EST_PERIODS]:
        dx = x - c[C_EST_X]
        df = ff_meas - c[C_EST_F]
        if abs(dx) > 0.2 and ff_meas > cp[CP_CONTACT_N]:
            k_new = df / dx
            if cp[CP_KMIN] <= k_new <= cp[CP_KMAX]:
                c[C_KEST] += 0.2 * (k_new - c[C_KEST])
        c[C_EST_X] = x
        c[C_EST_F] = ff_meas
        c[C_EST_N] = 0.0
    k = min(max(c[C_KEST], cp[CP_KMIN]), cp[CP_KMAX])

    err = tgt - ff_meas
    kp = cp[CP_WC] / k
    v_ff = (tgt - prev) / dt / k
    if ff_meas < cp[CP_CONTACT_N] and tgt > cp[CP_CONTACT_N]:
        # Slack: take it up at a gentle constant speed; the integrator waits.
        v = cp[CP_V_SLACK]
    else:
        v_unsat = v_ff + kp * err + c[C_INTEG]
        # Anti-windup by conditional integration: do not integrate further into saturation.
        saturated_up = v_unsat >= cp[CP_VMAX] and err > 0.0
        saturated_dn = v_unsat <= -cp[CP_VMAX] and err < 0.0
        if not (saturated_up or saturated_dn):
            c[C_INTEG] += kp * cp[CP_WI] * err * dt
        v = v_ff + kp * err + c[C_INTEG]

    # Last layer before the actuator: the clamp and the rate-of-rise limit.
    c[C_CLAMP_ACTIVE] = 0.0
    if ff_meas >= clamp:
        v_clamp = kp * (clamp - ff_meas)
        if v > v_clamp:
            v = v_clamp
            c[C_CLAMP_ACTIVE] = 1.0
            c[C_INTEG] = min(c[C_INTEG], 0.0)
    v_rate = cp[CP_RATE_MAX] / k
    if v > v_rate:
        v = v_rate
    v = min(max(v, -cp[CP_VMAX]), cp[CP_VMAX])
    c[C_CMD] = v
    return float(v)
