"""The force control law: load-cell force -> cable velocity, as a numba kernel.

Made to work on tables it was never tuned on (docs/control.md, "Force controller"):

- **Tare**: each cell's offset measured at set-up is subtracted for the session.
- **Approach**: until the harness is in contact the cable is pulled at an approach speed
  chosen so that, on the stiffest plant the table may present, the force overshoot at
  contact stays within a budget (`ControllerConfig.approach_speed`). Then force control.
- **Identification**: the cable-to-force stiffness is estimated continuously by recursive
  least squares with forgetting on force and position increments (both through the same
  low-pass, so their lags match), at any speed; the loop gain follows it.
- **PI with anti-windup** and feed-forward of the set-point's rate through the stiffness
  estimate; the crossover is set from the drive's lag and delay (declared or worst case).
- **Muscle guarding**: force rising above the set-point while the cable is not pulling is
  counter-tension; the set-point is frozen (no progression) and the loop pays out towards it
  with a stronger gain until calm; each episode is recorded for the session.
- **Clamp**, the very last layer before the actuator: no pull once measured force reaches
  min(protocol cap, clinician cap, device limit); a lowered clamp ramps down at the release
  rate (never a step the force cannot follow); the pull speed is limited so the estimated
  force rise stays under the rate-of-rise limit. Set-points expire.

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
C_FILT = 0  # filtered measured force (tared), N
C_INTEG = 1  # integrator output, mm/s
C_KEST = 2  # stiffness estimate, N/mm
C_PREV_TARGET = 3  # previous (slewed) target, N
C_TARGET = 4  # slewed target after the clamp, N
C_HEARTBEAT = 5  # incremented every period the controller runs
C_CMD = 6  # last velocity command, mm/s
C_EST_X = 7  # filtered cable position at the start of the estimation window, mm
C_EST_F = 8  # filtered force at the start of the estimation window, N
C_EST_N = 9  # periods in the current estimation window
C_SP_AGE = 10  # periods since the last fresh set-point
C_CLAMP_ACTIVE = 11  # 1 when the clamp limited the command this period
C_XFILT = 12  # filtered cable position, mm
C_P = 13  # RLS covariance of the stiffness estimate, (N/mm)^2
C_CONTACT = 14  # 1 while the harness is in contact (slack taken up)
C_CLAMP_EFF = 15  # the clamp in force now (a lowered clamp ramps down), N
C_T = 16  # controller time, s
C_VX = 17  # filtered cable velocity, mm/s
C_FRATE = 18  # filtered force rate, N/s
C_GUARD = 19  # 1 during a guarding episode
C_GUARD_T0 = 20  # start of the current episode, s
C_GUARD_PEAK = 21  # largest force excess over the set-point in the episode, N
C_GUARD_HOLD = 22  # set-point frozen at this level during the episode, N
C_GUARD_CALM = 23  # seconds the excess has been small
C_GUARD_N = 24  # episodes completed so far
C_GUARD_PAYOUT = 25  # cable paid out during the episode, mm
C_GUARD_X0 = 26
C_RF1 = 27  # force through the first of two cascaded 4 Hz low-passes (rate estimate), N
C_RF2 = 28
C_EP0 = 29  # ring of the last EP_SLOTS episodes: (start s, duration s, peak N, payout mm)
EP_SLOTS = 8
EP_WIDTH = 4
N_CSTATE = C_EP0 + EP_SLOTS * EP_WIDTH

# ---- parameters ----------------------------------------------------------------------------
CP_WC = 0  # crossover, rad/s
CP_WI = 1  # integral corner, rad/s
CP_FILT_HZ = 2  # measurement low-pass cut-off
CP_KMIN = 3  # stiffness estimate bounds, N/mm
CP_KMAX = 4
CP_VMAX = 5  # velocity command limit, mm/s
CP_RATE_MAX = 6  # rate-of-rise limit, N/s
CP_SLEW_DOWN = 7  # set-point fall limit (and a lowered clamp's ramp), N/s
CP_CONTACT_N = 8  # force that marks contact (slack taken up)
CP_V_APPROACH = 9  # slack take-up speed, mm/s
CP_EST_PERIODS = 10  # longest stiffness-estimation window, periods
CP_SP_EXPIRE = 11  # periods after which a set-point expires
CP_EXPIRE_RATE = 12  # ramp-down rate of an expired set-point, N/s
CP_K0 = 13  # initial stiffness estimate, N/mm
CP_TARE_A = 14  # load-cell offsets measured at set-up, N
CP_TARE_B = 15
CP_RLS_LAMBDA = 16  # forgetting factor per estimation window
CP_RLS_R = 17  # variance of a force increment's noise, N^2
CP_RLS_PMAX = 18  # bound on the covariance (keeps the estimate from bursting)
CP_GUARD_N = 19  # force excess over the set-point that counts as counter-tension, N ...
CP_GUARD_REL = 20  # ... or this fraction of the set-point, whichever is larger
CP_GUARD_CALM_S = 21  # the excess must stay small this long to end an episode
CP_BACKOFF = 22  # pay-out gain during an episode, rad/s
CP_EST_DF = 23  # force change that closes an estimation window, N
N_CPARAM = 24


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
def _estimate_stiffness(c: F64, cp: F64) -> None:
    # One RLS update per window. A window closes when the force has changed by a clear signal
    # (`CP_EST_DF`, several times the filtered noise) in the direction the cable moved: then
    # df/dx is the elastic stiffness the loop meets. Windows with no such change (holds, where
    # the cable only follows the spine's creep at constant force) are discarded after
    # `CP_EST_PERIODS`: they carry creep, not stiffness, and would drag the estimate down.
    dx = c[C_XFILT] - c[C_EST_X]
    df = c[C_FILT] - c[C_EST_F]
    engaged = c[C_CONTACT] > 0.5 and c[C_FILT] > cp[CP_CONTACT_N]
    # A window also closes when the cable has pulled far enough for the estimate to predict a
    # clear rise, the force stayed well short of it, and the loop is pulling because force is
    # clearly below the set-point (a ramp, not a hold's creep): the patient is softer than
    # estimated. Without this a soft patient behind a noisy cell (force rising slower than the
    # noise threshold within a window) would keep the initial, stiff estimate and be ramped
    # at a crawl.
    softer = (dx > 0.0 and c[C_KEST] * dx >= 2.0 * cp[CP_EST_DF]
              and df < 0.5 * c[C_KEST] * dx
              and c[C_TARGET] - c[C_FILT] > 2.0 * cp[CP_EST_DF])
    clear = abs(df) >= cp[CP_EST_DF] and df * dx > 0.0
    if engaged and (clear or softer):
        if not clear:
            df = max(df, 0.0)  # a fall while pulling is creep or friction, not stiffness
        p = min(c[C_P] / cp[CP_RLS_LAMBDA], cp[CP_RLS_PMAX])
        gain = p * dx / (cp[CP_RLS_R] + dx * dx * p)
        k = c[C_KEST] + gain * (df - c[C_KEST] * dx)
        c[C_KEST] = min(max(k, cp[CP_KMIN]), cp[CP_KMAX])
        c[C_P] = (1.0 - gain * dx) * p
    elif engaged and c[C_EST_N] < cp[CP_EST_PERIODS]:
        return  # keep the window open
    c[C_EST_X] = c[C_XFILT]
    c[C_EST_F] = c[C_FILT]
    c[C_EST_N] = 0.0


@njit(cache=True)
def _guarding(c: F64, cp: F64, dt: float, tgt: float) -> None:
    # Counter-tension: force above the set-point and rising faster than the cable's own
    # motion explains (estimated stiffness x pull speed): the patient's muscles, not the
    # winch, are raising the force.
    fm = c[C_FILT]
    excess = fm - tgt
    thr = max(cp[CP_GUARD_N], cp[CP_GUARD_REL] * tgt)
    if c[C_GUARD] < 0.5:
        explained = 1.5 * c[C_KEST] * max(c[C_VX], 0.0)
        if (c[C_CONTACT] > 0.5 and tgt > 2.0 * cp[CP_CONTACT_N] and excess > thr
                and c[C_FRATE] > explained + 2.0 * cp[CP_GUARD_N]):
            c[C_GUARD] = 1.0
            c[C_GUARD_T0] = c[C_T]
            c[C_GUARD_PEAK] = excess
            c[C_GUARD_HOLD] = tgt
            c[C_GUARD_CALM] = 0.0
            c[C_GUARD_X0] = c[C_XFILT]
        return
    c[C_GUARD_PEAK] = max(c[C_GUARD_PEAK], excess)
    c[C_GUARD_PAYOUT] = max(c[C_GUARD_PAYOUT], c[C_GUARD_X0] - c[C_XFILT])
    if excess < 0.5 * thr:
        c[C_GUARD_CALM] += dt
    else:
        c[C_GUARD_CALM] = 0.0
    if c[C_GUARD_CALM] >= cp[CP_GUARD_CALM_S]:
        slot = C_EP0 + EP_WIDTH * (int(c[C_GUARD_N]) % EP_SLOTS)
        c[slot] = c[C_GUARD_T0]
        c[slot + 1] = c[C_T] - c[C_GUARD_T0]
        c[slot + 2] = c[C_GUARD_PEAK]
        c[slot + 3] = c[C_GUARD_PAYOUT]
        c[C_GUARD_N] += 1.0
        c[C_GUARD] = 0.0
        c[C_GUARD_PAYOUT] = 0.0


@njit(cache=True)
def controller_step(c: F64, cp: F64, dt: float, target: float, fresh: float, clamp: float,
                    fa: float, fb: float, x: float) -> float:
    """One control period: returns the cable velocity command (mm/s, + = pull)."""
    c[C_HEARTBEAT] += 1.0
    c[C_T] += dt
    f = measured_force(fa - cp[CP_TARE_A], fb - cp[CP_TARE_B], c[C_FILT])
    alpha = 1.0 - math.exp(-2.0 * math.pi * cp[CP_FILT_HZ] * dt)
    c[C_FILT] += alpha * (f - c[C_FILT])
    x_prev = c[C_XFILT]
    c[C_XFILT] += alpha * (x - c[C_XFILT])
    fm = c[C_FILT]
    beta = 1.0 - math.exp(-2.0 * math.pi * 5.0 * dt)
    c[C_VX] += beta * ((c[C_XFILT] - x_prev) / dt - c[C_VX])
    # Force rate as the slope of a twice low-passed force (no noise amplification by 1/dt),
    # the same estimate the safety monitor uses.
    wr = 2.0 * math.pi * 4.0
    ar = 1.0 - math.exp(-wr * dt)
    c[C_RF1] += ar * (f - c[C_RF1])
    c[C_RF2] += ar * (c[C_RF1] - c[C_RF2])
    c[C_FRATE] = wr * (c[C_RF1] - c[C_RF2])

    # A lowered clamp ramps down at the set-point's fall rate: force can follow it, so a
    # clinician lowering the cap never meets an over-force alarm; a raised one applies now
    # (the set-point still rises no faster than the rate-of-rise limit).
    if clamp >= c[C_CLAMP_EFF]:
        c[C_CLAMP_EFF] = clamp
    else:
        c[C_CLAMP_EFF] = max(clamp, c[C_CLAMP_EFF] - cp[CP_SLEW_DOWN] * dt)
    clamp_eff = c[C_CLAMP_EFF]

    # Set-points expire: without a fresh command the target ramps down.
    if fresh > 0.5:
        c[C_SP_AGE] = 0.0
    else:
        c[C_SP_AGE] += 1.0
    prev = c[C_TARGET]
    expired = c[C_SP_AGE] > cp[CP_SP_EXPIRE]
    tgt = max(0.0, prev - cp[CP_EXPIRE_RATE] * dt) if expired else target
    if c[C_GUARD] > 0.5:
        tgt = min(tgt, c[C_GUARD_HOLD])  # hold the progression while the patient guards
    # Slew the set-point: never faster than the rate-of-rise limit up, the release rate down.
    tgt = min(max(tgt, prev - cp[CP_SLEW_DOWN] * dt), prev + cp[CP_RATE_MAX] * dt)
    tgt = max(min(tgt, clamp_eff), 0.0)
    c[C_PREV_TARGET] = prev
    c[C_TARGET] = tgt

    # Contact: latched at the contact force, lost again only well below it.
    if fm >= cp[CP_CONTACT_N]:
        c[C_CONTACT] = 1.0
    elif fm < 0.25 * cp[CP_CONTACT_N]:
        c[C_CONTACT] = 0.0

    c[C_EST_N] += 1.0
    _estimate_stiffness(c, cp)
    k = c[C_KEST]
    _guarding(c, cp, dt, tgt)

    err = tgt - fm
    kp = cp[CP_WC] / k
    v_ff = (tgt - prev) / dt / k
    engage = 2.0 * cp[CP_CONTACT_N]
    if (c[C_CONTACT] < 0.5 or fm < engage) and tgt > engage:
        # Slack, and the first newtons after contact while the estimate forms: at the
        # approach speed, which bounds the overshoot on the stiffest plant.
        v = cp[CP_V_APPROACH]
        c[C_INTEG] = 0.0
    else:
        v_unsat = v_ff + kp * err + c[C_INTEG]
        # Anti-windup by conditional integration: do not integrate further into saturation.
        saturated_up = v_unsat >= cp[CP_VMAX] and err > 0.0
        saturated_dn = v_unsat <= -cp[CP_VMAX] and err < 0.0
        if not (saturated_up or saturated_dn):
            c[C_INTEG] += kp * cp[CP_WI] * err * dt
        v = v_ff + kp * err + c[C_INTEG]
        if c[C_GUARD] > 0.5 and err < 0.0:
            # Back off: pay out towards the set-point faster than the tracking loop would.
            v = min(v, cp[CP_BACKOFF] * err / k)
            c[C_INTEG] = min(c[C_INTEG], 0.0)

    # Last layer before the actuator: the clamp and the rate-of-rise limit.
    c[C_CLAMP_ACTIVE] = 0.0
    if fm >= clamp_eff:
        v_clamp = kp * (clamp_eff - fm)
        if v > v_clamp:
            v = v_clamp
            c[C_CLAMP_ACTIVE] = 1.0
            c[C_INTEG] = min(c[C_INTEG], 0.0)
    v_rate = 1.25 * cp[CP_RATE_MAX] / k
    if v > v_rate and c[C_CONTACT] > 0.5:
        v = v_rate
    if c[C_FRATE] > 1.5 * cp[CP_RATE_MAX] and v > 0.0 and fm > 2.0 * cp[CP_CONTACT_N]:
        # Force already rising faster than the limit (the patient guarding, or the estimate
        # wrong): never pull on top of it.
        v = 0.0
    v = min(max(v, -cp[CP_VMAX]), cp[CP_VMAX])
    c[C_CMD] = v
    return float(v)


def new_episodes(c: F64, seen: int) -> list[tuple[float, float, float, float]]:
    """Guarding episodes completed since `seen` (oldest first): (start s, duration s, peak
    excess N, cable paid out mm). At most the last EP_SLOTS are kept between two calls."""
    n = int(c[C_GUARD_N])
    out: list[tuple[float, float, float, float]] = []
    for i in range(max(seen, n - EP_SLOTS), n):
        slot = C_EP0 + EP_WIDTH * (i % EP_SLOTS)
        out.append((float(c[slot]), float(c[slot + 1]), float(c[slot + 2]), float(c[slot + 3])))
    return out
