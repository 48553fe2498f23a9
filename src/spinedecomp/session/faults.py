"""Fault injection: parse `T:KIND[:ARGS]` and apply faults to a running session.

Device faults change the simulated table (sensor, motor, switch, patient); engine faults change
the software around it (controller hang, crash, runaway; operator stop; link loss). Either
way the safety monitor finds out only through what it reads, never by being told.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spinedecomp.core.errors import SpinedecompError
from spinedecomp.core.units import Range
from spinedecomp.session.commands import parse_time
from spinedecomp.session.model import Fault


@dataclass(frozen=True)
class ArgSpec:
    """The numeric argument of a fault kind: what it means, its unit and the closed range it
    must lie in (docs/safety.md, "Fault arguments")."""

    meaning: str
    unit: str
    allowed: Range

    def describe(self) -> str:
        """Human text for errors and docs, e.g. '-1000 to 1000 N/s'."""
        return f"{self.allowed.lo:g} to {self.allowed.hi:g} {self.unit}"


@dataclass(frozen=True)
class FaultKind:
    """A fault the simulator can inject."""

    name: str
    needs_channel: bool
    default_arg: float | None
    expected_alarm: str
    description: str
    arg: ArgSpec | None = None  # None: the kind takes no argument


# Argument ranges. Each is wide enough for every case the fault matrix, the campaign and the
# issue reports use, and narrow enough that the simulated plant stays physical: a negative
# slack or a negative spasm is a pull the motor never made (harness-detach:-1000 put 14 kN on
# the simulated patient), and NaN or infinity turns the true force into NaN. A load cell's
# faults may go either way (a cell drifts or jumps down as well as up).
_DRIFT = ArgSpec("drift rate", "N/s", Range(-1000.0, 1000.0))
_OFFSET = ArgSpec("offset", "N", Range(-2000.0, 2000.0))
_SPIKE = ArgSpec("spike height", "N", Range(-5000.0, 5000.0))
_SPASM = ArgSpec("cable pulled by the spasm", "mm", Range(0.0, 50.0))
_SLACK = ArgSpec("slack", "mm", Range(0.0, 5000.0))


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
              "a load cell drifts by ARG N/s", _DRIFT),
    FaultKind("loadcell-offset", True, 60.0, "loadcell-disagree",
              "a load cell jumps by ARG N and stays there", _OFFSET),
    FaultKind("loadcell-spike", True, 1200.0, "device-limit",
              "a load cell spikes by ARG N for 5 ms", _SPIKE),
    FaultKind("overforce-spike", False, 25.0, "overforce",
              "the patient moves, pulling ARG mm of cable in a spasm", _SPASM),
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
              "the harness comes loose: ARG mm of slack", _SLACK),
    FaultKind("angle-stuck", False, None, "angle-fault",
              "the pull-angle actuator jams (detected once the angle is changed)"),
)}


class FaultSpecError(SpinedecompError):
    """A fault specification that cannot be parsed."""


def parse_fault(spec: str) -> Fault:
    """Parse 'T:KIND[:CHANNEL][:ARG]', e.g. '60:loadcell-freeze:a' or '45:overforce-spike:30'.

    T is finite seconds >= 0. ARG must be a finite number within the kind's documented range
    (`FAULT_KINDS[kind].arg`, docs/safety.md); a kind without an argument refuses one. Every
    refusal is a `FaultSpecError` naming the fault kind, the argument and the allowed range.
    """
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
        arg = _parse_arg(spec, fk, rest.pop(0))
    if rest:
        raise FaultSpecError(f"fault '{spec}': too many fields")
    return Fault(t=t, kind=kind, channel=channel, arg=arg,
                 duration_s=0.005 if kind == "loadcell-spike" else None)


def _parse_arg(spec: str, fk: FaultKind, text: str) -> float:
    """The ARG of a fault, checked against its kind's range."""
    if fk.arg is None:
        # An argument the kind ignores would be silently dropped: say so instead.
        raise FaultSpecError(f"fault '{spec}': {fk.name} takes no argument, got '{text}'")
    what = f"{fk.name} argument ARG ({fk.arg.meaning})"
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault '{spec}': {what} is not a number: '{text}'; "
                             f"allowed {fk.arg.describe()}") from None
    # Range.contains is False for NaN; infinity is outside every finite range, but say
    # "finite" so the message explains why 'inf' and 'nan' are refused.
    if not math.isfinite(value) or not fk.arg.allowed.contains(value):
        raise FaultSpecError(f"fault '{spec}': {what} must be a finite number within "
                             f"{fk.arg.describe()}, got {text}")
    return value
