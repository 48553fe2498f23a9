"""Telemetry export to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from spinedecomp.session.telemetry import COLUMNS


def write_telemetry(tel: npt.NDArray[np.float64], path: Path, fmt: str) -> Path:
    """Write telemetry rows as CSV or Parquet (one column per field, units in the names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        np.savetxt(path, tel, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.6g")
        return path
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: tel[:, i] for i, name in enumerate(COLUMNS)})
        pq.write_table(table, path, compression="zstd")
        return path
    raise ValueError(f"format must be csv or parquet, got {fmt}")


def read_telemetry(path: Path) -> npt.NDArray[np.float64]:
    """Read back telemetry written by `write_telemetry`."""
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return np.column_stack([table.column(n).to_numpy() for n in COLUMNS])
