"""Treatment protocols as data (pydantic), loadable from YAML or JSON.

A `Protocol` is what a clinician writes; `resolve(protocol, body_weight_kg)` turns it into a
`ResolvedProtocol` with every force in newtons, validated against the region's safe range.
Validation rejects what no clinician could mean, naming the field and the allowed range.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spinedecomp.core.errors import ProtocolError
from spinedecomp.core.units import (
    BODY_WEIGHT_KG,
    HOLD_REST_S,
    SESSION_MIN,
    Region,
    kg_to_n,
    lb_to_n,
    limits_for,
    n_to_lb,
)


class Mode(StrEnum):
    """Traction modes seen on commercial tables (Triton DTS, FDA 510(k) K053223)."""

    STATIC = "static"
    INTERMITTENT = "intermittent"
    PROGRESSIVE = "progressive"
    REGRESSIVE = "regressive"
    CYCLIC = "cyclic"


class RampShape(StrEnum):
    """How force rises from rest to peak. Logarithmic ramps avoid paraspinal guarding
    (DRX9000, K060735)."""

    LINEAR = "linear"
    LOGARITHMIC = "logarithmic"
    S_CURVE = "s-curve"


class Position(StrEnum):
    """Patient position on the table."""

    SUPINE = "supine"
    PRONE = "prone"


class Adjunct(StrEnum):
    """Adjunct modalities given with decompression (seed 001: heat or cold, electrical
    stimulation, ultrasound)."""

    HEAT = "heat"
    COLD = "cold"
    E_STIM = "e-stim"
    ULTRASOUND = "ultrasound"


class ForceSpec(BaseModel):
    """A force: absolute (N or lb), a percentage of body weight (%bw), or, for the rest force
    only, a percentage of the max force (%max: commercial tables rest at 50% of hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)]
    unit: Literal["N", "lb", "%bw", "%max"] = "N"

    def newtons(self, body_weight_kg: float, max_force_n: float | None = None) -> float:
        """The force in newtons for a patient of the given weight."""
        if self.unit == "%max":
            if max_force_n is None:
                raise ProtocolError("unit", "%max is only meaningful for the rest force")
            return self.value / 100.0 * max_force_n
        if self.unit == "N":
            return self.value
        if self.unit == "lb":
            return lb_to_n(self.value)
        return self.value / 100.0 * kg_to_n(body_weight_kg)

    def describe(self) -> str:
        """Short text, e.g. '35 %bw'."""
        return f"{self.value:g} {self.unit}"


