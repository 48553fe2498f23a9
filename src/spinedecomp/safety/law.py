"""The independent safety monitor and the controlled release, as a numba kernel.

It reads the raw sensor values itself (both load cells, cable position, angle, the two
patient-switch channels, the operator-stop channels), keeps its own state array, and owns the
actuator: once tripped, the controller's command is ignored and the release law below
commands the motor. The only thing it reads from the controller is the heartbeat counter,
which it compares, never writes: a hung controller is detected, not trusted.

Every check and its time filter (documented in docs/safety.md):
- patient switch: either channel indicates pressed -> trip now (no filter: the patient's
  stop must never be debounced away); channels disagreeing for >= `SW_DISAGREE_S` -> alarm.
- operator stop: either channel -> trip now.
- device absolute limit: either load cell above it -> trip now.
- over-force: measured above clamp + margin for >= `OVERFORCE_S`.
- rate of rise, judged by its hazard, actuator runaway: the force's slope (two cascaded
  `RATE_FILT_HZ` low-passes)
  rising faster than the limit *while the cable is being pulled in* for >= `RATE_S`; and,
  whatever the cause, faster than the catastrophic rate for >= `RATE_ABS_S`. Both only above
  the contact level (`RATE_MIN_F`): slack take-up is bounded by the approach speed. A rise the
  patient makes with the cable still (muscle guarding) is the controller's to back off from,
  and the over-force trip's if it is not.
- load-cell disagreement: |A - B| > max(abs, rel * mean) for >= `DISAGREE_S`.
- frozen sensor: while the harness is loaded, the cable has moved by `FROZEN_X` mm and the
  other channel has changed by several `FROZEN_DF` (so the force did change) while this
  channel has not changed by `FROZEN_DF` N. A constant value alone is not a fault: a
  noise-free cell at rest, or both cells during a hold the controller keeps constant while
  the spine creeps, are constant. Both cells stuck together is the diverse check's.
- invalid sample: NaN or outside the sensor's range for >= 2 consecutive samples.
- controller heartbeat unchanged for >= `HEARTBEAT_S`.
- communication lost (real devices): the driver's link flag down for >= `COMM_S`.
- cable travel beyond its limit: trip now.
- angle outside its absolute range, or far from its target for >= `ANGLE_S`.
- tracking: measured force above the set-point by max(abs, rel) for >= `TRACK_S` (a winch
  that no longer pays out). The set-point the monitor compares with falls no faster than
  `CLAMP_RAMP` N/s, and so does a lowered clamp: a clinician lowering force is a ramp the
  force can follow, never an alarm.
- load cells are tared: the offsets measured at set-up are subtracted from both channels.
- release stalled: during a release, force above the release ramp + tolerance for
  >= `STALL_S`, or still above the safe level `ZERO_S` after the ramp reached zero (a load
  cell that does not return to zero) -> motor disabled.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from spinedecomp.safety import codes

F64 = npt.NDArray[np.float64]

# ---- state ---------------------------------------------------------------------------------
Z_TRIPPED = 0  # first trip code (0 = not tripped)
Z_TRIP_T = 1  # time of the first trip, s
Z_REL_F0 = 2  # force when the release started, N
Z_REL_TARGET = 3  # current release ramp target, N
Z_MOTOR_OFF = 4  # 1 once the monitor has disabled the motor
Z_BELOW_SAFE_T = 5  # time force first fell to the safe level during the release (-1 = not yet)
Z_FILT = 6  # own low-pass of the force, N
Z_PREV_FILT = 7
Z_RATE = 8  # derivative of Z_FILT, N/s
Z_LAST_A = 9
Z_LAST_B = 10
Z_FROZEN_A = 11  # seconds channel A unchanged
Z_FROZEN_B = 12
Z_INVALID_A = 13  # consecutive invalid samples
Z_INVALID_B = 14
Z_T_OVER = 15  # seconds over-force condition has held
Z_T_RATE = 16
Z_T_DISAGREE = 17
Z_T_SWDIS = 18
Z_T_ANGLE = 19
Z_T_STALL = 20
Z_T_COMM = 21
Z_HB_LAST = 22
Z_T_HB = 23
Z_T_TRACK = 31
Z_BAD_A = 32  # 1 once channel A was judged frozen or invalid: no longer trusted
Z_BAD_B = 33
Z_MOTOR_OFF_T = 34  # time the motor was disabled
Z_T_ZERO = 35  # seconds the release ramp has been at zero with force still above safe
Z_XF = 36  # own low-pass of the cable position, mm
Z_VX = 37  # cable velocity from it, mm/s
Z_FRZ_XA = 38  # cable position when channel A last changed by FROZEN_DF, mm
Z_FRZ_FA = 39  # channel A's value then, N
Z_FRZ_XB = 40
Z_FRZ_FB = 41
Z_CLAMP_EFF = 42  # the clamp in force (a lowered clamp ramps down), N
Z_TRACK_REF = 43  # the set-point as the monitor follows it, N
Z_T_RATE_ABS = 44
Z_RF1 = 45  # force through the first of two cascaded rate filters, N
Z_RF2 = 46  # ... and the second; rate = w (RF1 - RF2) is the slope of RF2
Z_FRZ_OA = 47  # the other channel's value when A last changed, N
Z_FRZ_OB = 48
Z_CMD_ENV = 49  # envelope of the recent commanded velocity, mm/s
Z_NALARM = 24  # alarms recorded so far
Z_RAISED = 25  # bit-set of codes already raised (each code is raised once per session)
Z_MAX_F = 26  # highest force seen, N
Z_RELEASE_REQ = 27  # 1 = a normal release (end of session) was requested, no alarm
Z_T = 28  # monitor's time, s
Z_FIRST_CMD_T = 29  # time of the first release command, s
Z_DONE = 30  # 1 when the release is complete and the motor is off
Z_REL_CMD = 50  # last payout speed the release law commanded, mm/s (negative = paying out)
Z_T_JAM = 51  # seconds the cable has not followed a commanded payout
Z_EFF_F = 52  # low-passed drive effort, N
Z_T_EFF = 53  # seconds the cells have read well below the drive effort
Z_DROP_F = 54  # reference force of the force-drop check, N
Z_DROP_X = 55  # cable position at that reference, mm
Z_DROP_T = 56  # time of that reference, s
Z_IMPLAUSIBLE = 57  # 1 once both cells were found under-reading (force plausibility)
Z_EFF_RATIO = 58  # drive effort / cell force, learnt while the cells agree
Z_EFF_LEARN = 59  # seconds of loaded, agreeing samples the ratio was learnt over
Z_X_CONTACT = 60  # cable position when force first exceeded the safe level, mm (NaN = not yet)
Z_KMON = 61  # the monitor's own (conservative) cable-to-force stiffness, N/mm (NaN = not yet)
Z_KM_X0 = 62  # start of its current window: cable position, mm ...
Z_KM_F0 = 63  # ... and force, N
N_ZSTATE = 64

# ---- parameters ----------------------------------------------------------------------------
ZP_ABS_LIMIT = 0  # device absolute force limit, N
ZP_OVER_MARGIN_N = 1
ZP_OVER_MARGIN_REL = 2
ZP_RATE_LIMIT = 3  # N/s
ZP_DISAGREE_N = 4
ZP_DISAGREE_REL = 5
ZP_SENSOR_MIN = 6  # N
ZP_SENSOR_MAX = 7  # N
ZP_TRAVEL_MAX = 8  # mm
ZP_ANGLE_MIN = 9  # deg
ZP_ANGLE_MAX = 10
ZP_ANGLE_TOL = 11  # deg from target
ZP_RELEASE_RATE = 12  # N/s
ZP_SAFE_N = 13  # safe rest force, N
ZP_STALL_TOL = 14  # N above the release ramp
ZP_MOTOR_OFF_DELAY = 15  # s after reaching safe force
ZP_KR = 16  # release law gain, (mm/s)/N
ZP_VMAX = 17  # mm/s
ZP_OVERFORCE_S = 18
ZP_RATE_S = 19
ZP_DISAGREE_S = 20
ZP_FROZEN_S = 21
ZP_HEARTBEAT_S = 22
ZP_COMM_S = 23
ZP_ANGLE_S = 24
ZP_STALL_S = 25
ZP_SW_DISAGREE_S = 26
ZP_TRACK_N = 27  # force above the set-point by this much ...
ZP_TRACK_REL = 28
ZP_TRACK_S = 29  # ... for this long is a tracking fault
ZP_ZERO_S = 30  # after the ramp reached zero, force must be safe within this long
ZP_TARE_A = 31  # load-cell offsets measured at set-up, N
ZP_TARE_B = 32
ZP_RATE_ABS = 33  # catastrophic rate of rise whatever the cause, N/s
ZP_RATE_ABS_S = 34
ZP_RATE_MIN_F = 35  # rate checks apply above this force, N
ZP_PULL_V = 36  # cable speed that counts as pulling in, mm/s
ZP_FROZEN_X = 37  # cable motion that must change a loaded cell's reading, mm
ZP_FROZEN_DF = 38  # change that proves a cell alive, N
ZP_FROZEN_MIN_F = 39  # the frozen check runs above this force, N
ZP_CLAMP_RAMP = 40  # fall rate of a lowered clamp and of the tracking reference, N/s
ZP_RATE_FILT_HZ = 41  # corner of the two cascaded low-passes the rate is taken from
ZP_EFFORT_N = 42  # cells below the drive effort by more than this (or ZP_EFFORT_REL) ...
ZP_EFFORT_REL = 43
ZP_EFFORT_S = 44  # ... for this long: the cells under-read the cable (common-mode failure)
ZP_DROP_N = 45  # force fall (or ZP_DROP_REL of the force) ...
ZP_DROP_REL = 46
ZP_DROP_S = 47  # ... within this window ...
ZP_DROP_X = 48  # ... while the cable paid out less than this, mm: cells or harness failed
ZP_FROZEN_KMAX = 49  # stiffest plant the envelope allows at the cell, N/mm
ZP_EFF_LEARN_S = 50  # loaded time over which the effort is calibrated against the cells, s
ZP_EFF_CAL_N = 51  # band around the calibrated effort, N ...
ZP_EFF_CAL_REL = 52  # ... or this fraction of it, whichever is larger
ZP_REL_X_TOL = 53  # a release is paid out within this of the contact position, mm
ZP_REL_VMIN = 54  # slowest pay-out while the cable is not yet back there, mm/s
ZP_FREEWHEEL_MAX = 55  # longest wait for a freewheeling reel to bring force down, s
ZP_PULL_CAP_RATE = 56  # under load, no pull faster than this force rate on the stiffness, N/s
ZP_SLACK_V_CAP = 57  # unloaded, no pull faster than this (twice the approach speed), mm/s
N_ZPARAM = 58

MAX_ALARMS = 64
# alarm record columns
A_CODE = 0
A_T = 1
A_VALUE = 2
A_FORCE = 3


@njit(cache=True)
def _raise(z: F64, alarms: npt.NDArray[np.float64], code: int, value: float, force: float) -> None:
    bit = 1 << code
    raised = int(z[Z_RAISED])
    if raised & bit:
        return
    z[Z_RAISED] = float(raised | bit)
    n = int(z[Z_NALARM])
    if n < alarms.shape[0]:
        alarms[n, A_CODE] = code
        alarms[n, A_T] = z[Z_T]
        alarms[n, A_VALUE] = value
        alarms[n, A_FORCE] = force
        z[Z_NALARM] = n + 1


@njit(cache=True)
def _trip(z: F64, alarms: npt.NDArray[np.float64], code: int, value: float, force: float,
          clamp: float) -> None:
    if code != codes.END_OF_SESSION:
        _raise(z, alarms, code, value, force)
    if z[Z_TRIPPED] == 0.0:
        z[Z_TRIPPED] = code
        z[Z_TRIP_T] = z[Z_T]
        # The ramp starts no higher than the clamp: a reading above it (a spike) is not a
        # force to release slowly from.
        start = min(force, clamp)
        z[Z_REL_F0] = start
        z[Z_REL_TARGET] = start


@njit(cache=True)
def _explained(zp: F64, dx: float) -> float:
    # The largest force change cable motion `dx` can make on the stiffest plant of the
    # envelope. A bigger change of the other cell is a step of that cell (an offset, a spike),
    # not evidence that this one is frozen.
    return float(1.5 * zp[ZP_FROZEN_KMAX] * abs(dx) + 4.0 * zp[ZP_FROZEN_DF])


@njit(cache=True)
def _frozen_ref(z: F64, own: float, other: float, x: float, i_f: int, i_x: int,
                i_o: int) -> None:
    # A new reference for one cell: its reading, the cable position and the other cell's.
    z[i_f] = own
    z[i_x] = x
    z[i_o] = other


@njit(cache=True)
def _frozen_check(z: F64, zp: F64, alarms: F64, own: float, other: float, x: float, f: float,
                  clamp: float, i_f: int, i_x: int, i_o: int, i_bad: int) -> None:
    # One cell is frozen when, since it last changed by more than the noise band, the cable
    # moved and the other cell changed clearly (by no more than that motion explains) while
    # this one did not.
    if abs(own - z[i_f]) > zp[ZP_FROZEN_DF]:
        _frozen_ref(z, own, other, x, i_f, i_x, i_o)
    elif (abs(x - z[i_x]) > zp[ZP_FROZEN_X]
          and abs(other - z[i_o]) > 4.0 * zp[ZP_FROZEN_DF] + zp[ZP_DISAGREE_N] * 0.25
          and z[i_bad] == 0.0 and abs(other - z[i_o]) <= _explained(zp, x - z[i_x])):
        z[i_bad] = 1.0
        _trip(z, alarms, codes.SENSOR_FROZEN, own, f, clamp)


@njit(cache=True)
def _pull_cap(z: F64, zp: F64, x: float, cmd: float) -> float:
    # Under load, a pull may raise force at most `ZP_PULL_CAP_RATE` on the monitor's own
    # stiffness estimate (twice what the controller itself allows). It never binds a healthy
    # controller, but a runaway one cannot drive a stiff plant faster than the rate-of-rise
    # and over-force trips can stop within the drive's lag. The estimate is the monitor's
    # own: force change over each 0.5 mm of cable under load, the largest recent one (a
    # window's value decays by 10 % per window), the envelope's stiffest plant until the
    # first window closes.
    loaded = z[Z_FILT] > zp[ZP_SAFE_N]
    if not loaded:
        # Taking up slack: no faster than twice the approach speed the envelope allows, so a
        # runaway cannot meet the harness at full speed (a drive's deceleration limit would
        # carry the cable on long after the trip).
        z[Z_KM_X0] = math.nan
        return float(min(cmd, zp[ZP_SLACK_V_CAP]))
    if math.isnan(z[Z_KM_X0]):
        z[Z_KM_X0] = x
        z[Z_KM_F0] = z[Z_FILT]
    dxw = x - z[Z_KM_X0]
    if abs(dxw) >= 0.5:
        kw = (z[Z_FILT] - z[Z_KM_F0]) / dxw
        if kw > 0.0:
            z[Z_KMON] = kw if math.isnan(z[Z_KMON]) else max(kw, 0.9 * z[Z_KMON])
        z[Z_KM_X0] = x
        z[Z_KM_F0] = z[Z_FILT]
    k = zp[ZP_FROZEN_KMAX] if math.isnan(z[Z_KMON]) else z[Z_KMON]
    cap = max(zp[ZP_PULL_CAP_RATE] / max(k, 0.1), 1.0)
    return float(min(cmd, cap))


@njit(cache=True)
def _timer(z: F64, idx: int, cond: bool, dt: float) -> float:
    if cond:
        z[idx] += dt
    else:
        z[idx] = 0.0
    return float(z[idx])


@njit(cache=True)
def safety_step(z: F64, zp: F64, alarms: F64, dt: float, fa: float, fb: float, x: float,
                angle: float, angle_target: float, sw_a: float, sw_b: float, op_stop: float,
                heartbeat: float, comm_ok: float, clamp: float, ctrl_cmd: float,
                target: float, ext_code: float, effort: float) -> float:
    """Check one period's raw sensors. Returns the velocity command the actuator must get:
    the controller's `ctrl_cmd` while all is well, the release law's once tripped."""
    z[Z_T] += dt
    in_a = not math.isnan(fa) and zp[ZP_SENSOR_MIN] <= fa <= zp[ZP_SENSOR_MAX]
    in_b = not math.isnan(fb) and zp[ZP_SENSOR_MIN] <= fb <= zp[ZP_SENSOR_MAX]
    raw_a, raw_b = fa, fb
    fa = fa - zp[ZP_TARE_A]
    fb = fb - zp[ZP_TARE_B]
    # A lowered clamp, and the set-point the monitor tracks, fall at a bounded rate.
    if clamp >= z[Z_CLAMP_EFF]:
        z[Z_CLAMP_EFF] = clamp
    else:
        z[Z_CLAMP_EFF] = max(clamp, z[Z_CLAMP_EFF] - zp[ZP_CLAMP_RAMP] * dt)
    clamp = z[Z_CLAMP_EFF]
    if target >= z[Z_TRACK_REF]:
        z[Z_TRACK_REF] = target
    else:
        z[Z_TRACK_REF] = max(target, z[Z_TRACK_REF] - zp[ZP_CLAMP_RAMP] * dt)
    target = z[Z_TRACK_REF]
    va = in_a and z[Z_BAD_A] == 0.0
    vb = in_b and z[Z_BAD_B] == 0.0
    # The monitor's force: the higher trusted channel, so one failed-low cell cannot hide load.
    # Once releasing, the higher of the two in-range cells whatever the checks concluded (a
    # cell judged frozen may be the good one of two that disagree: releasing on the lower
    # could leave load on the patient; a frozen-high one only makes the release cut the
    # drive), unless both were found under-reading, when the effort is what is left.
    if z[Z_TRIPPED] != 0.0 and z[Z_IMPLAUSIBLE] == 0.0 and (in_a or in_b):
        va, vb = in_a, in_b
    if va and vb:
        f = max(fa, fb)
    elif va:
        f = fa
    elif vb:
        f = fb
    elif math.isfinite(effort):
        # No cell is trusted: the drive's effort is the only force left to release by.
        f = effort
    else:
        f = z[Z_FILT]
    z[Z_MAX_F] = max(z[Z_MAX_F], f)
    a = 1.0 - math.exp(-2.0 * math.pi * 20.0 * dt)
    z[Z_PREV_FILT] = z[Z_FILT]
    z[Z_FILT] += a * (f - z[Z_FILT])
    # Rate of rise as the slope of a twice low-passed force: w (RF1 - RF2) needs no division
    # by dt, so sensor noise is not amplified at any control rate.
    wr = 2.0 * math.pi * zp[ZP_RATE_FILT_HZ]
    ar = 1.0 - math.exp(-wr * dt)
    z[Z_RF1] += ar * (f - z[Z_RF1])
    z[Z_RF2] += ar * (z[Z_RF1] - z[Z_RF2])
    z[Z_RATE] = wr * (z[Z_RF1] - z[Z_RF2])
    if math.isnan(z[Z_XF]):
        z[Z_XF] = x
    x_prev = z[Z_XF]
    z[Z_XF] += a * (x - z[Z_XF])
    z[Z_VX] = (z[Z_XF] - x_prev) / dt

    # --- invalid samples (NaN or out of range), 2 consecutive ---
    z[Z_INVALID_A] = 0.0 if in_a else z[Z_INVALID_A] + 1.0
    z[Z_INVALID_B] = 0.0 if in_b else z[Z_INVALID_B] + 1.0
    if z[Z_INVALID_A] >= 2.0:
        z[Z_BAD_A] = 1.0
        _trip(z, alarms, codes.SENSOR_INVALID, raw_a, f, clamp)
    if z[Z_INVALID_B] >= 2.0:
        z[Z_BAD_B] = 1.0
        _trip(z, alarms, codes.SENSOR_INVALID, raw_b, f, clamp)

    # --- patient switch: either channel trips at once ---
    pressed_a = sw_a < 0.5
    pressed_b = sw_b > 0.5
    if pressed_a or pressed_b:
        _trip(z, alarms, codes.PATIENT_SWITCH, sw_a + 2.0 * sw_b, f, clamp)
    if _timer(z, Z_T_SWDIS, pressed_a != pressed_b, dt) >= zp[ZP_SW_DISAGREE_S]:
        _trip(z, alarms, codes.SWITCH_DISAGREE, sw_a + 2.0 * sw_b, f, clamp)
    if op_stop > 0.5:
        _trip(z, alarms, codes.OPERATOR_STOP, op_stop, f, clamp)

    # --- force limits ---
    fmax_raw = -1.0
    if va:
        fmax_raw = fa
    if vb and fb > fmax_raw:
        fmax_raw = fb
    if fmax_raw > zp[ZP_ABS_LIMIT]:
        _trip(z, alarms, codes.DEVICE_LIMIT, fmax_raw, f, clamp)
    over = clamp + max(zp[ZP_OVER_MARGIN_N], zp[ZP_OVER_MARGIN_REL] * clamp)
    if _timer(z, Z_T_OVER, f > over, dt) >= zp[ZP_OVERFORCE_S]:
        _trip(z, alarms, codes.OVERFORCE, f, f, clamp)
    loaded = f > zp[ZP_RATE_MIN_F]
    # The actuator drives the rise only while it is both told to pull and pulling: once the
    # controller backs off from a patient's guarding, the rise is not the actuator's.
    # A drive pulling in harder than it was told (beyond the command's recent envelope, which
    # covers the drive's lag) is a runaway whatever the controller asked.
    z[Z_CMD_ENV] = max(ctrl_cmd, z[Z_CMD_ENV] - z[Z_CMD_ENV] * dt / 0.2)
    pulling = z[Z_VX] > zp[ZP_PULL_V] and (ctrl_cmd > zp[ZP_PULL_V] or
                                           z[Z_VX] > max(z[Z_CMD_ENV], 0.0) + 2.0)
    if _timer(z, Z_T_RATE, loaded and pulling and z[Z_RATE] > zp[ZP_RATE_LIMIT], dt) >= zp[ZP_RATE_S]:
        _trip(z, alarms, codes.RATE_OF_RISE, z[Z_RATE], f, clamp)
    if _timer(z, Z_T_RATE_ABS, loaded and z[Z_RATE] > zp[ZP_RATE_ABS], dt) >= zp[ZP_RATE_ABS_S]:
        _trip(z, alarms, codes.RATE_OF_RISE, z[Z_RATE], f, clamp)

    # --- sensor plausibility ---
    if va and vb:
        diff = abs(fa - fb)
        lim = max(zp[ZP_DISAGREE_N], zp[ZP_DISAGREE_REL] * 0.5 * (fa + fb))
        if _timer(z, Z_T_DISAGREE, diff > lim, dt) >= zp[ZP_DISAGREE_S]:
            _trip(z, alarms, codes.LOADCELL_DISAGREE, diff, f, clamp)
    # Frozen: a loaded cell that does not follow cable motion. While the link is down a
    # driver repeats its last readings: that is the link alarm's, so only fresh samples count.
    link_up = comm_ok > 0.5
    # References taken while a cell read NaN are no references: take fresh ones.
    refs_ok = math.isfinite(z[Z_FRZ_FA]) and math.isfinite(z[Z_FRZ_FB]) and \
        math.isfinite(z[Z_FRZ_OA]) and math.isfinite(z[Z_FRZ_OB])
    if f > zp[ZP_FROZEN_MIN_F] and link_up and in_a and in_b and refs_ok:
        _frozen_check(z, zp, alarms, raw_a, raw_b, x, f, clamp, Z_FRZ_FA, Z_FRZ_XA, Z_FRZ_OA,
                      Z_BAD_A)
        _frozen_check(z, zp, alarms, raw_b, raw_a, x, f, clamp, Z_FRZ_FB, Z_FRZ_XB, Z_FRZ_OB,
                      Z_BAD_B)
    else:
        _frozen_ref(z, raw_a, raw_b, x, Z_FRZ_FA, Z_FRZ_XA, Z_FRZ_OA)
        _frozen_ref(z, raw_b, raw_a, x, Z_FRZ_FB, Z_FRZ_XB, Z_FRZ_OB)
    z[Z_LAST_A] = raw_a
    z[Z_LAST_B] = raw_b

    # --- controller heartbeat and device link ---
    if _timer(z, Z_T_HB, heartbeat == z[Z_HB_LAST], dt) >= zp[ZP_HEARTBEAT_S]:
        _trip(z, alarms, codes.HEARTBEAT_LOST, heartbeat, f, clamp)
    z[Z_HB_LAST] = heartbeat
    if _timer(z, Z_T_COMM, comm_ok < 0.5, dt) >= zp[ZP_COMM_S]:
        _trip(z, alarms, codes.COMM_LOST, comm_ok, f, clamp)

    # --- travel and angle ---
    if x > zp[ZP_TRAVEL_MAX]:
        _trip(z, alarms, codes.TRAVEL_LIMIT, x, f, clamp)
    out_of_range = math.isnan(angle) or angle < zp[ZP_ANGLE_MIN] or angle > zp[ZP_ANGLE_MAX]
    off_target = abs(angle - angle_target) > zp[ZP_ANGLE_TOL]
    if out_of_range or _timer(z, Z_T_ANGLE, off_target, dt) >= zp[ZP_ANGLE_S]:
        _trip(z, alarms, codes.ANGLE_FAULT, angle, f, clamp)

    if math.isnan(z[Z_X_CONTACT]) and z[Z_FILT] > zp[ZP_SAFE_N] and z[Z_TRIPPED] == 0.0:
        z[Z_X_CONTACT] = x

    # --- force plausibility, diverse from the cells ---
    # (1) The drive's effort, where the table reports it: the cells reading well below the
    # tension the motor is working against is a common-mode cell failure (both drifting or
    # offset low), which the cells' own agreement cannot show. Only this direction trips: the
    # cells reading high makes the controller pull less.
    if math.isfinite(effort) and z[Z_TRIPPED] == 0.0:
        if math.isnan(z[Z_EFF_F]):
            z[Z_EFF_F] = effort
        z[Z_EFF_F] += a * (effort - z[Z_EFF_F])
        # Calibrate the effort against the cells while they agree, over the first
        # `ZP_EFF_LEARN_S` seconds under load, then freeze it: a drift that starts later cannot
        # be learnt away. Until then only the wide band (channel gain error and friction).
        loaded = z[Z_FILT] > zp[ZP_DROP_N]
        agree = va and vb and abs(fa - fb) < 0.5 * zp[ZP_DISAGREE_N]
        if loaded and agree and z[Z_EFF_LEARN] < zp[ZP_EFF_LEARN_S]:
            z[Z_EFF_LEARN] += dt
            w = min(1.0, dt / min(2.0, z[Z_EFF_LEARN]))
            z[Z_EFF_RATIO] += w * (z[Z_EFF_F] / z[Z_FILT] - z[Z_EFF_RATIO])
        wide = z[Z_EFF_F] - z[Z_FILT] > max(zp[ZP_EFFORT_N], zp[ZP_EFFORT_REL] * z[Z_EFF_F])
        low = wide
        if z[Z_EFF_LEARN] >= zp[ZP_EFF_LEARN_S] and z[Z_EFF_RATIO] > 0.0:
            expected = z[Z_EFF_F] / z[Z_EFF_RATIO]
            low = wide or expected - z[Z_FILT] > max(zp[ZP_EFF_CAL_N],
                                                     zp[ZP_EFF_CAL_REL] * expected)
        if _timer(z, Z_T_EFF, low and link_up, dt) >= zp[ZP_EFFORT_S]:
            # Both cells under-read: neither is trusted for the release (it runs on the
            # effort); the ramp starts from the effort, the better estimate of the load.
            z[Z_BAD_A] = 1.0
            z[Z_BAD_B] = 1.0
            z[Z_IMPLAUSIBLE] = 1.0
            _trip(z, alarms, codes.FORCE_IMPLAUSIBLE, z[Z_EFF_F], z[Z_EFF_F], clamp)
    # (2) Cable position: a loaded harness cannot lose a quarter of its force within half a
    # second unless the cable paid out. A fall without payout is the cells stepping (a
    # common-mode offset) or the harness coming off, and either way the loop would pull hard.
    if (z[Z_FILT] > z[Z_DROP_F] or x < z[Z_DROP_X] - zp[ZP_DROP_X]
            or z[Z_T] - z[Z_DROP_T] > zp[ZP_DROP_S] or not link_up or z[Z_TRIPPED] != 0.0):
        z[Z_DROP_F] = z[Z_FILT]
        z[Z_DROP_X] = x
        z[Z_DROP_T] = z[Z_T]
    elif z[Z_DROP_F] - z[Z_FILT] > max(zp[ZP_DROP_N], zp[ZP_DROP_REL] * z[Z_DROP_F]):
        # The cells are not trusted for the release either: it runs on the effort where
        # there is one; without, the held force makes it cut the drive (the reel freewheels).
        z[Z_BAD_A] = 1.0
        z[Z_BAD_B] = 1.0
        z[Z_IMPLAUSIBLE] = 1.0
        _trip(z, alarms, codes.FORCE_IMPLAUSIBLE, z[Z_FILT], z[Z_DROP_F], clamp)

    # --- force not following the set-point (e.g. a stalled winch that cannot pay out) ---
    track = f > target + max(zp[ZP_TRACK_N], zp[ZP_TRACK_REL] * target)
    if _timer(z, Z_T_TRACK, track and z[Z_TRIPPED] == 0.0, dt) >= zp[ZP_TRACK_S]:
        _trip(z, alarms, codes.TRACKING, f, f, clamp)

    if ext_code > 0.5:
        # A fault found outside the monitor (session watchdogs, storage): release all the same.
        _trip(z, alarms, int(ext_code), ext_code, f, clamp)

    if z[Z_RELEASE_REQ] > 0.5:
        _trip(z, alarms, codes.END_OF_SESSION, 0.0, f, clamp)

    if z[Z_TRIPPED] == 0.0:
        return _pull_cap(z, zp, x, ctrl_cmd)
    return release_step(z, zp, alarms, dt, f, x)


@njit(cache=True)
def release_step(z: F64, zp: F64, alarms: F64, dt: float, f: float, x: float) -> float:
    """The controlled release: ramp force down at the set rate, never pulling, and pay the
    cable out to where the harness first took load; disable the motor if force does not
    follow or the cable does not pay out, and once force has stayed at or below the safe
    level, with the cable paid out, for the hold-off time."""
    if z[Z_FIRST_CMD_T] < 0.0:
        z[Z_FIRST_CMD_T] = z[Z_T]
    z[Z_REL_TARGET] = max(0.0, z[Z_REL_TARGET] - zp[ZP_RELEASE_RATE] * dt)
    # Decisions on the 20 Hz low-passed force: one noisy sample never resets a timer.
    fs = z[Z_FILT]
    safe_n = zp[ZP_SAFE_N]
    # Diverse from the cells: the cable back where the harness first took the safe level's
    # load means the patient is unloaded whatever the cells read (a cell failed low cannot end
    # a release with load still on the patient).
    paid_out = math.isnan(z[Z_X_CONTACT]) or x <= z[Z_X_CONTACT] + zp[ZP_REL_X_TOL]
    if fs <= safe_n and paid_out:
        if z[Z_BELOW_SAFE_T] < 0.0:
            z[Z_BELOW_SAFE_T] = z[Z_T]
    elif (fs > safe_n + zp[ZP_FROZEN_DF] or not paid_out) and z[Z_DONE] == 0.0:
        # Force rose above the safe level again (the patient moved, a spike): the hold-off
        # starts over; the release is only complete once force has *stayed* safe. The band
        # above the safe level (the cells' noise) keeps noise at the level from restarting it.
        z[Z_BELOW_SAFE_T] = -1.0
    stalled = fs > z[Z_REL_TARGET] + zp[ZP_STALL_TOL]
    not_zeroing = z[Z_REL_TARGET] == 0.0 and z[Z_BELOW_SAFE_T] < 0.0
    late = _timer(z, Z_T_ZERO, not_zeroing, dt) >= zp[ZP_ZERO_S]
    # A jammed winch: a clear payout commanded and the cable moving at less than a fifth of
    # it, with force or cable still to release. Judged by motion, so a jam near the end of
    # the ramp (force within the stall tolerance of it) is found as fast as one at its top.
    jammed = (z[Z_REL_CMD] < -2.0 and z[Z_VX] > 0.2 * z[Z_REL_CMD]
              and z[Z_BELOW_SAFE_T] < 0.0 and z[Z_MOTOR_OFF] == 0.0)
    jam = _timer(z, Z_T_JAM, jammed, dt) >= zp[ZP_STALL_S]
    if (_timer(z, Z_T_STALL, stalled, dt) >= zp[ZP_STALL_S] or late or jam) \
            and z[Z_MOTOR_OFF] == 0.0:
        # The winch is not letting go (or the cells cannot show that it is): cut the drive,
        # the reel freewheels and the cable pays out under its own tension.
        _raise(z, alarms, codes.RELEASE_STALLED, fs, fs)
        z[Z_MOTOR_OFF] = 1.0
        z[Z_MOTOR_OFF_T] = z[Z_T]
    if z[Z_BELOW_SAFE_T] >= 0.0 and z[Z_T] - z[Z_BELOW_SAFE_T] >= zp[ZP_MOTOR_OFF_DELAY]:
        if z[Z_MOTOR_OFF] == 0.0:
            z[Z_MOTOR_OFF] = 1.0
            z[Z_MOTOR_OFF_T] = z[Z_T]
        z[Z_DONE] = 1.0
    if z[Z_MOTOR_OFF] > 0.5:
        # A release that ended by cutting the drive: the freewheeling reel pays out under the
        # cable's tension, which takes a while on a soft patient. It is complete when force
        # has stayed safe (above); when no cell is trusted, once the cable is back at the
        # contact position and the hold-off has passed; and in any case after
        # `ZP_FREEWHEEL_MAX` (a cell failed high must not hold the session open).
        off_for = z[Z_T] - z[Z_MOTOR_OFF_T]
        untrusted = z[Z_BAD_A] > 0.5 and z[Z_BAD_B] > 0.5
        if (untrusted and paid_out and off_for >= zp[ZP_MOTOR_OFF_DELAY]) \
                or off_for >= zp[ZP_FREEWHEEL_MAX]:
            z[Z_DONE] = 1.0
        z[Z_REL_CMD] = 0.0
        return 0.0
    v = min(0.0, max(float(zp[ZP_KR] * (z[Z_REL_TARGET] - f)), -float(zp[ZP_VMAX])))
    if not paid_out:
        v = min(v, -zp[ZP_REL_VMIN])
    z[Z_REL_CMD] = v
    return v


def new_state() -> F64:
    """A fresh monitor state."""
    z = np.zeros(N_ZSTATE, dtype=np.float64)
    z[Z_BELOW_SAFE_T] = -1.0
    z[Z_FIRST_CMD_T] = -1.0
    z[Z_LAST_A] = math.nan
    z[Z_LAST_B] = math.nan
    z[Z_HB_LAST] = -1.0
    z[Z_XF] = math.nan  # set from the first sample
    z[Z_EFF_F] = math.nan
    z[Z_X_CONTACT] = math.nan
    z[Z_KMON] = math.nan
    z[Z_KM_X0] = math.nan
    z[Z_KM_F0] = math.nan
    return z
