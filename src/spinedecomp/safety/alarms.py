"""Alarm catalogue: kind, IEC 60601-1-8 priority, technical vs patient-state, and action.

High priority: the patient may be harmed now (force the patient did not ask for, the
patient's own stop). Medium: the system can no longer be trusted to control force (sensor
or link failures) - it releases, but the patient is not being over-loaded. Low: advisory.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from spinedecomp.safety import codes


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priorities."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True)
class AlarmSpec:
    """What an alarm code means."""

    code: int
    kind: str
    priority: Priority
    technical: bool
    condition: str
    action: str


_RELEASE = "controlled release"
_SPECS = (
    AlarmSpec(codes.PATIENT_SWITCH, "patient-switch", Priority.HIGH, False,
              "patient pressed the stop switch", _RELEASE),
    AlarmSpec(codes.SWITCH_DISAGREE, "switch-disagree", Priority.MEDIUM, True,
              "patient switch channels disagree", _RELEASE),
    AlarmSpec(codes.OPERATOR_STOP, "operator-stop", Priority.MEDIUM, False,
              "operator pressed STOP", _RELEASE),
    AlarmSpec(codes.OVERFORCE, "overforce", Priority.HIGH, False,
              "force above the session clamp plus margin", _RELEASE),
    AlarmSpec(codes.DEVICE_LIMIT, "device-limit", Priority.HIGH, False,
              "force above the device absolute limit", _RELEASE),
    AlarmSpec(codes.RATE_OF_RISE, "rate-of-rise", Priority.HIGH, False,
              "force rising faster than allowed", _RELEASE),
    AlarmSpec(codes.LOADCELL_DISAGREE, "loadcell-disagree", Priority.MEDIUM, True,
              "the two load cells disagree", _RELEASE),
    AlarmSpec(codes.SENSOR_FROZEN, "sensor-frozen", Priority.MEDIUM, True,
              "a load cell stopped changing", _RELEASE),
    AlarmSpec(codes.SENSOR_INVALID, "sensor-invalid", Priority.MEDIUM, True,
              "a load cell reads NaN or out of range", _RELEASE),
    AlarmSpec(codes.HEARTBEAT_LOST, "heartbeat-lost", Priority.HIGH, True,
              "the force controller stopped running", _RELEASE),
    AlarmSpec(codes.COMM_LOST, "comm-lost", Priority.HIGH, True,
              "communication with the table lost", _RELEASE + " (table firmware also releases)"),
    AlarmSpec(codes.TRAVEL_LIMIT, "travel-limit", Priority.HIGH, False,
              "cable travel beyond its limit (harness detached?)", _RELEASE),
    AlarmSpec(codes.ANGLE_FAULT, "angle-fault", Priority.MEDIUM, True,
              "pull angle out of range or not following its set-point", _RELEASE),
    AlarmSpec(codes.RELEASE_STALLED, "release-stalled", Priority.HIGH, True,
              "force not falling during a release", "motor disabled"),
    AlarmSpec(codes.SOFTWARE_FAULT, "software-fault", Priority.HIGH, True,
              "unhandled error or signal in the session process", _RELEASE),
    AlarmSpec(codes.STORAGE_FULL, "storage-full", Priority.MEDIUM, True,
              "telemetry spool full while the database is unavailable", _RELEASE),
    AlarmSpec(codes.SLACK_TIMEOUT, "slack-timeout", Priority.MEDIUM, True,
              "harness slack not taken up (harness loose or cable broken?)", _RELEASE),
    AlarmSpec(codes.OVERRUN, "overrun", Priority.MEDIUM, True,
              "session ran far past its planned duration", _RELEASE),
    AlarmSpec(codes.TRACKING, "tracking", Priority.HIGH, True,
              "force stays above the set-point (winch not paying out)", _RELEASE),
    AlarmSpec(codes.FORCE_IMPLAUSIBLE, "force-implausible", Priority.HIGH, True,
              "load cells contradicted by the drive effort or the cable position "
              "(common-mode cell failure or harness detached?)", _RELEASE),
)

SPEC_BY_CODE: dict[int, AlarmSpec] = {s.code: s for s in _SPECS}
SPEC_BY_KIND: dict[str, AlarmSpec] = {s.kind: s for s in _SPECS}


def spec(code: int) -> AlarmSpec:
    """The catalogue entry of an alarm code."""
    return SPEC_BY_CODE[code]