class Protocol(BaseModel):
    """A treatment protocol as a clinician writes it.

    Numbers and booleans are strict: `hold_s: true` or `hold_s: "60"` is refused (a boolean is
    not a number, and a quoted number is usually a mistake elsewhere in the file); enums are
    given by their names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: str = ""
    use_case: str = ""
    source: str = ""
    region: Region
    mode: Mode
    max_force: ForceSpec
    rest_force: ForceSpec = ForceSpec(value=50.0, unit="%max")
    hold_s: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 60.0
    rest_s: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 20.0
    ramp_shape: RampShape = RampShape.LOGARITHMIC
    ramp_s: Annotated[float, Field(gt=0.0, le=120.0, allow_inf_nan=False, strict=True)] = 15.0
    # Progressive/regressive: the number of cycles over which the peak steps from the rest
    # force to max (or back); `step_force` alternatively fixes the step size.
    progression_cycles: Annotated[int, Field(ge=1, le=50, strict=True)] = 4
    step_force: ForceSpec | None = None
    # Cyclic: an oscillation at peak (IDD/Accu-SPINA: about 10 lb, up to 20 lb).
    oscillation: ForceSpec | None = None
    oscillation_period_s: Annotated[float, Field(gt=0.5, le=30.0, allow_inf_nan=False,
                                                 strict=True)] = 4.0
    angle_deg: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 10.0
    duration_min: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 20.0
    position: Position = Position.SUPINE
    knee_cushion: Annotated[bool, Field(strict=True)] = True
    adjuncts: tuple[Adjunct, ...] = ()
    first_session: Annotated[bool, Field(strict=True)] = False
    # The highest max force this protocol may be raised to during a session. Default: the
    # max force plus four 5 lb steps (Kennedy technique: raise in 5 lb steps) for lumbar, one
    # step for cervical, and no raise at all in a first session.
    cap: ForceSpec | None = None

    @model_validator(mode="after")
    def _check_times(self) -> Protocol:
        if not HOLD_REST_S.absolute.contains(self.hold_s):
            raise ValueError(f"hold_s must be within {HOLD_REST_S.absolute.describe(HOLD_REST_S.unit)}"
                             f", got {self.hold_s:g}")
        if self.mode is not Mode.STATIC and not HOLD_REST_S.absolute.contains(self.rest_s):
            raise ValueError(f"rest_s must be within {HOLD_REST_S.absolute.describe(HOLD_REST_S.unit)}"
                             f", got {self.rest_s:g}")
        dur_s = self.duration_min * 60.0
        if not SESSION_MIN.absolute.contains(dur_s):
            raise ValueError(f"duration_min must be within 1-99 min, got {self.duration_min:g}")
        angle = limits_for(self.region).angle.safe
        if not angle.contains(self.angle_deg):
            raise ValueError(f"angle_deg must be within {angle.describe(limits_for(self.region).angle.unit)}"
                             f" for {self.region.value}, got {self.angle_deg:g}")
        if self.mode is Mode.CYCLIC and self.oscillation is None:
            raise ValueError("oscillation: cyclic mode needs an oscillation amplitude at peak")
        return self


class ResolvedProtocol(BaseModel):
    """A protocol for one patient: every force in newtons, validated."""

    model_config = ConfigDict(frozen=True)

    protocol: Protocol
    body_weight_kg: float
    max_force_n: float
    rest_force_n: float
    step_force_n: float | None
    oscillation_n: float
    cap_n: float
    duration_s: float

    @property
    def region(self) -> Region:
        """The protocol's region."""
        return self.protocol.region


def _first_error(exc: ValidationError) -> ProtocolError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "protocol"
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    if str(err["type"]).endswith("_type") and isinstance(given, bool | int | float | str):
        # Say what was given, spelled as in the file: "hold_s: ... number, got true".
        msg += f", got {json.dumps(given)[:40]}"
    if not err["loc"]:
        # Model-level validators name their field at the start of the message.
        field, _, rest = msg.partition(" ")
        return ProtocolError(field.rstrip(":"), rest or msg)
    return ProtocolError(loc, msg)


def parse_protocol(data: object) -> Protocol:
    """Validate a mapping as a Protocol, raising ProtocolError that names the field."""
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


# Limits of a protocol file (docs/control.md, "Protocol files"). A protocol is about 1 KiB;
# 64 KiB leaves room for long descriptions and comments while keeping parsing in milliseconds
# (a 50 MB YAML once took 13 s to be declared "valid"). Protocol fields nest 2 levels deep
# (max_force: {value, unit}); 8 is generous and stops a deeply nested file long before Python's
# recursion limit.
MAX_PROTOCOL_FILE_BYTES = 64 * 1024
MAX_PROTOCOL_NESTING = 8


