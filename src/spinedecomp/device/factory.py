"""Choosing a table is explicit configuration: the simulator by name, a real table by URL.

A table that cannot be reached is an error, never a silent fallback to the simulator.

A Modbus table is `modbus://HOST:PORT` with optional link settings in the query string
(docs/device-protocol.md section 5.5):

    modbus://10.0.0.7:502?io_timeout_s=0.05&watchdog_ms=250&rate_hz=100

Every option is checked against its documented range; an unknown, repeated, empty or
out-of-range option is refused with a `DeviceError` naming it, never ignored (a typo in a
safety setting must not silently leave the default in place).
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlparse

from spinedecomp.core.errors import DeviceError
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import Table

if TYPE_CHECKING:  # the driver pulls in pymodbus: imported only when a Modbus table is used
    from spinedecomp.device.modbus import LinkPolicy

log = logging.getLogger(__name__)
SIMULATOR = "sim"


PYTHON_PREFIX = "python:"
MODBUS_SCHEME = "modbus"


@dataclass(frozen=True)
class UrlOption:
    """One `modbus://` query option: its documented range and meaning."""

    name: str
    lo: float
    hi: float
    integer: bool
    doc: str


# The single source of the options and their ranges; docs/device-protocol.md section 5.5
# lists the same (a test checks every option is documented).
URL_OPTIONS: tuple[UrlOption, ...] = (
    UrlOption("io_timeout_s", 0.005, 1.0, False,
              "each transaction in the control loop and each reconnect attempt; must be "
              "shorter than watchdog_ms"),
    UrlOption("watchdog_ms", 20, 2000, True,
              "written to the table's WATCHDOG_MS at connect; at least 3 control periods"),
    UrlOption("rate_hz", 50.0, 5000.0, False,
              "control rate for this table (`session simulate` uses it unless --rate-hz is "
              "given; the two must agree)"),
)
_OPTIONS = {o.name: o for o in URL_OPTIONS}


@dataclass(frozen=True)
class ModbusUrl:
    """A parsed and validated `modbus://HOST:PORT?options` device URL."""

    host: str
    port: int
    io_timeout_s: float | None = None
    watchdog_ms: int | None = None
    rate_hz: float | None = None

    @property
    def address(self) -> str:
        """modbus://HOST:PORT without the options."""
        return f"modbus://{self.host}:{self.port}"


def _option(device: str, name: str, raw: str) -> float:
    opt = _OPTIONS.get(name)
    if opt is None:
        raise DeviceError(f"device '{device}': unknown option '{name}'; known options: "
                          f"{', '.join(_OPTIONS)} (docs/device-protocol.md, section 5.5)")
    rng = (f"{opt.lo:g}-{opt.hi:g}")
    try:
        value = int(raw, 10) if opt.integer else float(raw)
    except ValueError:
        raise DeviceError(f"device '{device}': option {name}='{raw}' is not "
                          f"{'an integer' if opt.integer else 'a number'} (allowed {rng})"
                          ) from None
    if not (math.isfinite(value) and opt.lo <= value <= opt.hi):
        raise DeviceError(f"device '{device}': option {name}={raw} is out of range "
                          f"(allowed {rng}: {opt.doc})")
    return value


