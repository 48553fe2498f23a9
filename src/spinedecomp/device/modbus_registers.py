"""The spinedecomp Modbus register map, as data: addresses, types, scaling, pure encode/decode.

This module is the single source of the map that `docs/device-protocol.md` documents (the
tables on that page are rendered from here by `markdown_table`, and a test keeps them equal).
It does no I/O and imports no Modbus library: the driver (`spinedecomp.device.modbus`), the
served simulator (`spinedecomp.device.served`) and a table maker's own test scripts all use it.

Conventions (see the page for the full text):
- Input registers (function 4) carry readings and identity; holding registers (functions 3,
  6, 16) carry commands and configuration.
- One register is 16 bits, bytes big-endian (the Modbus standard). 32-bit values take two
  consecutive registers, high word first (big-endian word order, "ABCD").
- Signed values are two's complement. A value equal to the type's most negative number
  (0x8000 for 16 bits, 0x8000_0000 for 32 bits) means "no valid reading" (a load cell that
  failed, or a value a real table cannot know); unsigned fields that allow it use 0xFFFF.
- Physical values are integers in fixed steps: 0.01 N, 0.01 mm, 0.01 mm/s, 0.01 degree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Protocol

MAGIC = 0x5344  # "SD": a spinedecomp-map table answers this in the identity block
MAP_VERSION = 1
UNIT_ID = 1  # Modbus unit identifier the driver addresses

# Modbus exception codes the served table answers with (the standard's numbers).
EXC_ILLEGAL_FUNCTION = 0x01
EXC_ILLEGAL_ADDRESS = 0x02
EXC_ILLEGAL_VALUE = 0x03
EXC_DEVICE_FAILURE = 0x04


class Kind(StrEnum):
    """Register types."""

    U16 = "uint16"
    I16 = "int16"
    U32 = "uint32"
    I32 = "int32"
    ASCII = "ascii"


class RegisterTable(StrEnum):
    """The two Modbus register tables the map uses."""

    INPUT = "input"  # read-only, function 4
    HOLDING = "holding"  # read/write, functions 3, 6, 16


@dataclass(frozen=True)
class Field:
    """One value in the map."""

    name: str
    address: int
    kind: Kind
    scale: float  # engineering units per count (1 for raw integers and bit fields)
    unit: str
    doc: str
    words: int = 0  # registers used; 0 = the kind's natural width
    invalid: bool = False  # the sentinel (most negative / 0xFFFF) means "no valid value"

    @property
    def count(self) -> int:
        """Number of 16-bit registers the field occupies."""
        if self.words:
            return self.words
        return 2 if self.kind in (Kind.U32, Kind.I32) else 1


@dataclass(frozen=True)
class Block:
    """A contiguous run of registers read or written in one Modbus transaction."""

    name: str
    table: RegisterTable
    address: int
    fields: tuple[Field, ...]

    @property
    def count(self) -> int:
        """Registers from the first to the end of the last field."""
        last = max(self.fields, key=lambda f: f.address)
        return last.address + last.count - self.address

    def field(self, name: str) -> Field:
        """The field called `name`."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


# ---- bit fields and enumerations --------------------------------------------------------------
class Control(IntEnum):
    """Bits of the CONTROL holding register (written by the controller)."""

    ENABLE = 1 << 0  # drive enabled: the table follows the velocity/force command
    RELEASE = 1 << 1  # release now: disable the drive, let the reel pay out; latched
    FAULT_RESET = 1 << 2  # clear latched faults (honoured only with ENABLE = 0 in the same write)
    SWITCH_PROMPT = 1 << 3  # ask the patient to press and release the stop switch (set-up test)


CONTROL_KNOWN = int(Control.ENABLE | Control.RELEASE | Control.FAULT_RESET | Control.SWITCH_PROMPT)


