"""The telemetry writer: gets every block, event and alarm off the control loop and into the
database, in batches, without ever making the loop wait.

Control-loop side (`sink`, `event`, `alarm`): append to a deque and return; no lock, no I/O,
no allocation beyond the copy of the block.

Writer thread, every `flush_interval_s` (100 ms):
- the **clinical record**: every k-th row (k = control rate / `clinical_rate_hz`, e.g. 1 kHz
  / 100 Hz = 10), exact values, no averaging, plus the session's very last row;
- **black-box windows**: all rows from `blackbox_pre_s` before to `blackbox_post_s` after each
  alarm, clinician edit or command, pause/resume and injected fault (a ring buffer keeps the
  last seconds at full rate so the "before" part exists);
- events and alarms, a heartbeat (last seen, samples, last t, engine state);
all in one transaction per batch. Rows are at most one flush interval plus one commit old
when the process dies.

Database down: the batch goes to a local spool file (fsynced, CRC-checked records) and the
session carries on; the writer retries every `retry_s` and writes the spool in order when
the database is back (each batch exactly once). When the spool passes 90% of its capacity
the writer calls `on_storage_full` once (the recorder orders an operator-stop release with
the reason) and keeps the last 10% for the release; past 100% a batch cannot be kept and is
counted as lost (the batch's events, alarms and the session's end are still kept). The writer
also calls `on_storage_full` if it crashes.

Storage fault: an error that says the database's storage itself failed (`storage_fault`: a
SQLite file that cannot be written, is read-only, full, corrupt, or was deleted or replaced)
is not an outage to sit out: the writer calls `on_storage_full` at once, so the table is
released, and keeps the record in the spool as for an outage, to be written when the file can
be written again. A database file deleted or replaced is the exception: its batches are not
spooled (on the next start the spool would be written into whatever database is at the path
then, where this session id may be another patient's session); a spool the session already
had is renamed ``*.spool.replaced``, kept for an investigation and never replayed.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from spinedecomp.session.model import Alarm, Event
from spinedecomp.store.api import DatabaseReplaced, Store, storage_fault
from spinedecomp.store.models import utcnow
from spinedecomp.store.repositories import StoreError
from spinedecomp.store.settings import StoreSettings
from spinedecomp.store.telemetry_codec import (
    AlarmRow,
    Batch,
    EventRow,
    Finalization,
    Segment,
    WindowRow,
)

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

# Event kinds that open a black-box window (alarms always do, through `alarm`).
TRIGGER_KINDS = frozenset({"edit", "command", "fault", "rejected", "confirm"})
HEARTBEAT_S = 1.0
SPOOL_WARN_FRACTION = 0.9

_MAGIC = b"SDSP"
_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32


class Spool:
    """Append-only file of length-prefixed, CRC-checked records; fsynced on every append, so
    a crash during an outage keeps what was spooled. A torn last record is ignored."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes

    @property
    def size(self) -> int:
        """Bytes in the file now."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def fits(self, n: int) -> bool:
        """Would a payload of n bytes fit?"""
        return self.size + _HEAD.size + n <= self.max_bytes

    def append(self, payload: bytes) -> None:
        """Append one record and fsync."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(_HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> Iterator[bytes]:
        """Every complete record in order."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        pos = 0
        while pos + _HEAD.size <= len(data):
            magic, n, crc = _HEAD.unpack_from(data, pos)
            payload = data[pos + _HEAD.size:pos + _HEAD.size + n]
            if magic != _MAGIC or len(payload) != n or zlib.crc32(payload) != crc:
                log.error("spool %s: damaged record at byte %d ignored (torn write?)", self.path, pos)
                return
            yield payload
            pos += _HEAD.size + n

    def remove(self) -> None:
        """Delete the file (after every record is in the database)."""
        self.path.unlink(missing_ok=True)


class SessionLockError(StoreError):
    """The session's lock file cannot be created or is held by another process."""