def parse_modbus_url(device: str) -> ModbusUrl:
    """Parse and validate `modbus://HOST:PORT[?option=value&...]`; raise `DeviceError`
    naming the problem for anything else (no silent defaults for a mistyped option)."""
    url = urlparse(device)
    if url.scheme != MODBUS_SCHEME:
        raise DeviceError(f"device '{device}': expected modbus://HOST:PORT")
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.hostname or not port or url.path not in ("", "/") or url.fragment \
            or url.params or url.username or url.password:
        raise DeviceError(f"device '{device}': expected modbus://HOST:PORT[?option=value&...]")
    values: dict[str, float] = {}
    if url.query:
        try:
            pairs = parse_qsl(url.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise DeviceError(f"device '{device}': malformed options '{url.query}' (expected "
                              "name=value pairs joined by '&')") from None
        for name, raw in pairs:
            if name in values:
                raise DeviceError(f"device '{device}': option '{name}' given twice")
            if raw == "":
                raise DeviceError(f"device '{device}': option '{name}' has no value")
            values[name] = _option(device, name, raw)
    io_timeout = values.get("io_timeout_s")
    watchdog = values.get("watchdog_ms")
    rate = values.get("rate_hz")
    from spinedecomp.device.modbus import LinkPolicy

    pol = LinkPolicy()
    eff_io = io_timeout if io_timeout is not None else pol.io_timeout_s
    eff_wd = watchdog if watchdog is not None else pol.watchdog_ms
    # A reply allowed to take longer than the watchdog means the table releases before the
    # controller even knows a transaction was late: the timeout must be the shorter.
    if eff_io * 1000.0 >= eff_wd:
        raise DeviceError(f"device '{device}': io_timeout_s={eff_io:g} s must be shorter than "
                          f"watchdog_ms={eff_wd:g} ms")
    if rate is not None and eff_wd < 3000.0 / rate:
        # Fewer than three periods per watchdog would release the table on ordinary jitter.
        raise DeviceError(f"device '{device}': watchdog_ms={eff_wd:g} is shorter than three "
                          f"control periods at rate_hz={rate:g} ({3000.0 / rate:g} ms)")
    return ModbusUrl(url.hostname, port, io_timeout_s=io_timeout,
                     watchdog_ms=None if watchdog is None else int(watchdog), rate_hz=rate)


def load_python_table(device: str) -> Table:
    """Build a table in-process from `python:MODULE:FACTORY`: FACTORY is called with no
    arguments and must return an object implementing `Table` (docs/device-protocol.md)."""
    parts = device[len(PYTHON_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        raise DeviceError(f"device '{device}': expected python:MODULE:FACTORY")
    module_name, factory_name = parts
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DeviceError(f"device '{device}': cannot import module '{module_name}': {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise DeviceError(f"device '{device}': '{module_name}' has no callable '{factory_name}'")
    table = factory()
    if not isinstance(table, Table):
        missing = [m for m in ("info", "read", "write", "advance", "test_patient_switch",
                               "release", "close") if not hasattr(table, m)]
        raise DeviceError(f"device '{device}': {factory_name}() returned "
                          f"{type(table).__name__}, which does not implement Table "
                          f"(missing: {', '.join(missing)})")
    log.info("table %s built in-process by %s", table.info.name, device)
    return table


def open_table(device: str, model: PatientModel, *, angle_deg: float = 0.0) -> Table:
    """Open the table named by `device`: 'sim' (the simulator), 'modbus://HOST:PORT', or
    'python:MODULE:FACTORY' (a table maker's own `Table` in-process). A Modbus URL's options
    (`parse_modbus_url`) set the driver's link policy."""
    if device == SIMULATOR:
        return SimulatedTable(model, angle_deg=angle_deg)
    if device.startswith(PYTHON_PREFIX):
        return load_python_table(device)
    if urlparse(device).scheme == MODBUS_SCHEME:
        url = parse_modbus_url(device)
        from spinedecomp.device.modbus import ModbusTable

        return ModbusTable.connect(url.host, url.port, policy=link_policy(url))
    raise DeviceError(f"device '{device}': unknown; use '{SIMULATOR}', modbus://HOST:PORT or "
                      "python:MODULE:FACTORY")


def link_policy(url: ModbusUrl) -> LinkPolicy:
    """The driver's link policy with the URL's options applied over the defaults."""
    from spinedecomp.device.modbus import LinkPolicy

    pol = LinkPolicy()
    if url.io_timeout_s is not None:
        pol = replace(pol, io_timeout_s=url.io_timeout_s)
    if url.watchdog_ms is not None:
        pol = replace(pol, watchdog_ms=url.watchdog_ms)
    return pol
