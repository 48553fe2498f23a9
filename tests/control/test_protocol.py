"""Protocols as data: the built-in library and validation that names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinedecomp.control.library import angle_for_level, builtin_protocols, get_protocol
from spinedecomp.control.protocol import load_protocol_file, parse_protocol, resolve
from spinedecomp.core.errors import ProtocolError
from spinedecomp.core.units import Region, lb_to_n, limits_for
from tests.helpers import proto

REQUIRED = ("lumbar-intermittent", "lumbar-static", "lumbar-progressive", "cervical-intermittent",
            "first-session-conservative")


def test_library_has_the_required_protocols_and_all_resolve() -> None:
    lib = builtin_protocols()
    for name in REQUIRED:
        assert name in lib
    modes = {p.mode.value for p in lib.values()}
    assert modes == {"static", "intermittent", "progressive", "regressive", "cyclic"}
    for p in lib.values():
        assert p.source, f"{p.name} has no source"
        for w in (45.0, 80.0, 160.0):
            r = resolve(p, w)
            lim = limits_for(p.region)
            assert 0 < r.max_force_n <= r.cap_n <= lim.force.safe.hi


def test_first_session_is_capped_at_40_lb_and_cannot_be_raised() -> None:
    r = resolve(get_protocol("first-session-conservative"), 120.0)
    assert r.max_force_n == pytest.approx(lb_to_n(40.0))
    assert r.cap_n == pytest.approx(r.max_force_n)


def test_percent_of_body_weight_and_rest_as_percent_of_max() -> None:
    r = resolve(get_protocol("lumbar-intermittent"), 80.0)
    assert r.max_force_n == pytest.approx(0.45 * 80 * 9.80665)
    assert r.rest_force_n == pytest.approx(0.5 * r.max_force_n)


@pytest.mark.parametrize(
    ("over", "weight", "field", "fragment"),
    [
        ({"rest_force": {"value": 400, "unit": "N"}, "max_force": {"value": 300, "unit": "N"}},
         80, "rest_force", "below max_force"),
        ({"max_force": {"value": 250, "unit": "lb"}}, 80, "max_force", "safe range"),
        ({"region": "cervical", "max_force": {"value": 60, "unit": "lb"}, "angle_deg": 20}, 80,
         "max_force", "cervical safe range"),
        ({}, -3, "body_weight_kg", "25-300 kg"),
        ({}, 900, "body_weight_kg", "25-300 kg"),
        ({"hold_s": 0}, 80, "hold_s", "1-99 s"),
        ({"rest_s": 150}, 80, "rest_s", "1-99 s"),
        ({"angle_deg": 45}, 80, "angle_deg", "0-30 deg"),
        ({"duration_min": 0.2}, 80, "duration_min", "1-99 min"),
    ],
)
def test_invalid_protocols_name_the_field_and_range(over: dict[str, object], weight: float,
                                                     field: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        resolve(proto(**over), weight)
    assert ei.value.field == field
    assert fragment in str(ei.value)


def test_unknown_mode_and_unknown_field_are_named() -> None:
    with pytest.raises(ProtocolError) as ei:
        proto(mode="wobble")
    assert ei.value.field == "mode"
    assert "static" in str(ei.value)
    with pytest.raises(ProtocolError) as ei2:
        proto(max_forse={"value": 1})
    assert ei2.value.field == "max_forse"


def test_cyclic_needs_an_oscillation() -> None:
    with pytest.raises(ProtocolError) as ei:
        proto(mode="cyclic")
    assert ei.value.field == "oscillation"


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("name: mine\nregion: lumbar\nmode: static\nmax_force: {value: 200, unit: N}\n")
    assert load_protocol_file(y).max_force.value == 200
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"name": "j", "region": "cervical", "mode": "intermittent",
                             "max_force": {"value": 20, "unit": "lb"}, "angle_deg": 15}))
    assert load_protocol_file(j).region is Region.CERVICAL
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProtocolError) as ei:
        load_protocol_file(bad)
    assert ei.value.field == "file"


def test_angle_by_spinal_level() -> None:
    assert angle_for_level(Region.CERVICAL, "C2") == 10.0
    assert angle_for_level(Region.CERVICAL, "C4") == 15.0
    assert 20.0 <= angle_for_level(Region.CERVICAL, "C6") <= 30.0
    assert angle_for_level(Region.LUMBAR, "L5-S1") > angle_for_level(Region.LUMBAR, "L2")
    with pytest.raises(ProtocolError):
        angle_for_level(Region.LUMBAR, "C5")


@settings(max_examples=200, deadline=None)
@given(value=st.floats(min_value=0.0, max_value=400.0), unit=st.sampled_from(["N", "lb", "%bw"]),
       weight=st.floats(min_value=25.0, max_value=300.0),
       region=st.sampled_from(["lumbar", "cervical"]))
def test_resolved_protocols_never_exceed_the_region_limits(value: float, unit: str, weight: float,
                                                           region: str) -> None:
    try:
        p = parse_protocol({"name": "h", "region": region, "mode": "intermittent",
                            "max_force": {"value": value, "unit": unit}, "angle_deg": 15})
        r = resolve(p, weight)
    except ProtocolError:
        return
    lim = limits_for(Region(region))
    assert r.cap_n <= lim.force.safe.hi
    assert r.cap_n <= lim.force.absolute.hi
    assert r.rest_force_n < r.max_force_n
