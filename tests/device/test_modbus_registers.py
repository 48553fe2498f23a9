"""The register map as data: codecs, word order, sentinels, and the documentation page."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spinedecomp.control.config import envelope
from spinedecomp.core.units import Region
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.modbus import _dynamics

DOC = Path(__file__).resolve().parents[2] / "docs" / "device-protocol.md"


def test_word_and_byte_order_are_big_endian() -> None:
    # 1234.56 N = 123456 counts of 0.01 N = 0x0001_E240: high word first.
    f = mr.READINGS.field("FORCE_A")
    assert mr.pack(f, mr.to_counts(f, 1234.56)) == [0x0001, 0xE240]
    # -1.00 N = -100 counts = 0xFFFF_FF9C (two's complement).
    assert mr.pack(f, mr.to_counts(f, -1.0)) == [0xFFFF, 0xFF9C]
    a = mr.READINGS.field("ANGLE")
    assert mr.pack(a, mr.to_counts(a, -2.5)) == [0xFF06]
    assert mr.encode_text(mr.IDENTITY.field("FIRMWARE"), "AB")[:2] == [0x4142, 0x0000]


def test_nan_is_the_sentinel_and_values_never_collide_with_it() -> None:
    f = mr.READINGS.field("FORCE_B")
    assert mr.pack(f, mr.to_counts(f, math.nan)) == [0x8000, 0x0000]
    assert math.isnan(mr.from_counts(f, mr.unpack(f, [0x8000, 0x0000])))
    # A huge negative value saturates one count above the sentinel.
    assert mr.to_counts(f, -1e12) == -0x7FFF_FFFF
    g = mr.READINGS.field("GUARDING")
    assert mr.to_counts(g, math.nan) == 0xFFFF
    assert mr.to_counts(g, 1e9) == 0xFFFE
    with pytest.raises(ValueError):
        mr.to_counts(mr.COMMAND.field("VELOCITY"), math.nan)


finite = st.floats(min_value=-2000.0, max_value=2000.0, allow_nan=False)


@given(fa=finite, fb=finite, x=finite, ang=st.floats(-30, 40), sample=st.integers(0, 2**32 - 1),
       faults=st.integers(0, 0xFFFF), sw=st.integers(0, 1))
def test_readings_roundtrip(fa: float, fb: float, x: float, ang: float, sample: int, faults: int,
                            sw: int) -> None:
    r = mr.Readings(sample=sample, force_a_n=fa, force_b_n=fb, position_mm=x, angle_deg=ang,
                    switch_a=sw, switch_b=1 - sw, motor_state=mr.MotorState.ENABLED,
                    faults=faults, heartbeat_echo=77, uptime_ms=123456, force_true_n=math.nan)
    regs = mr.encode_readings(r)
    assert len(regs) == mr.READINGS.count
    assert all(0 <= v <= 0xFFFF for v in regs)
    back = mr.decode_readings(regs)
    assert back.sample == sample and back.faults == faults and back.switch_a == sw
    assert back.force_a_n == pytest.approx(fa, abs=0.005)
    assert back.force_b_n == pytest.approx(fb, abs=0.005)
    assert back.position_mm == pytest.approx(x, abs=0.005)
    assert back.angle_deg == pytest.approx(ang, abs=0.005)
    assert math.isnan(back.force_true_n) and math.isnan(back.guarding)


@given(v=st.floats(-150, 150), ang=st.floats(-2, 35), hb=st.integers(0, 0xFFFF))
def test_command_roundtrip(v: float, ang: float, hb: int) -> None:
    c = mr.Command(heartbeat=hb, control=int(mr.Control.ENABLE), velocity_mm_s=v, angle_deg=ang)
    back = mr.decode_command(mr.encode_command(c))
    assert back.heartbeat == hb and back.control == mr.Control.ENABLE and back.mode == 0
    assert back.velocity_mm_s == pytest.approx(v, abs=0.005)
    assert back.angle_deg == pytest.approx(ang, abs=0.005)


def test_identity_roundtrip() -> None:
    ident = mr.Identity(capabilities=int(mr.Capability.LUMBAR | mr.Capability.SIMULATED),
                        force_limit_n=980.67, angle_min_deg=-2.0, angle_max_deg=35.0,
                        travel_max_mm=300.0, velocity_max_mm_s=100.0, sample_rate_hz=1000,
                        name="Acme Decompress 3000 with a very long model name", firmware="1.2.3",
                        serial="SN-42")
    back = mr.decode_identity(mr.encode_identity(ident))
    assert back.magic == mr.MAGIC and back.map_version == mr.MAP_VERSION
    assert back.name == ident.name[:mr.NAME_CHARS] and back.firmware == "1.2.3"
    assert back.has(mr.Capability.LUMBAR) and not back.has(mr.Capability.CERVICAL)
    assert back.force_limit_n == pytest.approx(980.67)
    # Nothing declared about the drive: the sentinel, read back as "not declared".
    assert math.isnan(back.motor_lag_s) and math.isnan(back.transport_delay_s)
    assert _dynamics(back) is None


def test_declared_drive_dynamics_roundtrip_including_a_zero_delay() -> None:
    """A table declares its drive in identity registers 144-146; a declared 0 ms delay is a
    declaration (not "unknown"), and what is left out stays the worst case."""
    base = mr.Identity(capabilities=int(mr.Capability.LUMBAR), force_limit_n=900.0,
                       angle_min_deg=0.0, angle_max_deg=30.0, travel_max_mm=300.0,
                       velocity_max_mm_s=100.0, sample_rate_hz=500, name="T", firmware="1",
                       serial="S", motor_lag_s=0.0234, transport_delay_s=0.0)
    dyn = _dynamics(mr.decode_identity(mr.encode_identity(base)))
    assert dyn is not None
    assert dyn.motor_lag_s == pytest.approx(0.0234, abs=1e-4)
    assert dyn.transport_delay_s == 0.0
    assert dyn.stiffness_max_n_per_mm is None
    env = envelope(Region.LUMBAR, dyn.motor_lag_s, dyn.transport_delay_s,
                   dyn.stiffness_max_n_per_mm)
    assert env.stiffness_max_n_per_mm == 150.0 and env.transport_delay_s == 0.0


def test_blocks_are_contiguous_fit_one_transaction_and_do_not_overlap() -> None:
    for b in mr.BLOCKS:
        spans = sorted((f.address, f.address + f.count) for f in b.fields)
        assert spans[0][0] == b.address
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start == end, f"{b.name}: gap or overlap at {start}"
        assert b.count <= 123  # the smallest Modbus limit (function 16 writes)
    assert mr.READINGS.address + mr.READINGS.count <= mr.IDENTITY.address
    assert mr.valid_span(mr.RegisterTable.HOLDING, 0, mr.COMMAND.count + mr.CONFIG.count)
    assert not mr.valid_span(mr.RegisterTable.INPUT, mr.READINGS.count - 1, 2)
    assert not mr.valid_span(mr.RegisterTable.INPUT, 0, 0)


def test_watchdog_register_is_clamped() -> None:
    assert mr.watchdog_s(0) == pytest.approx(mr.WATCHDOG_DEFAULT_MS / 1000)
    assert mr.watchdog_s(5) == pytest.approx(mr.WATCHDOG_MIN_MS / 1000)
    assert mr.watchdog_s(60000) == pytest.approx(mr.WATCHDOG_MAX_MS / 1000)


def test_the_documentation_page_carries_the_map_exactly() -> None:
    """docs/device-protocol.md embeds the tables rendered from the code: the page a table maker
    implements from can never drift from what the driver speaks."""
    text = DOC.read_text(encoding="utf-8")
    for block in mr.BLOCKS:
        assert mr.markdown_table(block) in text, f"{block.name} table out of date in {DOC.name}"
    for enum in (mr.Control, mr.Fault, mr.MotorState, mr.Mode, mr.Capability):
        for member in enum:
            assert f"`{member.name}`" in text, f"{enum.__name__}.{member.name} not documented"
    assert f"{mr.MAGIC:#06x}" in text
