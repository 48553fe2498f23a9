"""The fused control loop for the simulated table: controller, safety monitor and physics for
a whole block of periods in one compiled loop.

It calls the very same kernels that the step-by-step loop uses for a real table
(`controller_step`, `safety_step`), so there is one control law and one safety monitor. The
order inside a period is that of a real table: read the sensors, compute the controller's
command, let the monitor check the raw sensors and decide what reaches the actuator, then
the actuator acts for one period.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from spinedecomp.control import law as cl
from spinedecomp.device import physics as ph
from spinedecomp.safety import law as zl
from spinedecomp.session.telemetry import N_COL

F64 = npt.NDArray[np.float64]

# Engine-level fault flags (inputs to the loop, not physics).
IN_CTRL_HUNG = 0
IN_CTRL_RUNAWAY = 1
IN_OP_STOP = 2
IN_COMM_OK = 3
IN_STATE = 4  # SessionState code written into telemetry
IN_TRIP_CODE = 5  # a fault found by the engine: the monitor trips with this alarm code
N_IN = 6


@njit(cache=True)
def run_block(n: int, t0: float, dt: float, targets: F64, angles: F64, phases: F64,
              cycles: F64, noise: F64, clamp: float, s: F64, p: F64, flt: F64, c: F64, cp: F64,
              z: F64, zp: F64, alarms: F64, inp: F64, out: F64) -> int:
    """Run `n` periods; returns the index of the first period in which the monitor tripped,
    or -1. Rows of telemetry go to `out` (n, N_COL)."""
    first_trip = -1
    was_tripped = z[zl.Z_TRIPPED] != 0.0
    for i in range(n):
        fa = s[ph.S_LC_A]
        fb = s[ph.S_LC_B]
        x = s[ph.S_XM]
        if inp[IN_CTRL_HUNG] > 0.5:
            v_ctrl = c[cl.C_CMD]  # a hung controller: its last output stays latched
        else:
            v_ctrl = cl.controller_step(c, cp, dt, targets[i], 1.0, clamp, fa, fb, x)
            if inp[IN_CTRL_RUNAWAY] > 0.5:
                v_ctrl = cp[cl.CP_VMAX]
                c[cl.C_CMD] = v_ctrl
        v = zl.safety_step(z, zp, alarms, dt, fa, fb, x, s[ph.S_ANGLE], angles[i],
                           s[ph.S_SW_A], s[ph.S_SW_B], inp[IN_OP_STOP], c[cl.C_HEARTBEAT],
                           inp[IN_COMM_OK], clamp, v_ctrl, targets[i], inp[IN_TRIP_CODE],
                           s[ph.S_EFFORT])
        tripped = z[zl.Z_TRIPPED] != 0.0
        if tripped and not was_tripped and first_trip < 0:
            first_trip = i
            was_tripped = True
        enable = 0.0 if z[zl.Z_MOTOR_OFF] > 0.5 else 1.0
        ph.physics_step(s, p, flt, dt, v, enable, angles[i], noise[i, 0], noise[i, 1])
        row = out[i]
        row[0] = t0 + (i + 1) * dt
        row[1] = c[cl.C_TARGET]
        row[2] = fa
        row[3] = fb
        row[4] = s[ph.S_T]
        row[5] = x
        row[6] = s[ph.S_DIST]
        row[7] = s[ph.S_ANGLE]
        row[8] = angles[i]
        row[9] = v if enable > 0.5 else np.nan
        row[10] = phases[i] if not tripped else 9.0
        row[11] = inp[IN_STATE] if not tripped else 4.0
        row[12] = s[ph.S_G]
        row[13] = cycles[i]
    return first_trip


assert N_COL == 14