class Fault(IntEnum):
    """Bits of the FAULTS input register (set by the table)."""

    HEARTBEAT_LOST = 1 << 0  # the watchdog released the table; latched until FAULT_RESET
    RELEASED = 1 << 1  # a RELEASE command was executed; latched until FAULT_RESET
    BAD_COMMAND = 1 << 2  # the last command write was rejected (exception 03)
    TRAVEL_END = 1 << 3  # cable at the mechanical end of travel
    LOADCELL = 1 << 4  # the table's own load-cell diagnostics failed (optional)
    MOTOR = 1 << 5  # drive fault: stall, over-temperature, encoder (optional)
    ANGLE = 1 << 6  # angle actuator fault (optional)
    SWITCH = 1 << 7  # patient switch wiring fault detected by the table (optional)
    FORCE_LIMIT = 1 << 8  # the table's own FORCE_LIMIT was reached: released; latched


# Latched fault bits: each one means the table released on its own (drive off, reel paying
# out) and ignores ENABLE until an accepted write carries FAULT_RESET.
FAULTS_LATCHED = int(Fault.HEARTBEAT_LOST | Fault.RELEASED | Fault.FORCE_LIMIT)


class MotorState(IntEnum):
    """Values of the MOTOR_STATE input register."""

    DISABLED = 0  # drive off (reel freewheels and pays out under tension)
    ENABLED = 1  # drive on, following commands
    RELEASED = 2  # released by the table itself (watchdog or RELEASE); needs FAULT_RESET
    FAULT = 3  # drive fault; needs FAULT_RESET


class Mode(IntEnum):
    """Values of the MODE holding register."""

    VELOCITY = 0  # the controller closes the force loop and commands cable velocity
    FORCE = 1  # the table closes its own force loop on FORCE_SETPOINT (capability bit)


class Capability(IntEnum):
    """Bits of the CAPABILITIES identity register."""

    LUMBAR = 1 << 0
    CERVICAL = 1 << 1
    FORCE_MODE = 1 << 2  # accepts MODE = FORCE
    SIMULATED = 1 << 3  # a simulator: TRUE_FORCE, DISTRACTION and GUARDING carry values
    SWITCH_PROMPT = 1 << 4  # honours Control.SWITCH_PROMPT (prompts the patient)


# ---- the map --------------------------------------------------------------------------------
F = Field
READINGS = Block("readings", RegisterTable.INPUT, 0, (
    F("SAMPLE", 0, Kind.U32, 1, "count", "sample counter: +1 every time the table samples its "
      "sensors (at least every 10 ms); wraps at 2^32"),
    F("FORCE_A", 2, Kind.I32, 0.01, "N", "load cell A, raw (+ = tension)", invalid=True),
    F("FORCE_B", 4, Kind.I32, 0.01, "N", "load cell B, raw, independent channel", invalid=True),
    F("POSITION", 6, Kind.I32, 0.01, "mm", "cable position from the reel encoder (+ = pulled in)",
      invalid=True),
    F("ANGLE", 8, Kind.I16, 0.01, "deg", "angle of pull, measured", invalid=True),
    F("SWITCH_A", 9, Kind.U16, 1, "0/1", "patient stop switch channel A, normally closed: "
      "1 = contact closed (not pressed)"),
    F("SWITCH_B", 10, Kind.U16, 1, "0/1", "patient stop switch channel B, normally open: "
      "0 = contact open (not pressed)"),
    F("MOTOR_STATE", 11, Kind.U16, 1, "enum", "0 disabled, 1 enabled, 2 released by the table, "
      "3 drive fault"),
    F("FAULTS", 12, Kind.U16, 1, "bits", "fault bits (see below)"),
    F("HEARTBEAT_ECHO", 13, Kind.U16, 1, "count", "last HEARTBEAT value the table received"),
    F("UPTIME", 14, Kind.U32, 1, "ms", "table time since power-on; wraps at 2^32"),
    F("TRUE_FORCE", 16, Kind.I32, 0.01, "N", "simulator only: true cable tension; a real table "
      "answers 0x8000_0000", invalid=True),
    F("DISTRACTION", 18, Kind.I32, 0.01, "mm", "simulator only: spinal distraction; a real table "
      "answers 0x8000_0000", invalid=True),
    F("GUARDING", 20, Kind.U16, 0.0001, "fraction", "simulator only: muscle guarding activation; "
      "a real table answers 0xFFFF", invalid=True),
))