def take_lock(path: Path, session_id: int) -> int:
    """Create and flock a session's lock file (writing our pid into it); returns its open
    descriptor. Raises `SessionLockError` with what went wrong, never a bare OSError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SessionLockError(f"session {session_id}: cannot create its lock file {path} "
                               f"({exc.strerror or exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        if isinstance(exc, BlockingIOError):
            raise SessionLockError(
                f"session {session_id}: its lock file {path} is held by another process"
                + (f" (pid {holder})" if holder.isdigit() else "") + "; two writers for one "
                "session would interleave its record") from exc
        raise SessionLockError(f"session {session_id}: cannot lock {path} "
                               f"({exc.strerror or exc})") from exc
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        os.close(fd)
        raise SessionLockError(f"session {session_id}: cannot write its lock file {path} "
                               f"({exc.strerror or exc})") from exc
    return fd


class WriterBackend(Protocol):
    """Where batches go (the store, or a test double that fails on purpose)."""

    def write(self, batch: Batch) -> None:
        """Apply one batch in one transaction; raise if the database is unavailable."""
        ...

    def compact(self, session_id: int) -> None:
        """Merge the session's small segments into chunks."""
        ...


@dataclass
class WriterStats:
    """What the writer did (for the recorder's report and the benchmarks)."""

    rows_in: int = 0
    clinical_rows: int = 0
    fullrate_rows: int = 0
    events: int = 0
    alarms: int = 0
    windows: int = 0
    batches_written: int = 0
    batches_spooled: int = 0
    batches_replayed: int = 0
    rows_lost: int = 0
    outages: int = 0
    storage_full: bool = False  # a release was ordered (spool full, storage fault, writer failed)
    fault: str | None = None  # the first storage fault (see module docstring)
    db_replaced: bool = False  # the database file was deleted or replaced: record not kept
    crashed: str | None = None
    spool_left: bool = False
    write_s_max: float = 0.0
    write_s_total: float = 0.0
    flush_lag_s_max: float = 0.0


@dataclass
class _Rows:
    block: F64


@dataclass
class _Ev:
    event: Event
    state: str | None
    wall: datetime


@dataclass
class _Al:
    alarm: Alarm


@dataclass
class _Close:
    final: Finalization | None


_Item = _Rows | _Ev | _Al | _Close


@dataclass
class _Pending:
    clinical: list[F64] = field(default_factory=list)
    fullrate: list[F64] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    alarms: list[AlarmRow] = field(default_factory=list)
    windows: list[WindowRow] = field(default_factory=list)


