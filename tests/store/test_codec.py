"""Chunk encoding, batches and the spool file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from spinedecomp.store.telemetry_codec import (
    ENC_ZLIB,
    ENC_ZSTD,
    AlarmAck,
    AlarmRow,
    Batch,
    EventRow,
    Finalization,
    Segment,
    WindowRow,
    decode_rows,
    encode_rows,
)
from spinedecomp.store.telemetry_writer import Spool


@pytest.mark.parametrize("encoding", [ENC_ZSTD, ENC_ZLIB])
def test_rows_round_trip_bit_for_bit(encoding: str) -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(1234, 14)) * 1e3
    rows[:, 0] = np.arange(1234) / 1000.0
    rows[5, 4] = np.nan
    rows[7, 9] = -np.inf
    back = decode_rows(encode_rows(rows, encoding), 1234, 14, encoding)
    assert back.dtype == np.float64 and back.shape == rows.shape
    assert np.array_equal(back.view(np.uint64), rows.view(np.uint64))  # same bits, NaN included
    assert len(encode_rows(np.zeros((1000, 14)), encoding)) < 1000  # constant columns pack to nothing


def test_decode_rejects_a_wrong_shape() -> None:
    data = encode_rows(np.ones((10, 14)), ENC_ZLIB)
    with pytest.raises(ValueError, match="expected"):
        decode_rows(data, 11, 14, ENC_ZLIB)


def _batch(seq: int) -> Batch:
    rows = np.arange(70.0).reshape(5, 14)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return Batch(session_id=3, seq=seq, wall_at=now, samples=50, last_t=0.05, state="running",
                 started_at=now, segments=[Segment.of("clinical", rows, 100.0),
                                           Segment.of("fullrate", rows[:2], 1000.0)],
                 events=[EventRow(1, 0.0, "edit", "dr: more", "max_force_n", 100.0, float("nan"), now)],
                 alarms=[AlarmRow(1, 0.01, "over-force", 5, "high", False, "too much", 1.0, None, "release")],
                 windows=[WindowRow("alarm", 0.01, 0.0, 5.01, "high alarm")],
                 final=Finalization("aborted", "over-force", {"a": [1, 2]}, now, "dr", [AlarmAck(1, "dr")]))


def test_batch_round_trip() -> None:
    b = _batch(7)
    back = Batch.from_bytes(b.to_bytes())
    assert back.segments == b.segments and back.final == b.final and back.alarms == b.alarms
    assert back.windows == b.windows and back.started_at == b.started_at and back.seq == 7
    assert back.events[0].new is not None and np.isnan(back.events[0].new)
    assert np.array_equal(back.segments[0].rows(), np.arange(70.0).reshape(5, 14))


def test_spool_keeps_complete_records_and_ignores_a_torn_tail(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s" / "session-3.spool", max_bytes=1 << 20)
    for seq in (1, 2, 3):
        spool.append(_batch(seq).to_bytes())
    with open(spool.path, "ab") as f:  # a crash in the middle of an append
        f.write(b"SDSP\xff\x00\x00\x00partial")
    assert [Batch.from_bytes(p).seq for p in spool.records()] == [1, 2, 3]
    assert not Spool(tmp_path / "none", 10).fits(100)
    spool.remove()
    assert list(spool.records()) == [] and spool.size == 0