IDENTITY = Block("identity", RegisterTable.INPUT, 100, (
    F("MAGIC", 100, Kind.U16, 1, "-", "0x5344 ('SD'): this table speaks this map"),
    F("MAP_VERSION", 101, Kind.U16, 1, "-", "version of this map the table implements (1)"),
    F("CAPABILITIES", 102, Kind.U16, 1, "bits", "capability bits (see below)"),
    F("FORCE_LIMIT", 103, Kind.I32, 0.01, "N", "the table's own absolute force limit"),
    F("ANGLE_MIN", 105, Kind.I16, 0.01, "deg", "lowest reachable angle of pull"),
    F("ANGLE_MAX", 106, Kind.I16, 0.01, "deg", "highest reachable angle of pull"),
    F("TRAVEL_MAX", 107, Kind.I32, 0.01, "mm", "usable cable travel"),
    F("VELOCITY_MAX", 109, Kind.I32, 0.01, "mm/s", "highest cable velocity the drive follows"),
    F("SAMPLE_RATE", 111, Kind.U16, 1, "Hz", "rate at which SAMPLE advances"),
    F("NAME", 112, Kind.ASCII, 1, "text", "model name, ASCII, 32 characters, NUL-padded, "
      "2 characters per register, first character in the high byte", words=16),
    F("FIRMWARE", 128, Kind.ASCII, 1, "text", "firmware version, ASCII, 16 characters", words=8),
    F("SERIAL", 136, Kind.ASCII, 1, "text", "serial number, ASCII, 16 characters", words=8),
    F("MOTOR_LAG", 144, Kind.U16, 0.1, "ms", "drive time constant from velocity command to cable "
      "velocity; 0xFFFF = not declared (the controller assumes the worst case, 150 ms)",
      invalid=True),
    F("TRANSPORT_DELAY", 145, Kind.U16, 0.1, "ms", "dead time from command to motion, bus "
      "included; 0xFFFF = not declared (worst case, 20 ms)", invalid=True),
    F("STIFFNESS_MAX", 146, Kind.U16, 0.01, "N/mm", "stiffest cable + harness + patient the "
      "table can present at its load cell; 0xFFFF or 0 = not declared (150 lumbar, 40 "
      "cervical)", invalid=True),
))

COMMAND = Block("command", RegisterTable.HOLDING, 0, (
    F("HEARTBEAT", 0, Kind.U16, 1, "count", "written by the controller every period with a new "
      "value (+1, wrapping); the table's watchdog watches it"),
    F("CONTROL", 1, Kind.U16, 1, "bits", "control bits (see below)"),
    F("MODE", 2, Kind.U16, 1, "enum", "0 cable velocity, 1 force set-point (only with the "
      "FORCE_MODE capability)"),
    F("VELOCITY", 3, Kind.I32, 0.01, "mm/s", "cable velocity command (+ = pull), mode 0"),
    F("FORCE_SETPOINT", 5, Kind.I32, 0.01, "N", "force set-point, mode 1"),
    F("ANGLE_SETPOINT", 7, Kind.I16, 0.01, "deg", "angle of pull set-point"),
))

CONFIG = Block("config", RegisterTable.HOLDING, 8, (
    F("WATCHDOG_MS", 8, Kind.U16, 1, "ms", "heartbeat watchdog timeout, 20-2000 (default 100); "
      "0 = default"),
))
del F

BLOCKS: tuple[Block, ...] = (READINGS, IDENTITY, COMMAND, CONFIG)

WATCHDOG_DEFAULT_MS = 100
WATCHDOG_MIN_MS = 20
WATCHDOG_MAX_MS = 2000

NAME_CHARS = 32
TEXT_CHARS = 16


# ---- primitive codecs -----------------------------------------------------------------------
_LIMITS: dict[Kind, tuple[int, int]] = {
    Kind.U16: (0, 0xFFFF),
    Kind.I16: (-0x8000, 0x7FFF),
    Kind.U32: (0, 0xFFFF_FFFF),
    Kind.I32: (-0x8000_0000, 0x7FFF_FFFF),
}


def _sentinel(kind: Kind) -> int:
    return 0xFFFF if kind is Kind.U16 else _LIMITS[kind][0]


