"""Physics of the simulated table, cable, harness and patient, as numba kernels.

State and parameters are flat float64 arrays indexed by the constants below: a layout that
numba compiles into a tight loop (the 30-minute session at 1 kHz must simulate in seconds).
The model, per control period dt:

- Winch motor: first-order velocity lag with velocity and acceleration limits. When the
  drive is disabled the reel freewheels: tension back-drives it and the cable pays out.
  A stalled motor ignores velocity commands (it cannot pay out) until it is disabled.
- Cable + harness: slack, then a linear series stiffness `k_ch` (N/mm).
- Table friction: the lower body segment must overcome friction `ff` before force reaches the
  spine; a split table makes that small (about half the segment weight on a fixed table).
- Spine: a viscoelastic Burgers-type element: instant elastic `k1` in series with a
  Kelvin-Voigt creep element (`k2`, `c2`), so distraction creeps under a hold and recovers on
  release.
- Muscle guarding: activation g in [0, 1] driven by a fast rise of spinal force at high
  load, rising with `tau_on`, relaxing slowly with `tau_off`; it stiffens the spine by
  (1 + G g), so a fast ramp yields less distraction than a slow or logarithmic one.
- Two load cells: gain error, offset, drift, noise (supplied by the caller), quantisation,
  and injectable faults (freeze, NaN, drift, spike).
- Pull-angle actuator with a rate limit; patient stop switch on two complementary channels
  (A normally closed: 1 = not pressed; B normally open: 0 = not pressed).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]

# ---- state layout -------------------------------------------------------------------------
S_XM = 0  # motor (reel) cable position, mm
S_VM = 1  # motor cable velocity, mm/s
S_D2 = 2  # creep element displacement, mm
S_G = 3  # guarding activation 0..1
S_T = 4  # true cable tension, N
S_FSP = 5  # spinal force, N
S_DIST = 6  # spinal distraction, mm
S_ANGLE = 7  # pull angle, deg
S_RATE = 8  # filtered rate of spinal force, N/s
S_JERK = 9  # patient movement displacement (muscle spasm), mm
S_ENABLED = 10  # 1 = drive enabled
S_LC_A = 11  # last raw load cell A, N
S_LC_B = 12  # last raw load cell B, N
S_SW_A = 13  # patient switch channel A (NC): 1 = not pressed
S_SW_B = 14  # patient switch channel B (NO): 0 = not pressed
S_T_S = 15  # time, s
S_DRIFT_A = 16  # accumulated drift of load cell A, N
S_DRIFT_B = 17
S_DIDX = 18  # write index of the transport-delay ring buffer
S_VCMD_D = 19  # the delayed command the drive is acting on now, mm/s
S_EFFORT = 20  # drive effort as cable tension, N (NaN: the drive reports none)
S_DBUF = 21  # first slot of the transport-delay ring buffer (DELAY_SLOTS slots)
DELAY_SLOTS = 128
N_STATE = S_DBUF + DELAY_SLOTS

# The physics integrates at this step at most, whatever the control rate: a real table is
# continuous, and a 100 Hz controller must meet the same plant as a 1 kHz one.
MAX_SUBSTEP_S = 0.001

# ---- parameter layout ---------------------------------------------------------------------
P_KCH = 0  # cable + harness stiffness, N/mm
P_SLACK = 1  # initial slack, mm
P_FF = 2  # table friction force, N
P_K1 = 3  # spine elastic stiffness, N/mm
P_K2 = 4  # creep element stiffness, N/mm
P_C2 = 5  # creep damping, N s/mm
P_GUARD_GAIN = 6  # stiffening at full guarding (G)
P_GUARD_TAU_ON = 7  # s
P_GUARD_TAU_OFF = 8  # s
P_GUARD_R0 = 9  # comfortable rate of rise, N/s
P_GUARD_RSCALE = 10  # N/s from no to full guarding drive
P_GUARD_FREF = 11  # force at which guarding drive is full, N
P_MOTOR_TAU = 12  # s
P_VMAX = 13  # mm/s
P_AMAX = 14  # mm/s^2
P_B_FREE = 15  # back-drive damping of a disabled reel, N/(mm/s)
P_GAIN_A = 16
P_GAIN_B = 17
P_OFF_A = 18  # N
P_OFF_B = 19
P_QUANT = 20  # load-cell resolution, N
P_ANGLE_RATE = 21  # deg/s
P_TRAVEL_MAX = 22  # mechanical end of travel, mm
P_NOISE_SD = 23  # load cell noise standard deviation, N (the caller draws the noise)
P_DELAY_S = 24  # transport delay between a command and the drive acting on it, s
P_EFFORT_GAIN = 25  # drive effort per newton of cable tension (0 = no effort reported)
N_PARAM = 26

# ---- fault layout (set by the fault schedule at block boundaries) --------------------------
# Load-cell fault modes.
LC_OK = 0
LC_FREEZE = 1
LC_NAN = 2
LC_DRIFT = 3
LC_SPIKE = 4
LC_STUCK_VALUE = 5

FLT_MOTOR_STALL = 0
FLT_LC_A_MODE = 1
FLT_LC_A_ARG = 2  # drift N/s, spike N, stuck value N
FLT_LC_B_MODE = 3
FLT_LC_B_ARG = 4
FLT_SWITCH_PRESSED = 5  # patient presses the switch
FLT_SWITCH_B_STUCK = 6  # channel B stuck closed (a wiring short)
FLT_SWITCH_UNPLUGGED = 7  # both channels open
FLT_ANGLE_STUCK = 8
FLT_JERK_MM = 9  # a pending patient movement, mm (consumed when applied)
N_FAULT = 10


@njit(cache=True)
def _tension(y: float, kch: float, k1e: float, ff: float) -> float:
    # Series cable/harness and spine with friction: below friction only the cable stretches.
    if y <= 0.0:
        return 0.0
    yf = ff / kch
    if y <= yf:
        return kch * y
    return ff + (y - yf) / (1.0 / kch + 1.0 / k1e)


@njit(cache=True)
def _quantise(x: float, q: float) -> float:
    return math.floor(x / q + 0.5) * q


@njit(cache=True)
def _load_cell(true_f: float, gain: float, off: float, drift: float, noise: float, q: float,
               mode: float, arg: float, last: float) -> float:
    m = int(mode)
    if m == LC_FREEZE:
        return last
    if m == LC_NAN:
        return math.nan
    if m == LC_STUCK_VALUE:
        return arg
    v = true_f * gain + off + drift + noise
    if m == LC_SPIKE:
        v += arg
    return _quantise(v, q)


@njit(cache=True)
def _mechanics(s: F64, p: F64, flt: F64, h: float, v_cmd: float) -> None:
    # Transport delay: the drive acts on the command issued `P_DELAY_S` ago (a ring buffer
    # at the substep resolution; commands older than the buffer are not kept).
    nd = min(int(p[P_DELAY_S] / h + 0.5), DELAY_SLOTS - 1)
    idx = int(s[S_DIDX])
    s[S_DBUF + idx] = v_cmd
    s[S_VCMD_D] = s[S_DBUF + (idx - nd) % DELAY_SLOTS]
    s[S_DIDX] = float((idx + 1) % DELAY_SLOTS)
    v_cmd = s[S_VCMD_D]
    dt = h
    # Motor / reel.
    if s[S_ENABLED] > 0.5:
        if flt[FLT_MOTOR_STALL] > 0.5:
            v = 0.0
        else:
            dv = (v_cmd - s[S_VM]) * dt / max(p[P_MOTOR_TAU], dt)
            amax = p[P_AMAX] * dt
            dv = min(max(dv, -amax), amax)
            v = min(max(s[S_VM] + dv, -p[P_VMAX]), p[P_VMAX])
    else:
        # Freewheeling reel: tension pays the cable out, never in.
        v = -s[S_T] / p[P_B_FREE]
        v = max(v, -4.0 * p[P_VMAX])
    s[S_VM] = v
    s[S_XM] = min(s[S_XM] + v * dt, p[P_TRAVEL_MAX])

    # A patient movement (spasm) pulls the cable suddenly, then settles.
    if flt[FLT_JERK_MM] != 0.0:
        s[S_JERK] += flt[FLT_JERK_MM]
        flt[FLT_JERK_MM] = 0.0
    s[S_JERK] *= math.exp(-dt / 0.8)

    # Tension and spinal load.
    g = s[S_G]
    k1e = p[P_K1] * (1.0 + p[P_GUARD_GAIN] * g)
    y = s[S_XM] - p[P_SLACK] - s[S_D2] + s[S_JERK]
    t_new = _tension(y, p[P_KCH], k1e, p[P_FF])
    fsp = max(0.0, t_new - p[P_FF])

    # Guarding: driven by a fast rise at high load, relaxing slowly.
    rate = (fsp - s[S_FSP]) / dt
    a = dt / (0.05 + dt)
    s[S_RATE] += a * (rate - s[S_RATE])
    drive = (s[S_RATE] - p[P_GUARD_R0]) / p[P_GUARD_RSCALE]
    drive = min(max(drive, 0.0), 1.0) * min(1.0, fsp / p[P_GUARD_FREF])
    tau = p[P_GUARD_TAU_ON] if drive > g else p[P_GUARD_TAU_OFF]
    s[S_G] = g + (drive - g) * dt / tau

    # Creep under load, recovery without.
    s[S_D2] += dt * (fsp / (1.0 + p[P_GUARD_GAIN] * g) - p[P_K2] * s[S_D2]) / p[P_C2]
    s[S_T] = t_new
    s[S_FSP] = fsp
    s[S_DIST] = fsp / k1e + s[S_D2]



@njit(cache=True)
def physics_step(s: F64, p: F64, flt: F64, dt: float, v_cmd: float, enable: float,
                 angle_target: float, noise_a: float, noise_b: float) -> None:
    """Advance the table and patient by one control period under a velocity command held for
    the period (zero-order hold), integrating in substeps of at most `MAX_SUBSTEP_S`."""
    s[S_ENABLED] = 1.0 if enable > 0.5 else 0.0
    n_sub = max(1, int(math.ceil(dt / MAX_SUBSTEP_S - 1e-9)))  # noqa: RUF046 (explicit for numba)
    h = dt / n_sub
    for _ in range(n_sub):
        _mechanics(s, p, flt, h, v_cmd)
    t_new = s[S_T]

    # Drive effort (motor torque scaled to cable tension): a channel diverse from the load
    # cells, with its own gain error and a 1 N resolution; faults of the cells never reach it.
    if p[P_EFFORT_GAIN] > 0.0:
        s[S_EFFORT] = _quantise(t_new * p[P_EFFORT_GAIN], 1.0)
    else:
        s[S_EFFORT] = math.nan

    # Angle actuator.
    if flt[FLT_ANGLE_STUCK] < 0.5:
        da = angle_target - s[S_ANGLE]
        step = p[P_ANGLE_RATE] * dt
        s[S_ANGLE] += min(max(da, -step), step)

    # Load cells.
    s[S_T_S] += dt
    if int(flt[FLT_LC_A_MODE]) == LC_DRIFT:
        s[S_DRIFT_A] += flt[FLT_LC_A_ARG] * dt
    if int(flt[FLT_LC_B_MODE]) == LC_DRIFT:
        s[S_DRIFT_B] += flt[FLT_LC_B_ARG] * dt
    s[S_LC_A] = _load_cell(t_new, p[P_GAIN_A], p[P_OFF_A], s[S_DRIFT_A], noise_a, p[P_QUANT],
                           flt[FLT_LC_A_MODE], flt[FLT_LC_A_ARG], s[S_LC_A])
    s[S_LC_B] = _load_cell(t_new, p[P_GAIN_B], p[P_OFF_B], s[S_DRIFT_B], noise_b, p[P_QUANT],
                           flt[FLT_LC_B_MODE], flt[FLT_LC_B_ARG], s[S_LC_B])

    # Patient switch (A normally closed, B normally open).
    pressed = flt[FLT_SWITCH_PRESSED] > 0.5
    if flt[FLT_SWITCH_UNPLUGGED] > 0.5:
        s[S_SW_A] = 0.0
        s[S_SW_B] = 0.0
    else:
        s[S_SW_A] = 0.0 if pressed else 1.0
        s[S_SW_B] = 1.0 if (pressed or flt[FLT_SWITCH_B_STUCK] > 0.5) else 0.0
