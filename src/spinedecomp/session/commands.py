"""Parse scheduled clinician commands: 'T:FIELD=VALUE' edits and 'T:pause|resume|stop|confirm'."""

from __future__ import annotations

import math

from spinedecomp.control.trajectory import EDITABLE_FIELDS
from spinedecomp.core.errors import SpinedecompError
from spinedecomp.core.units import lb_to_n
from spinedecomp.session.model import Command

_PLAIN = ("pause", "resume", "stop", "confirm", "operator-stop", "acknowledge")


class EditSpecError(SpinedecompError):
    """A scheduled edit that cannot be parsed."""


def parse_time(spec: str, t_s: str, what: str, error: type[SpinedecompError]) -> float:
    """The T of a scheduled 'T:...' item (an edit or a fault): finite seconds >= 0."""
    try:
        t = float(t_s)
    except ValueError:
        raise error(f"{what} '{spec}': time '{t_s}' is not a number of seconds") from None
    if not (math.isfinite(t) and t >= 0):
        raise error(f"{what} '{spec}': time must be >= 0 s")
    return t


def parse_edit(spec: str) -> tuple[float, Command]:
    """'120:max_force_n=400', '90:max_force_lb=90', '60:pause' -> (t, Command)."""
    t_s, sep, rest = spec.partition(":")
    if not sep:
        raise EditSpecError(f"edit '{spec}': expected T:FIELD=VALUE or T:pause|resume|stop")
    t = parse_time(spec, t_s, "edit", EditSpecError)
    if rest in _PLAIN:
        return t, Command(kind=rest, reason="scheduled", user="cli")  # type: ignore[arg-type]
    field, eq, value_s = rest.partition("=")
    if not eq:
        raise EditSpecError(f"edit '{spec}': expected FIELD=VALUE or one of {', '.join(_PLAIN)}")
    try:
        value = float(value_s)
    except ValueError:
        raise EditSpecError(f"edit '{spec}': value '{value_s}' is not a number") from None
    if field.endswith("_lb"):
        field = field[:-3] + "_n"
        value = lb_to_n(value)
    if field not in EDITABLE_FIELDS:
        raise EditSpecError(f"edit '{spec}': unknown field '{field}'; editable: "
                            f"{', '.join(EDITABLE_FIELDS)} (forces also as *_lb)")
    return t, Command(kind="edit", field=field, value=value, reason="scheduled edit", user="cli")