def load_protocol_file(path: Path) -> Protocol:
    """Load a protocol from a YAML or JSON file (JSON when the name ends in .json).

    Bounded and strict, so a hostile or broken file is a clear `ProtocolError` (field `file`),
    never a traceback, a hang or a memory blow-up: a regular file of at most
    `MAX_PROTOCOL_FILE_BYTES` (checked before reading; devices, FIFOs and directories are
    refused), UTF-8 (UTF-16 with a byte-order mark also accepted), nesting at most
    `MAX_PROTOCOL_NESTING` levels, no YAML aliases (anchors/`*ref`, so no billion laughs), no
    duplicate keys, then the field types of `Protocol` (a boolean is not a number).
    """
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    text = _decode(path, _read_bounded(path))
    try:
        if kind == "JSON":
            _check_json_nesting(path, text)
            data = json.loads(text, object_pairs_hook=_json_object,
                              parse_constant=_json_constant)
        else:
            data = _load_yaml(path, text)
    except _DuplicateKey as exc:
        raise ProtocolError("file", f"{path}: duplicate key '{exc.key}'{exc.where}; "
                            "each field may appear once") from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError covers JSONDecodeError and integers longer than Python converts (whose
        # message ends in advice for programmers, not for the author of the file).
        msg = str(exc).split("; use sys.set_int_max_str_digits")[0]
        raise ProtocolError("file", f"{path} is not valid {kind}: {msg}") from None
    if not isinstance(data, dict):
        raise ProtocolError("file", f"{path} must hold a mapping of protocol fields")
    return parse_protocol(data)


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing anything but a regular file of at most the size limit."""
    limit = MAX_PROTOCOL_FILE_BYTES
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer. The type and size are checked
        # on the opened descriptor, so a file swapped after the check cannot slip through.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ProtocolError("file", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            # /dev/zero, /dev/urandom or a FIFO would never end; a directory is no protocol.
            raise ProtocolError("file", f"{path} is not a regular file")
        if st.st_size > limit:
            raise ProtocolError("file", f"{path} is {st.st_size} bytes; a protocol file may be "
                                f"at most {limit} bytes ({limit // 1024} KiB)")
        chunks: list[bytes] = []
        got = 0
        # Read at most limit + 1 bytes: a file that grew after fstat is still refused.
        while got <= limit:
            chunk = os.read(fd, limit + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise ProtocolError("file", f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if got > limit:
        raise ProtocolError("file", f"{path} is larger than {limit} bytes "
                            f"({limit // 1024} KiB), the limit of a protocol file")
    return b"".join(chunks)


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 text (a UTF-8 or UTF-16 byte-order mark selects that encoding)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, name = "utf-16", "UTF-16"
    else:
        encoding, name = "utf-8-sig", "UTF-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ProtocolError("file", f"{path} is not valid {name} text (byte {exc.start}: "
                            f"{exc.reason}); save it as UTF-8") from None


def _too_deep(path: Path, where: str) -> ProtocolError:
    return ProtocolError("file", f"{path} nests deeper than {MAX_PROTOCOL_NESTING} levels"
                         f"{where}; a protocol needs at most 2")


def _check_json_nesting(path: Path, text: str) -> None:
    """Refuse JSON nested deeper than the limit before `json` recurses into it."""
    depth = 0
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_PROTOCOL_NESTING:
                line = text.count("\n", 0, i) + 1
                raise _too_deep(path, f" (line {line})")
        elif ch in "]}":
            depth -= 1


class _DuplicateKey(Exception):
    """A key given twice in one mapping (YAML or JSON)."""

    def __init__(self, key: object, where: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.where = where


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            # json keeps the last silently; a second hold_s is a mistake, not an override.
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _load_yaml(path: Path, text: str) -> object:
    """One YAML document through `_ProtocolLoader`, its error marks naming the file."""
    loader = _ProtocolLoader(text)
    loader.name = str(path)  # marks say "in <path>, line N" instead of "<unicode string>"
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _ProtocolLoader(yaml.SafeLoader):
    """SafeLoader without aliases, without duplicate keys and with a nesting limit."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node, refusing aliases and nesting beyond the limit."""
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            # Aliases are refused outright: a protocol never needs one, and expanding them is
            # what makes a billion-laughs file cost seconds and gigabytes.
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not allowed in a protocol file "
                "(write the value out)", event.start_mark)
        # Only mappings and lists are levels of nesting (as brackets are in JSON).
        container = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        self._depth += 1 if container else 0
        try:
            if self._depth > MAX_PROTOCOL_NESTING:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_PROTOCOL_NESTING} levels; a "
                    "protocol needs at most 2", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1 if container else 0

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        """A mapping whose keys are all distinct."""
        seen: set[object] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: SafeConstructor reports it with its position
            if dup:
                mark = key_node.start_mark
                raise _DuplicateKey(key, f" (line {mark.line + 1}, column {mark.column + 1})")
        return super().construct_mapping(node, deep)