class TelemetryWriter:
    """Batches one session's telemetry, events and alarms into the store (see module doc)."""

    def __init__(self, backend: WriterBackend, session_id: int, *, rate_hz: float,
                 settings: StoreSettings, spool_path: Path, lock_path: Path | None = None,
                 on_storage_full: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.session_id = session_id
        self.rate_hz = rate_hz
        self.settings = settings
        self.k = max(1, round(rate_hz / settings.clinical_rate_hz))
        self.clinical_rate_hz = rate_hz / self.k
        self.spool = Spool(spool_path, settings.spool_max_bytes)
        self.lock_path = lock_path
        self.on_storage_full = on_storage_full
        self.stats = WriterStats()
        self._q: deque[_Item] = deque()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"telemetry-writer-{session_id}",
                                        daemon=True)
        self._lock_fd: int | None = None
        # writer-thread state
        self._pre_rows = max(1, math.ceil(settings.blackbox_pre_s * rate_hz) + 1)
        self._n = 0
        self._last_row: F64 | None = None
        self._last_kept = -1
        self._ring: deque[F64] = deque()
        self._ring_rows = 0
        self._p = _Pending()
        self._full_until = -math.inf
        self._full_through = -math.inf
        self._seq = 0
        self._ev_seq = 0
        self._al_seq = 0
        self._state: str | None = None
        self._started_at: datetime | None = None
        self._last_write = 0.0
        self._down_since: float | None = None
        self._next_retry = 0.0
        self._full_signalled = False
        self._oldest_unflushed: float | None = None
        self._final: Finalization | None = None

    # ---- control-loop side: never blocks -----------------------------------------------
    def sink(self, block: F64) -> None:
        """A telemetry block from the engine (copied: the engine may reuse its buffer)."""
        self._q.append(_Rows(block.copy()))

    def event(self, event: Event, state: str | None = None, wall: datetime | None = None) -> None:
        """An engine event, with the engine state right after it and its wall time (now)."""
        self._q.append(_Ev(event, state, wall or utcnow()))

    def alarm(self, alarm: Alarm) -> None:
        """An engine alarm."""
        self._q.append(_Al(alarm))

    # ---- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Take the session's lock file (crash detection) and start the writer thread.
        Raises `SessionLockError` if the lock cannot be taken (nothing started then)."""
        if self.lock_path is not None:
            self._lock_fd = take_lock(self.lock_path, self.session_id)
        self._thread.start()

    def close(self, final: Finalization | None = None, timeout_s: float = 60.0) -> WriterStats:
        """Write everything left (and the finalization), compact, stop the thread."""
        self._q.append(_Close(final))
        self._closing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("session %d: telemetry writer did not finish in %.0f s", self.session_id,
                      timeout_s)
        self.stats.spool_left = self.spool.size > 0
        if self._lock_fd is not None:
            if self.lock_path is not None:
                self.lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
        return self.stats

    @property
    def alive(self) -> bool:
        """True while the writer thread runs."""
        return self._thread.is_alive()

    # ---- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        next_flush = time.monotonic() + interval
        try:
            while True:
                self._closing.wait(max(0.0, next_flush - time.monotonic()))
                closed = self._drain()
                if closed:
                    self._flush(final=True)
                    self._finish()
                    return
                now = time.monotonic()
                if now >= next_flush:
                    self._flush()
                    next_flush = max(next_flush + interval, time.monotonic() + 0.2 * interval)
        except BaseException as exc:  # the session must hear about it: nothing is recorded now
            log.exception("session %d: telemetry writer failed", self.session_id)
            self.stats.crashed = f"{type(exc).__name__}: {exc}"
            self._signal_full(f"telemetry writer failed ({type(exc).__name__}): recording stopped")

    def _drain(self) -> bool:
        closed = False
        q = self._q
        # Consecutive blocks are joined and handled in one go: at 1 kHz in real time the engine
        # sends one row per period, and per-block Python work here would compete with the
        # control loop for the interpreter.
        blocks: list[F64] = []
        while q:
            item = q.popleft()
            if isinstance(item, _Rows):
                blocks.append(item.block)
                continue
            if blocks:
                self._rows(np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
                blocks = []
            if isinstance(item, _Ev):
                self._event(item)
            elif isinstance(item, _Al):
                self._alarm(item.alarm)
            else:
                self._final = item.final
                closed = True
        if blocks:
            self._rows(np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
        return closed

    def _rows(self, block: F64) -> None:
        n = block.shape[0]
        if n == 0:
            return
        if self._oldest_unflushed is None:
            self._oldest_unflushed = time.monotonic()
        k = self.k
        first = (-self._n) % k
        if first < n:
            kept = block[first::k]
            self._p.clinical.append(kept)
            self._last_kept = self._n + first + (kept.shape[0] - 1) * k
            self.stats.clinical_rows += kept.shape[0]
        self._n += n
        self.stats.rows_in += n
        self._last_row = block[-1]
        self._ring.append(block)
        self._ring_rows += n
        while self._ring and self._ring_rows - self._ring[0].shape[0] >= self._pre_rows:
            self._ring_rows -= self._ring.popleft().shape[0]
        if self._full_until > self._full_through:
            self._take_full(block)

    def _take_full(self, rows: F64, lo: float = -math.inf) -> None:
        t = rows[:, 0]
        m = (t > self._full_through) & (t <= self._full_until) & (t >= lo)
        if m.any():
            sel = rows[m]
            self._p.fullrate.append(sel)
            self._full_through = float(sel[-1, 0])
            self.stats.fullrate_rows += sel.shape[0]

    def _open_window(self, trigger: str, t: float, label: str) -> None:
        t_from = max(0.0, t - self.settings.blackbox_pre_s)
        t_to = t + self.settings.blackbox_post_s
        self._p.windows.append(WindowRow(trigger, t, t_from, t_to, label))
        self.stats.windows += 1
        self._full_until = max(self._full_until, t_to)
        for rows in self._ring:
            self._take_full(rows, lo=t_from)

    def _add_event(self, t: float, kind: str, reason: str, field_: str | None = None,
                   old: float | None = None, new: float | None = None,
                   wall: datetime | None = None) -> None:
        self._ev_seq += 1
        self._p.events.append(EventRow(self._ev_seq, t, kind, reason, field_, old, new, wall or utcnow()))
        self.stats.events += 1
        if self._oldest_unflushed is None:
            self._oldest_unflushed = time.monotonic()

    def _event(self, item: _Ev) -> None:
        ev = item.event
        self._add_event(ev.t, ev.kind, ev.reason, ev.field, ev.old, ev.new, item.wall)
        if item.state is not None:
            self._state = item.state
            if item.state == "running" and self._started_at is None:
                self._started_at = item.wall
        if ev.kind in TRIGGER_KINDS or (ev.kind == "state" and "paused" in ev.reason):
            label = f"{ev.kind}: {ev.reason}" + (f" ({ev.field} {ev.old} -> {ev.new})" if ev.field else "")
            self._open_window(ev.kind, ev.t, label)

    def _alarm(self, a: Alarm) -> None:
        self._al_seq += 1
        self._p.alarms.append(AlarmRow(self._al_seq, a.t, a.kind, a.code, a.priority.value, a.technical,
                                       a.condition, a.value, a.force_n, a.action))
        self.stats.alarms += 1
        self._open_window("alarm", a.t, f"{a.priority.value} alarm {a.kind}: {a.condition}")

    def _flush(self, final: bool = False) -> None:
        p = self._p
        if final and self._last_row is not None and self._last_kept != self._n - 1:
            p.clinical.append(self._last_row[None, :])  # the session's final state, always kept
            self._last_kept = self._n - 1
            self.stats.clinical_rows += 1
        now = time.monotonic()
        nothing = not (p.clinical or p.fullrate or p.events or p.alarms or p.windows)
        if nothing and not final and now - self._last_write < HEARTBEAT_S:
            return
        segments: list[Segment] = []
        if p.clinical:
            segments.append(Segment.of("clinical", np.concatenate(p.clinical), self.clinical_rate_hz))
        if p.fullrate:
            segments.append(Segment.of("fullrate", np.concatenate(p.fullrate), self.rate_hz))
        self._seq += 1
        batch = Batch(session_id=self.session_id, seq=self._seq, wall_at=utcnow(), samples=self._n,
                      last_t=None if self._last_row is None else float(self._last_row[0]),
                      state=self._state, started_at=self._started_at, segments=segments,
                      events=p.events, alarms=p.alarms, windows=p.windows,
                      final=self._final if final else None)
        self._p = _Pending()
        if self._oldest_unflushed is not None:
            self.stats.flush_lag_s_max = max(self.stats.flush_lag_s_max, now - self._oldest_unflushed)
            self._oldest_unflushed = None
        self._last_write = now
        self._deliver(batch)

    def _deliver(self, batch: Batch) -> None:
        if self.stats.db_replaced:
            self._lose(batch)
            return
        if self._down_since is not None:
            if batch.final is not None or time.monotonic() >= self._next_retry:
                self._replay()
            if self.stats.db_replaced:
                self._lose(batch)
                return
            if self._down_since is not None:
                self._to_spool(batch)
                return
        t0 = time.perf_counter()
        try:
            self.backend.write(batch)
        except Exception as exc:
            if self._fault(exc):
                self._lose(batch)
                return
            self._outage(exc)
            self._to_spool(batch)
            return
        dt = time.perf_counter() - t0
        self.stats.batches_written += 1
        self.stats.write_s_total += dt
        self.stats.write_s_max = max(self.stats.write_s_max, dt)

    def _fault(self, exc: Exception) -> bool:
        """Act on a storage fault (order the release, once); True if the database file was
        deleted or replaced (nothing more goes to it or to the spool)."""
        if isinstance(exc, DatabaseReplaced):
            self._replaced(str(exc))
            return True
        fault = storage_fault(exc)
        if fault is not None and self.stats.fault is None:
            self.stats.fault = f"the database cannot be written: {fault}"
            self._signal_full(self.stats.fault)
        return False

    def _replaced(self, what: str) -> None:
        if self.stats.db_replaced:
            return
        self.stats.db_replaced = True
        self.stats.fault = what
        self._down_since = None  # nothing to retry: the file this session wrote to is gone
        if self.spool.size:
            # Never replayed (see module docstring); kept for whoever investigates.
            kept = self.spool.path.with_name(self.spool.path.name + ".replaced")
            try:
                self.spool.path.replace(kept)
                log.error("session %d: its spool is kept as %s and not written back",
                          self.session_id, kept)
            except OSError:
                log.exception("session %d: could not set its spool aside", self.session_id)
        self._signal_full(f"{what}: the session's record cannot be kept")

    def _lose(self, batch: Batch) -> None:
        self.stats.rows_lost += batch.rows

    def _outage(self, exc: Exception) -> None:
        self.stats.outages += 1
        self._down_since = time.monotonic()
        self._next_retry = self._down_since + self.settings.retry_s
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if self.stats.fault is None:
            log.error("session %d: database unavailable (%s); the session goes on, telemetry "
                      "is spooled to %s", self.session_id, msg, self.spool.path)
        else:
            log.error("session %d: %s; telemetry is spooled to %s", self.session_id,
                      self.stats.fault, self.spool.path)
        t = float(self._last_row[0]) if self._last_row is not None else 0.0
        self._add_event(t, "storage", f"database unavailable ({msg}); telemetry spooled to "
                        f"{self.spool.path}")

    def _replay(self) -> None:
        n = 0
        try:
            for payload in self.spool.records():
                self.backend.write(Batch.from_bytes(payload))
                n += 1
        except Exception as exc:
            self._next_retry = time.monotonic() + self.settings.retry_s
            if self._fault(exc):
                return
            log.info("session %d: database still unavailable (%s)", self.session_id,
                     str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        self.spool.remove()
        self._down_since = None
        self.stats.batches_replayed += n
        log.warning("session %d: database back after %.1f s; %d spooled batch(es) written",
                    self.session_id, down_s, n)
        t = float(self._last_row[0]) if self._last_row is not None else 0.0
        self._add_event(t, "storage", f"database available again after {down_s:.1f} s; {n} spooled "
                        "batch(es) written")

    def _to_spool(self, batch: Batch) -> None:
        payload = batch.to_bytes()
        if not self.spool.fits(len(payload)):
            # Past capacity the telemetry rows go; the batch's events, alarms, windows and the
            # session's end (a few hundred bytes) are always kept.
            self.stats.rows_lost += batch.rows
            log.error("session %d: telemetry spool full (%d bytes): %d rows of batch %d not kept",
                      self.session_id, self.spool.size, batch.rows, batch.seq)
            self._signal_full("telemetry spool full while the database is unavailable")
            payload = replace(batch, segments=[]).to_bytes()
        self.spool.append(payload)
        self.stats.batches_spooled += 1
        if self.spool.size >= SPOOL_WARN_FRACTION * self.spool.max_bytes:
            self._signal_full("telemetry spool full while the database is unavailable")

    def _signal_full(self, reason: str) -> None:
        if self._full_signalled:
            return
        self._full_signalled = True
        self.stats.storage_full = True
        log.error("session %d: %s: ordering a release", self.session_id, reason)
        if self._last_row is not None or self._n == 0:
            t = float(self._last_row[0]) if self._last_row is not None else 0.0
            self._add_event(t, "storage", f"{reason}: release ordered")
        if self.on_storage_full is not None:
            try:
                self.on_storage_full(reason)
            except Exception:
                log.exception("session %d: storage-full callback failed", self.session_id)

    def _finish(self) -> None:
        if self.stats.db_replaced:
            log.error("session %d: %s: its record is not stored", self.session_id, self.stats.fault)
            return
        deadline = time.monotonic() + self.settings.close_retry_s
        while self._down_since is not None and time.monotonic() < deadline:
            self._next_retry = 0.0
            self._replay()
            if self._down_since is not None:
                time.sleep(min(self.settings.retry_s, 0.5))
        if self._down_since is not None:
            log.error("session %d: database still unavailable; %d bytes of telemetry stay in %s and "
                      "are written on the next start", self.session_id, self.spool.size, self.spool.path)
            return
        if self._p.events:  # the note about the database coming back, made after the last batch
            self._flush()
        try:
            self.backend.compact(self.session_id)
        except Exception:
            log.exception("session %d: telemetry compaction failed (rows kept as written)",
                          self.session_id)


class StoreBackend:
    """Writes batches through the store's repositories."""

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor

    def write(self, batch: Batch) -> None:
        """One transaction: the batch, and the session's end if it carries one. Raises
        `DatabaseReplaced` rather than write into a file that is no longer the database's."""
        self.store.check_file()
        with self.store.unit(self.actor) as uow:
            if uow.telemetry.write_batch(batch) and batch.final is not None:
                uow.sessions.finalize(batch.session_id, batch.final)

    def compact(self, session_id: int) -> None:
        """Merge segments into chunks of `chunk_s` seconds."""
        self.store.check_file()
        with self.store.unit(self.actor) as uow:
            uow.telemetry.compact(session_id, self.store.settings.chunk_s)
