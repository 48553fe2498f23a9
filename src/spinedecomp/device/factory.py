"""Choosing a table is explicit configuration: the simulator by name, a real table by URL.

A table that cannot be reached is an error, never a silent fallback to the simulator.
"""

from __future__ import annotations

import importlib
import logging
from urllib.parse import urlparse

from spinedecomp.core.errors import DeviceError
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import Table

log = logging.getLogger(__name__)
SIMULATOR = "sim"


PYTHON_PREFIX = "python:"


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
    'python:MODULE:FACTORY' (a table maker's own `Table` in-process)."""
    if device == SIMULATOR:
        return SimulatedTable(model, angle_deg=angle_deg)
    if device.startswith(PYTHON_PREFIX):
        return load_python_table(device)
    url = urlparse(device)
    if url.scheme == "modbus":
        if not url.hostname or not url.port:
            raise DeviceError(f"device '{device}': expected modbus://HOST:PORT")
        from spinedecomp.device.modbus import ModbusTable

        return ModbusTable.connect(url.hostname, url.port)
    raise DeviceError(f"device '{device}': unknown; use '{SIMULATOR}', modbus://HOST:PORT or "
                      "python:MODULE:FACTORY")
