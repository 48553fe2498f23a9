"""The built-in protocol library (library.yaml), and the angle of pull by spinal level."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from spinedecomp.control.protocol import Protocol, parse_protocol
from spinedecomp.core.errors import ProtocolError
from spinedecomp.core.units import Region


@cache
def builtin_protocols() -> dict[str, Protocol]:
    """Every built-in protocol by name."""
    text = resources.files("spinedecomp.control").joinpath("library.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    out: dict[str, Protocol] = {}
    for entry in data["protocols"]:
        proto = parse_protocol(entry)
        out[proto.name] = proto
    return out


def get_protocol(name: str) -> Protocol:
    """A built-in protocol by name; a clear error listing the names otherwise."""
    lib = builtin_protocols()
    if name not in lib:
        raise ProtocolError("protocol", f"unknown protocol '{name}'; built-in: {', '.join(lib)}")
    return lib[name]


# Angle of pull by level. Cervical: flexion about 10 (upper), 15 (mid), 20-30 (lower) degrees
# (Saunders cervical guide / Comfortrac guidance, REFERENCE.md). Lumbar: a higher angle
# targets lower levels within the 0-30 degree range of commercial tables (DRX5000, K023160);
# the per-level values are common table-maker practice, to be confirmed by the clinician.
_ANGLES: dict[Region, dict[str, float]] = {
    Region.CERVICAL: {"C1": 10.0, "C2": 10.0, "C3": 15.0, "C4": 15.0, "C5": 20.0, "C6": 25.0,
                      "C7": 30.0},
    Region.LUMBAR: {"L1": 5.0, "L2": 10.0, "L3": 15.0, "L4": 20.0, "L5": 25.0, "S1": 30.0},
}


def angle_for_level(region: Region, level: str) -> float:
    """Suggested angle of pull (degrees) for the affected level, e.g. ('lumbar', 'L5')."""
    table = _ANGLES[Region(region)]
    key = level.upper().split("-")[0]
    if key not in table:
        raise ProtocolError("level", f"unknown {Region(region).value} level '{level}'; "
                            f"known: {', '.join(table)}")
    return table[key]
