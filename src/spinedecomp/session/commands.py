"""Parse scheduled clinician commands: 'T:FIELD=VALUE' edits and 'T:pause|resume|stop|confirm'."""

from __future__ import annotations

from spinedecomp.control.trajectory import EDITABLE_FIELDS
from spinedecomp.core.errors import SpinedecompError
from spinedecomp.core.units import lb_to_n
from spinedecomp.session.model import Command

_PLAIN = ("pause", "resume", "stop", "confirm", "operator-stop", "acknowledge")


class EditSpecError(SpinedecompError):
    """A scheduled edit that cannot be parsed."""


def parse_edit(spec: str) -> tuple[float, Command]:
    """'120:max_force_n=400', '90:max_force_lb=90', '60:pause' -> (t, Command)."""
    t_s, sep, rest = spec.partition(":")
    if not sep:
        raise EditSpecError(f"edit '{spec}': expected T:FIELD=VALUE or T:pause|resume|stop")
    try:
        t = float(t_s)
    except ValueError:
        raise EditSpecError(f"edit '{spec}': time '{t_s}' is not a number of seconds") from None
    if t < 0:
        raise EditSpecError(f"edit '{spec}': time must be >= 0 s")
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