def to_counts(f: Field, value: float) -> int:
    """Engineering value -> integer counts, saturating (never producing the sentinel by
    accident); NaN -> the sentinel when the field allows it."""
    lo, hi = _LIMITS[f.kind]
    if f.invalid:
        if math.isnan(value):
            return _sentinel(f.kind)
        # The sentinel is reserved: a valid value saturates one count short of it.
        if f.kind is Kind.U16:
            hi -= 1
        else:
            lo += 1
    if math.isnan(value):
        raise ValueError(f"{f.name}: NaN is not allowed")
    n = math.floor(value / f.scale + 0.5) if math.isfinite(value) else (hi if value > 0 else lo)
    return int(min(max(n, lo), hi))


def from_counts(f: Field, n: int) -> float:
    """Integer counts -> engineering value; the sentinel -> NaN when the field allows it."""
    if f.invalid and n == _sentinel(f.kind):
        return math.nan
    return n * f.scale if f.scale != 1 else float(n)


def pack(f: Field, n: int) -> list[int]:
    """Counts -> registers (two's complement, high word first)."""
    if f.count == 1:
        return [n & 0xFFFF]
    u = n & 0xFFFF_FFFF
    return [(u >> 16) & 0xFFFF, u & 0xFFFF]


def unpack(f: Field, regs: Sequence[int]) -> int:
    """Registers -> counts."""
    if f.count == 1:
        u = regs[0] & 0xFFFF
        return u - 0x1_0000 if f.kind is Kind.I16 and u & 0x8000 else u
    u = ((regs[0] & 0xFFFF) << 16) | (regs[1] & 0xFFFF)
    return u - 0x1_0000_0000 if f.kind is Kind.I32 and u & 0x8000_0000 else u


