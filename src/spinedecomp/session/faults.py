"""Fault injection: parse `T:KIND[:ARGS]` and apply faults to a running session.

Device faults change the simulated table (sensor, motor, switch, patient); engine faults change
the software around it (controller hang, crash, runaway; operator stop; link loss). Either
way the safety monitor finds out only through what it reads, never by being told.
"""

from __future__ import annotations

from dataclasses import dataclass

from spinedecomp.core.errors import SpinedecompError
from spinedecomp.session.commands import parse_time
from spinedecomp.session.model import Fault


@dataclass(frozen=True)
class FaultKind:
    """A fault the simulator can inject."""

    name: str
    needs_channel: bool
    default_arg: float | None
    expected_alarm: str
    description: str


FAULT_KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("patient-switch", False, None, "patient-switch", "patient presses the stop switch"),
    FaultKind("switch-disagree", False, None, "patient-switch",
              "channel B of the patient switch shorts closed (channels disagree)"),
    FaultKind("switch-unplugged", False, None, "patient-switch",
              "patient switch cable pulled out (both channels open)"),
    FaultKind("operator-stop", False, None, "operator-stop", "clinician presses STOP"),
    FaultKind("loadcell-freeze", True, None, "sensor-frozen", "a load cell output freezes"),
    FaultKind("loadcell-nan", True, None, "sensor-invalid", "a load cell reads NaN"),
    FaultKind("loadcell-drift", True, 40.0, "loadcell-disagree",
              "a load cell drifts by ARG N/s"),
    FaultKind("loadcell-offset", True, 60.0, "loadcell-disagree",
              "a load cell jumps by ARG N and stays there"),
    FaultKind("loadcell-spike", True, 1200.0, "device-limit",
              "a load cell spikes by ARG N for 5 ms"),
    FaultKind("overforce-spike", False, 25.0, "overforce",
              "the patient moves, pulling ARG mm of cable in a spasm"),
    FaultKind("controller-hang", False, None, "heartbeat-lost",
              "the force controller stops running; its last output stays latched"),
    FaultKind("controller-runaway", False, None, "rate-of-rise",
              "the force controller commands full pull (a software bug)"),
    FaultKind("controller-crash", False, None, "software-fault",
              "an unhandled exception in the session process"),
    FaultKind("motor-stall", False, None, "tracking",
              "the winch jams: it no longer pays out"),
    FaultKind("comm-lost", False, None, "comm-lost", "the link to the table drops"),
    FaultKind("harness-detach", False, 1000.0, "travel-limit",
              "the harness comes loose: ARG mm of slack"),
    FaultKind("angle-stuck", False, None, "angle-fault",
              "the pull-angle actuator jams (detected once the angle is changed)"),
)}


class FaultSpecError(SpinedecompError):
    """A fault specification that cannot be parsed."""


def parse_fault(spec: str) -> Fault:
    """Parse 'T:KIND[:CHANNEL][:ARG]', e.g. '60:loadcell-freeze:a' or '45:overforce-spike:30'."""
    parts = spec.split(":")
    if len(parts) < 2:
        raise FaultSpecError(f"fault '{spec}': expected T:KIND[:ARGS]")
    t = parse_time(spec, parts[0], "fault", FaultSpecError)
    kind = parts[1]
    if kind not in FAULT_KINDS:
        raise FaultSpecError(f"fault '{spec}': unknown kind '{kind}'; known: "
                             f"{', '.join(sorted(FAULT_KINDS))}")
    fk = FAULT_KINDS[kind]
    rest = parts[2:]
    channel: str | None = None
    if fk.needs_channel:
        if not rest or rest[0] not in ("a", "b"):
            raise FaultSpecError(f"fault '{spec}': {kind} needs a load-cell channel, a or b")
        channel = rest.pop(0)
    arg = fk.default_arg
    if rest:
        try:
            arg = float(rest.pop(0))
        except ValueError:
            raise FaultSpecError(f"fault '{spec}': argument is not a number") from None
    if rest:
        raise FaultSpecError(f"fault '{spec}': too many fields")
    return Fault(t=t, kind=kind, channel=channel, arg=arg,
                 duration_s=0.005 if kind == "loadcell-spike" else None)
