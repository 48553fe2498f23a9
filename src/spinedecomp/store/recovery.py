"""Start-up recovery: what a process that died (SIGKILL, power cut) left behind.

1. Spool files of sessions whose writer is gone are written to the database (exactly once:
   each batch carries a sequence number the session row remembers) and then removed.
2. Sessions still open whose process is gone are marked aborted with reason "process ended
   unexpectedly", with a final event; their telemetry is compacted.

"Gone" is decided without guessing where possible: a running writer holds an exclusive
``flock`` on ``<data_dir>/run/<db>/session-<id>.lock`` (the kernel drops it when the process
dies, however it dies). For a session from another host (PostgreSQL shared by several
machines) only the heartbeat can tell: it is taken as dead once `stale_after_s` old.

``<db>`` is the database's key (`database_key`): session ids are only unique within one
database, so two databases sharing a data directory each have their own lock and spool
files. A spool file is named after its session's id *and* creation time
(``spool/<db>/session-<id>-<created_at in µs>.spool``) and is only written back into the
session row created at that time: a database file deleted or replaced at the same path
starts its ids again, and its session 1 is another patient's session. A spool whose row
does not match is set aside as ``*.spool.orphaned``, never written. Spool files left at the
old place, ``<data_dir>/spool/session-<id>.spool`` (before the key), are still written on
start as they were then.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spinedecomp.store.api import Store, is_unavailable
from spinedecomp.store.models import utcnow
from spinedecomp.store.repositories import CRASH_REASON, NotFound, SessionRecord
from spinedecomp.store.settings import StoreSettings
from spinedecomp.store.telemetry_codec import Batch

log = logging.getLogger(__name__)

ACTOR = "system:recovery"


def lock_path(settings: StoreSettings, key: str, session_id: int) -> Path:
    """The lock file a running session's writer holds (`key`: the database's `Store.key`)."""
    return settings.data_dir / "run" / key / f"session-{session_id}.lock"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPOOL_NAME = re.compile(r"session-(\d+)(?:-(\d+))?\.spool")


def _stamp(at: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def spool_path(settings: StoreSettings, key: str, session: SessionRecord) -> Path:
    """The spool file of a session's writer (`key`: the database's `Store.key`)."""
    return settings.spool_dir / key / f"session-{session.id}-{_stamp(session.created_at)}.spool"


def legacy_lock_path(settings: StoreSettings, session_id: int) -> Path:
    """Where versions before the database key kept a session's lock file."""
    return settings.data_dir / "run" / f"session-{session_id}.lock"



def this_host() -> str:
    """The name sessions record as their host."""
    return socket.gethostname()


def lock_is_held(path: Path) -> bool:
    """True if some process holds the flock on `path` (False if the file is absent)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock, if we got it
    return False


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_alive(rec: SessionRecord, settings: StoreSettings, key: str) -> bool:
    """Is the process running this session (of the database `key`) still there?"""
    if rec.host == this_host():
        lock = lock_path(settings, key, rec.id)
        if lock.exists():
            return lock_is_held(lock)
        # lock file elsewhere (another data dir): fall back on the pid and the heartbeat
        if not pid_alive(rec.pid) or rec.pid == os.getpid():
            return False
    seen = rec.last_seen_at or rec.created_at
    return utcnow() - seen < timedelta(seconds=settings.stale_after_s)


@dataclass
class RecoveryReport:
    """What the start-up recovery did."""

    replayed: list[int] = field(default_factory=list)
    aborted: list[int] = field(default_factory=list)
    skipped_alive: list[int] = field(default_factory=list)


def replay_spool(store: Store, path: Path, actor: str = ACTOR) -> int:
    """Write a spool file's batches to the database; returns batches applied. The file is
    removed only once every batch is in."""
    from spinedecomp.store.telemetry_writer import Spool

    spool = Spool(path, max_bytes=1 << 62)
    applied = 0
    for payload in spool.records():
        batch = Batch.from_bytes(payload)
        with store.unit(actor) as uow:
            if uow.telemetry.write_batch(batch):
                applied += 1
                if batch.final is not None:
                    uow.sessions.finalize(batch.session_id, batch.final,
                                          reason=f"session {batch.final.end_state} (written from "
                                          "the spool after a database outage)")
    spool.remove()
    return applied


def _same_session(store: Store, path: Path, sid: int, stamp: int) -> bool:
    """Is session `sid` of this database the one the spool was written for? If not, the
    spool is set aside (``.orphaned``) and False returned. Raises NotFound if there is no
    such session."""
    with store.unit(ACTOR) as uow:
        rec = uow.sessions.get(sid)
    if _stamp(rec.created_at) == stamp:
        return True
    kept = path.with_name(path.name + ".orphaned")
    path.replace(kept)
    log.error("spool %s was written for a session %d created at %s, but session %d of %s was "
              "created at %s (the database file was replaced?): not written, kept as %s", path,
              sid, (_EPOCH + timedelta(microseconds=stamp)).isoformat(), sid, store.display_url,
              rec.created_at.isoformat(), kept)
    return False


def recover_sessions(store: Store) -> RecoveryReport:
    """Run the start-up recovery (see module docstring)."""
    report = RecoveryReport()
    settings = store.settings
    # spool, session id, creation stamp (None: an old unkeyed spool), its writer's lock
    spools: list[tuple[Path, int, int | None, Path]] = []
    for folder, keyed in ((settings.spool_dir / store.key, True), (settings.spool_dir, False)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("session-*.spool")):
            m = _SPOOL_NAME.fullmatch(path.name)
            if m is None or keyed != (m.group(2) is not None):
                continue
            sid = int(m.group(1))
            spools.append((path, sid, None if m.group(2) is None else int(m.group(2)),
                           lock_path(settings, store.key, sid) if keyed
                           else legacy_lock_path(settings, sid)))
    for path, sid, stamp, lock in spools:
        if lock_is_held(lock):
            continue  # its writer is alive and will write it itself
        try:
            if stamp is not None and not _same_session(store, path, sid, stamp):
                continue
            n = replay_spool(store, path)
        except NotFound:
            log.error("spool %s belongs to session %d, which is not in %s: kept", path, sid,
                      store.display_url)
            continue
        except Exception as exc:
            if is_unavailable(exc):
                raise
            log.exception("spool %s could not be written: kept for a later attempt", path)
            continue
        report.replayed.append(sid)
        log.warning("session %d: %d spooled telemetry batch(es) written after an outage", sid, n)
    with store.unit(ACTOR) as uow:
        open_sessions = uow.sessions.open_sessions()
    for rec in open_sessions:
        if session_alive(rec, settings, store.key):
            report.skipped_alive.append(rec.id)
            continue
        with store.unit(ACTOR) as uow:
            done = uow.sessions.mark_aborted(rec.id, CRASH_REASON)
        if done is None:
            continue
        report.aborted.append(rec.id)
        log.warning("session %d (%s, patient %d) aborted: %s; telemetry kept up to t=%.3f s",
                    rec.id, rec.protocol_name, rec.patient_id, CRASH_REASON, rec.last_t or 0.0)
        try:
            with store.unit(ACTOR) as uow:
                uow.telemetry.compact(rec.id, settings.chunk_s)
        except Exception:
            log.exception("session %d: telemetry compaction failed (data kept as written)", rec.id)
        lock_path(settings, store.key, rec.id).unlink(missing_ok=True)
    return report