def encode_text(f: Field, text: str) -> list[int]:
    """ASCII text -> registers, NUL-padded, first character in the high byte."""
    raw = text.encode("ascii", errors="replace")[: 2 * f.count].ljust(2 * f.count, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def decode_text(regs: Sequence[int]) -> str:
    """Registers -> ASCII text (up to the first NUL)."""
    raw = b"".join(bytes(((r >> 8) & 0xFF, r & 0xFF)) for r in regs)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _put(block: Block, regs: list[int], name: str, value: float) -> None:
    f = block.field(name)
    i = f.address - block.address
    regs[i:i + f.count] = pack(f, to_counts(f, value))


def _get(block: Block, regs: Sequence[int], name: str) -> float:
    f = block.field(name)
    i = f.address - block.address
    return from_counts(f, unpack(f, regs[i:i + f.count]))


def _get_int(block: Block, regs: Sequence[int], name: str) -> int:
    f = block.field(name)
    i = f.address - block.address
    return unpack(f, regs[i:i + f.count])


def _check_len(block: Block, regs: Sequence[int]) -> None:
    if len(regs) != block.count:
        raise ValueError(f"{block.name}: expected {block.count} registers, got {len(regs)}")


# ---- structured values ------------------------------------------------------------------------
@dataclass(frozen=True)
class Readings:
    """The readings block, in engineering units."""

    sample: int
    force_a_n: float
    force_b_n: float
    position_mm: float
    angle_deg: float
    switch_a: int
    switch_b: int
    motor_state: int
    faults: int
    heartbeat_echo: int
    uptime_ms: int
    force_true_n: float = math.nan
    distraction_mm: float = math.nan
    guarding: float = math.nan


def encode_readings(r: Readings) -> list[int]:
    """Readings -> the READINGS block's registers."""
    b = READINGS
    regs = [0] * b.count
    _put(b, regs, "SAMPLE", r.sample & 0xFFFF_FFFF)
    _put(b, regs, "FORCE_A", r.force_a_n)
    _put(b, regs, "FORCE_B", r.force_b_n)
    _put(b, regs, "POSITION", r.position_mm)
    _put(b, regs, "ANGLE", r.angle_deg)
    _put(b, regs, "SWITCH_A", r.switch_a)
    _put(b, regs, "SWITCH_B", r.switch_b)
    _put(b, regs, "MOTOR_STATE", r.motor_state)
    _put(b, regs, "FAULTS", r.faults & 0xFFFF)
    _put(b, regs, "HEARTBEAT_ECHO", r.heartbeat_echo & 0xFFFF)
    _put(b, regs, "UPTIME", r.uptime_ms & 0xFFFF_FFFF)
    _put(b, regs, "TRUE_FORCE", r.force_true_n)
    _put(b, regs, "DISTRACTION", r.distraction_mm)
    _put(b, regs, "GUARDING", r.guarding)
    return regs


def decode_readings(regs: Sequence[int]) -> Readings:
    """The READINGS block's registers -> Readings."""
    b = READINGS
    _check_len(b, regs)
    return Readings(
        sample=_get_int(b, regs, "SAMPLE"),
        force_a_n=_get(b, regs, "FORCE_A"),
        force_b_n=_get(b, regs, "FORCE_B"),
        position_mm=_get(b, regs, "POSITION"),
        angle_deg=_get(b, regs, "ANGLE"),
        switch_a=_get_int(b, regs, "SWITCH_A"),
        switch_b=_get_int(b, regs, "SWITCH_B"),
        motor_state=_get_int(b, regs, "MOTOR_STATE"),
        faults=_get_int(b, regs, "FAULTS"),
        heartbeat_echo=_get_int(b, regs, "HEARTBEAT_ECHO"),
        uptime_ms=_get_int(b, regs, "UPTIME"),
        force_true_n=_get(b, regs, "TRUE_FORCE"),
        distraction_mm=_get(b, regs, "DISTRACTION"),
        guarding=_get(b, regs, "GUARDING"),
    )


@dataclass(frozen=True)
class Command:
    """The command block, in engineering units."""

    heartbeat: int
    control: int
    mode: int = Mode.VELOCITY
    velocity_mm_s: float = 0.0
    force_n: float = 0.0
    angle_deg: float = 0.0


def encode_command(c: Command) -> list[int]:
    """Command -> the COMMAND block's registers."""
    b = COMMAND
    regs = [0] * b.count
    _put(b, regs, "HEARTBEAT", c.heartbeat & 0xFFFF)
    _put(b, regs, "CONTROL", c.control & 0xFFFF)
    _put(b, regs, "MODE", c.mode)
    _put(b, regs, "VELOCITY", c.velocity_mm_s)
    _put(b, regs, "FORCE_SETPOINT", c.force_n)
    _put(b, regs, "ANGLE_SETPOINT", c.angle_deg)
    return regs


def decode_command(regs: Sequence[int]) -> Command:
    """The COMMAND block's registers -> Command."""
    b = COMMAND
    _check_len(b, regs)
    return Command(
        heartbeat=_get_int(b, regs, "HEARTBEAT"),
        control=_get_int(b, regs, "CONTROL"),
        mode=_get_int(b, regs, "MODE"),
        velocity_mm_s=_get(b, regs, "VELOCITY"),
        force_n=_get(b, regs, "FORCE_SETPOINT"),
        angle_deg=_get(b, regs, "ANGLE_SETPOINT"),
    )


@dataclass(frozen=True)
class Identity:
    """The identity block: who the table is and what it can do."""

    capabilities: int
    force_limit_n: float
    angle_min_deg: float
    angle_max_deg: float
    travel_max_mm: float
    velocity_max_mm_s: float
    sample_rate_hz: int
    name: str
    firmware: str
    serial: str
    magic: int = MAGIC
    map_version: int = MAP_VERSION
    # Declared drive dynamics; NaN = not declared (the controller designs for the worst case).
    motor_lag_s: float = math.nan
    transport_delay_s: float = math.nan
    stiffness_max_n_per_mm: float = math.nan

    def has(self, cap: Capability) -> bool:
        """True if the table reports capability `cap`."""
        return bool(self.capabilities & cap)


def encode_identity(ident: Identity) -> list[int]:
    """Identity -> the IDENTITY block's registers."""
    b = IDENTITY
    regs = [0] * b.count
    _put(b, regs, "MAGIC", ident.magic)
    _put(b, regs, "MAP_VERSION", ident.map_version)
    _put(b, regs, "CAPABILITIES", ident.capabilities)
    _put(b, regs, "FORCE_LIMIT", ident.force_limit_n)
    _put(b, regs, "ANGLE_MIN", ident.angle_min_deg)
    _put(b, regs, "ANGLE_MAX", ident.angle_max_deg)
    _put(b, regs, "TRAVEL_MAX", ident.travel_max_mm)
    _put(b, regs, "VELOCITY_MAX", ident.velocity_max_mm_s)
    _put(b, regs, "SAMPLE_RATE", ident.sample_rate_hz)
    _put(b, regs, "MOTOR_LAG", ident.motor_lag_s * 1000.0)
    _put(b, regs, "TRANSPORT_DELAY", ident.transport_delay_s * 1000.0)
    _put(b, regs, "STIFFNESS_MAX", ident.stiffness_max_n_per_mm)
    for name, text in (("NAME", ident.name), ("FIRMWARE", ident.firmware),
                       ("SERIAL", ident.serial)):
        f = b.field(name)
        i = f.address - b.address
        regs[i:i + f.count] = encode_text(f, text)
    return regs


def decode_identity(regs: Sequence[int]) -> Identity:
    """The IDENTITY block's registers -> Identity (check `magic` and `map_version`)."""
    b = IDENTITY
    _check_len(b, regs)

    def text(name: str) -> str:
        f = b.field(name)
        i = f.address - b.address
        return decode_text(regs[i:i + f.count])

    return Identity(
        magic=_get_int(b, regs, "MAGIC"),
        map_version=_get_int(b, regs, "MAP_VERSION"),
        capabilities=_get_int(b, regs, "CAPABILITIES"),
        force_limit_n=_get(b, regs, "FORCE_LIMIT"),
        angle_min_deg=_get(b, regs, "ANGLE_MIN"),
        angle_max_deg=_get(b, regs, "ANGLE_MAX"),
        travel_max_mm=_get(b, regs, "TRAVEL_MAX"),
        velocity_max_mm_s=_get(b, regs, "VELOCITY_MAX"),
        sample_rate_hz=_get_int(b, regs, "SAMPLE_RATE"),
        name=text("NAME"),
        firmware=text("FIRMWARE"),
        serial=text("SERIAL"),
        motor_lag_s=_get(b, regs, "MOTOR_LAG") / 1000.0,
        transport_delay_s=_get(b, regs, "TRANSPORT_DELAY") / 1000.0,
        stiffness_max_n_per_mm=_get(b, regs, "STIFFNESS_MAX"),
    )


def watchdog_s(regs_value: int) -> float:
    """WATCHDOG_MS register value -> effective timeout in seconds (0 = default)."""
    ms = regs_value or WATCHDOG_DEFAULT_MS
    return min(max(ms, WATCHDOG_MIN_MS), WATCHDOG_MAX_MS) / 1000.0


# ---- what a register server serves -----------------------------------------------------------
class RegisterBank(Protocol):
    """What a Modbus server needs from a table: values for reads, a sink for writes.

    Each method returns the registers (reads) or None (writes) on success, or a Modbus
    exception code (an int) to answer with. Implementations must be thread-safe: the server
    calls them from its own thread.
    """

    def read_input(self, address: int, count: int) -> list[int] | int:
        """Input registers [address, address + count)."""
        ...

    def read_holding(self, address: int, count: int) -> list[int] | int:
        """Holding registers [address, address + count)."""
        ...

    def write_holding(self, address: int, values: Sequence[int]) -> int | None:
        """Write holding registers starting at `address`."""
        ...


def valid_span(table: RegisterTable, address: int, count: int) -> bool:
    """True if [address, address + count) lies inside one block of `table`."""
    return any(b.table is table and b.address <= address and address + count <= b.address + b.count
               for b in BLOCKS if count > 0) or (
        # The command and config blocks are adjacent: a write or read may span both.
        table is RegisterTable.HOLDING and count > 0 and COMMAND.address <= address
        and address + count <= CONFIG.address + CONFIG.count)


# ---- documentation ----------------------------------------------------------------------------
def markdown_table(block: Block) -> str:
    """The block as a Markdown table (docs/device-protocol.md embeds these verbatim)."""
    lines = ["| Address | Name | Type | Regs | Unit / scale | Description |",
             "|---:|---|---|---:|---|---|"]
    for f in block.fields:
        unit = f.unit if f.scale == 1 else f"{f.scale:g} {f.unit}"
        kind = f.kind.value + (" (invalid = sentinel)" if f.invalid else "")
        lines.append(f"| {f.address} | `{f.name}` | {kind} | {f.count} | {unit} | {f.doc} |")
    return "\n".join(lines)