def check_body_weight(body_weight_kg: float) -> None:
    """Reject a body weight no adult patient could have."""
    rng = BODY_WEIGHT_KG.absolute
    if not rng.contains(body_weight_kg):
        raise ProtocolError("body_weight_kg", f"must be within {rng.describe(BODY_WEIGHT_KG.unit)}, "
                            f"got {body_weight_kg:g}")


def resolve(protocol: Protocol, body_weight_kg: float) -> ResolvedProtocol:
    """Turn a protocol into newtons for one patient and check every force against the region's
    safe range."""
    check_body_weight(body_weight_kg)
    lim = limits_for(protocol.region)
    safe = lim.force.safe
    max_n = protocol.max_force.newtons(body_weight_kg)
    if protocol.max_force.unit == "%max":
        raise ProtocolError("max_force.unit", "must be N, lb or %bw")
    rest_n = protocol.rest_force.newtons(body_weight_kg, max_n)
    rng = f"{safe.lo:g}-{safe.hi:.0f} N ({n_to_lb(safe.hi):.0f} lb)"
    if not safe.contains(max_n) or max_n <= 0.0:
        raise ProtocolError("max_force", f"{max_n:.0f} N is outside the {protocol.region.value} safe "
                            f"range {rng} (>0)")
    if protocol.mode is not Mode.STATIC and rest_n >= max_n:
        raise ProtocolError("rest_force", f"{rest_n:.0f} N must be below max_force {max_n:.0f} N")
    if not safe.contains(rest_n):
        raise ProtocolError("rest_force", f"{rest_n:.0f} N is outside the safe range {rng}")
    if any(f is not None and f.unit == "%max" for f in (protocol.step_force, protocol.oscillation)):
        raise ProtocolError("unit", "%max is only meaningful for the rest force")
    step_n = protocol.step_force.newtons(body_weight_kg) if protocol.step_force else None
    if step_n is not None and not 0.0 < step_n <= max_n:
        raise ProtocolError("step_force", f"must be within 0-{max_n:.0f} N (the max force), got {step_n:.0f}")
    osc = protocol.oscillation.newtons(body_weight_kg) if protocol.oscillation else 0.0
    osc_max = lb_to_n(20.0)
    if osc > osc_max or max_n + osc > safe.hi:
        raise ProtocolError("oscillation", f"{osc:.0f} N must be at most {osc_max:.0f} N (20 lb) "
                            f"and keep the peak within {rng}")
    if protocol.cap is not None:
        cap_req = protocol.cap.newtons(body_weight_kg)
        if cap_req < max_n + osc:
            raise ProtocolError("cap", f"{cap_req:.0f} N must be at least the peak force "
                                f"{max_n + osc:.0f} N")
    elif protocol.first_session:
        cap_req = max_n + osc
    else:
        steps = 4 if protocol.region is Region.LUMBAR else 1
        cap_req = max_n + osc + steps * lb_to_n(5.0)
    cap = min(cap_req, safe.hi, lim.force.absolute.hi)
    return ResolvedProtocol(
        protocol=protocol,
        body_weight_kg=body_weight_kg,
        max_force_n=max_n,
        rest_force_n=rest_n if protocol.mode is not Mode.STATIC else 0.0,
        step_force_n=step_n,
        oscillation_n=osc,
        cap_n=cap,
        duration_s=protocol.duration_min * 60.0,
    )
