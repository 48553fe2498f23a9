"""Alarm kinds as integer codes the numba safety kernel can emit.

Kept free of numba and enums so the kernel sees plain compile-time integer constants.
"""

from __future__ import annotations

NONE = 0
PATIENT_SWITCH = 1
SWITCH_DISAGREE = 2
OPERATOR_STOP = 3
OVERFORCE = 4
DEVICE_LIMIT = 5
RATE_OF_RISE = 6
LOADCELL_DISAGREE = 7
SENSOR_FROZEN = 8
SENSOR_INVALID = 9
HEARTBEAT_LOST = 10
COMM_LOST = 11
TRAVEL_LIMIT = 12
ANGLE_FAULT = 13
RELEASE_STALLED = 14
SOFTWARE_FAULT = 15  # unhandled exception or signal in the session process
STORAGE_FULL = 16  # telemetry spool full while the database is away
END_OF_SESSION = 17  # not an alarm: the normal final release
TRACKING = 18  # force stays well above the set-point: the table is not letting go
SLACK_TIMEOUT = 19  # harness slack not taken up: harness loose or cable broken
OVERRUN = 20  # the session ran far past its planned duration
FORCE_IMPLAUSIBLE = 21  # cells disagree with the drive effort or the cable position
N_CODES = 22
