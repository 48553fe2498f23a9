"""Device URL options (`modbus://HOST:PORT?io_timeout_s=..&watchdog_ms=..&rate_hz=..`):
parsed, range-checked, refused with a clear error when unknown or out of range, and applied
to the link against a real served table on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spinedecomp.cli.app import _register_all, app
from spinedecomp.core.errors import DeviceError
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device.factory import URL_OPTIONS, open_table, parse_modbus_url
from spinedecomp.device.modbus import ModbusTable
from spinedecomp.device.modbus_adapter import ModbusClient
from spinedecomp.device.served import ServedSimulator

from .helpers import MODEL

DOC = Path(__file__).resolve().parents[2] / "docs" / "device-protocol.md"
runner = CliRunner()


def test_options_are_parsed() -> None:
    u = parse_modbus_url("modbus://10.0.0.7:502?io_timeout_s=0.05&watchdog_ms=250&rate_hz=100")
    assert (u.host, u.port, u.io_timeout_s, u.watchdog_ms, u.rate_hz) == (
        "10.0.0.7", 502, 0.05, 250, 100.0)
    u = parse_modbus_url("modbus://127.0.0.1:5020")
    assert (u.io_timeout_s, u.watchdog_ms, u.rate_hz) == (None, None, None)


@pytest.mark.parametrize(("query", "message"), [
    ("io_timeout_s=", "option 'io_timeout_s' has no value"),
    ("io_timout_s=0.05", "unknown option 'io_timout_s'"),
    ("watchdog_ms=10", "watchdog_ms=10 is out of range (allowed 20-2000"),
    ("watchdog_ms=2001", "out of range"),
    ("watchdog_ms=1e3", "is not an integer"),
    ("io_timeout_s=0", "out of range (allowed 0.005-1"),
    ("io_timeout_s=nan", "out of range"),
    ("io_timeout_s=inf", "out of range"),
    ("io_timeout_s=fast", "is not a number"),
    ("rate_hz=20", "rate_hz=20 is out of range (allowed 50-5000"),
    ("rate_hz=100&rate_hz=100", "given twice"),
    ("io_timeout_s=0.2", "must be shorter than watchdog_ms=100"),
    ("io_timeout_s=0.2&watchdog_ms=150", "must be shorter than watchdog_ms=150"),
    ("rate_hz=50&watchdog_ms=40", "shorter than three control periods"),
    ("watchdog_ms", "malformed options"),
])
def test_unknown_or_out_of_range_options_are_refused(query: str, message: str) -> None:
    url = f"modbus://127.0.0.1:1?{query}"
    with pytest.raises(DeviceError, match=re.escape(message)):
        parse_modbus_url(url)
    # Refused before any connection is tried (port 1 would be unreachable).
    with pytest.raises(DeviceError, match=re.escape(message)):
        open_table(url, MODEL)


@pytest.mark.parametrize("url", ["modbus://host", "modbus://host:0", "modbus://host:1/path",
                                 "modbus://user@host:1", "modbus://host:70000",
                                 "modbus://host:1#frag"])
def test_malformed_addresses_are_refused(url: str) -> None:
    with pytest.raises(DeviceError, match="expected modbus://HOST:PORT"):
        parse_modbus_url(url)


def test_options_set_the_link_and_the_tables_watchdog(served: ServedSimulator) -> None:
    table = open_table(f"{served.url}?io_timeout_s=0.05&watchdog_ms=250", MODEL)
    try:
        assert isinstance(table, ModbusTable)
        assert table.policy.io_timeout_s == 0.05 and table.policy.watchdog_ms == 250
        c = ModbusClient("127.0.0.1", served.port, timeout_s=1.0)
        c.open()
        try:
            assert c.read_holding(mr.CONFIG.address, 1) == [250]  # written at connect
        finally:
            c.close()
        assert served.table.status().watchdog_s == 0.25
    finally:
        table.close()


def test_every_option_is_documented() -> None:
    text = DOC.read_text()
    for opt in URL_OPTIONS:
        assert f"| `{opt.name}` | {opt.lo:g}-{opt.hi:g} |" in text, opt.name


def said(r: object) -> str:
    """The CLI's stderr with the console's line wrapping undone."""
    return " ".join(str(getattr(r, "stderr", "")).split())


def test_cli_refuses_a_bad_option_and_a_rate_that_disagrees() -> None:
    _register_all()
    r = runner.invoke(app, ["session", "simulate", "-p", "lumbar-static", "-w", "80",
                            "--device", "modbus://127.0.0.1:1?watchdog_ms=5", "--no-store"])
    assert r.exit_code == 2 and "watchdog_ms=5 is out of range" in said(r)
    r = runner.invoke(app, ["session", "simulate", "-p", "lumbar-static", "-w", "80",
                            "--device", "modbus://127.0.0.1:1?rate_hz=100", "--rate-hz", "200",
                            "--no-store"])
    assert r.exit_code == 2 and "disagrees with the device URL's rate_hz=100" in said(r)
    r = runner.invoke(app, ["device", "probe", "modbus://127.0.0.1:1?io_timeout_s="])
    assert r.exit_code == 2 and "has no value" in said(r)
