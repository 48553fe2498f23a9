"""Choosing a table is explicit configuration: the simulator by name, a real table by URL.

A table that cannot be reached is an error, never a silent fallback to the simulator.
"""

from __future__ import annotations

from urllib.parse import urlparse

from spinedecomp.core.errors import DeviceError
from spinedecomp.device.simulated import PatientModel, SimulatedTable
from spinedecomp.device.table import Table

SIMULATOR = "sim"


def open_table(device: str, model: PatientModel, *, angle_deg: float = 0.0) -> Table:
    """Open the table named by `device`: 'sim' (the simulator) or 'modbus://HOST:PORT'."""
    if device == SIMULATOR:
        return SimulatedTable(model, angle_deg=angle_deg)
    url = urlparse(device)
    if url.scheme == "modbus":
        if not url.hostname or not url.port:
            raise DeviceError(f"device '{device}': expected modbus://HOST:PORT")
        from spinedecomp.device.modbus import ModbusTable

        return ModbusTable.connect(url.hostname, url.port)
    raise DeviceError(f"device '{device}': unknown; use '{SIMULATOR}' or modbus://HOST:PORT")
