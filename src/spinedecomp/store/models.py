"""SQLAlchemy 2 models of the clinic's records.

Clinical documents (intake, screening decision, plan, cost estimate, visit, side effect,
outcome) are stored whole as JSON next to the few fields that are indexed or listed, so the
schema does not follow every detail of the clinic models. Sessions keep their protocol, end
state and summary; their events, alarms and telemetry chunks are rows of their own.

Changing a model means a new Alembic revision in `spinedecomp/store/migrations/versions/`;
`tests/store/test_migrations.py` fails when the models and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Doc = dict[str, Any]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store only accepts timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for the big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Blob = LargeBinary().with_variant(BYTEA(), "postgresql")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic batch mode on SQLite needs them)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Doc: JSONDoc, date: Date()}  # noqa: RUF012


def _now_col() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class Patient(Base):
    """A patient. `code` is the clinic's own patient number."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date | None]
    sex: Mapped[str | None] = mapped_column(String(16))
    body_weight_kg: Mapped[float | None] = mapped_column(Float)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = _now_col()
    updated_at: Mapped[datetime] = _now_col()


class Intake(Base):
    """An intake (history, diagnoses, questionnaires) as recorded before screening."""

    __tablename__ = "intakes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    recorded_at: Mapped[datetime] = _now_col()
    region: Mapped[str | None] = mapped_column(String(16))
    document: Mapped[Doc]


class ScreeningDecision(Base):
    """A screening decision (candidacy, pathway and reasons)."""

    __tablename__ = "screening_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    intake_id: Mapped[int | None] = mapped_column(ForeignKey("intakes.id"))
    decided_at: Mapped[datetime] = _now_col()
    outcome: Mapped[str] = mapped_column(String(40))
    pathway: Mapped[str | None] = mapped_column(String(60))
    document: Mapped[Doc]


class CoursePlan(Base):
    """A course of sessions planned for a patient."""

    __tablename__ = "course_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("screening_decisions.id"))
    created_at: Mapped[datetime] = _now_col()
    region: Mapped[str | None] = mapped_column(String(16))
    protocol_name: Mapped[str | None] = mapped_column(String(80))
    sessions_planned: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(20), default="planned")
    document: Mapped[Doc]


class CostEstimate(Base):
    """A cost estimate shown to the patient."""

    __tablename__ = "cost_estimates"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("course_plans.id"))
    created_at: Mapped[datetime] = _now_col()
    total: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(3))
    payer: Mapped[str | None] = mapped_column(String(40))
    document: Mapped[Doc]


class TreatmentSession(Base):
    """One session on a table: protocol, end state, summary, crash-detection heartbeat.

    `state` is the engine's state while it runs and `completed` or `aborted` at the end; a
    session whose process died is set to `aborted` with reason "process ended unexpectedly"
    on the next start (see `spinedecomp.store.recovery`).
    """

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("course_plans.id"))
    protocol_name: Mapped[str] = mapped_column(String(80))
    region: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(20))
    body_weight_kg: Mapped[float] = mapped_column(Float)
    rate_hz: Mapped[float] = mapped_column(Float)
    clinical_rate_hz: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    abort_reason: Mapped[str | None] = mapped_column(Text)
    protocol: Mapped[Doc]
    spec: Mapped[Doc]
    summary: Mapped[Doc | None]
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = _now_col()
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(BigInteger, default=0)
    last_t: Mapped[float | None] = mapped_column(Float)
    # seq of the last telemetry batch applied: makes spool replay exactly-once
    last_batch: Mapped[int] = mapped_column(Integer, default=0)


class SessionEvent(Base):
    """A session event (transition, edit, alarm, fault) with its reason."""

    __tablename__ = "session_events"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(64))
    old: Mapped[float | None] = mapped_column(Float)
    new: Mapped[float | None] = mapped_column(Float)
    wall_at: Mapped[datetime]


class SessionAlarm(Base):
    """A latched alarm of a session."""

    __tablename__ = "session_alarms"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(40))
    code: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(8))
    technical: Mapped[bool] = mapped_column(Boolean)
    condition: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    force_n: Mapped[float | None] = mapped_column(Float)
    action: Mapped[str] = mapped_column(Text)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))


class TelemetryChunk(Base):
    """Telemetry rows [t0, t1] of one stream of a session, compressed (see `telemetry_codec`).

    stream ``clinical``: the clinical record at `rate_hz` (e.g. 100 Hz), exact samples.
    stream ``fullrate``: control-rate rows inside black-box windows.
    """

    __tablename__ = "telemetry_chunks"
    __table_args__ = (Index("ix_telemetry_chunks_session_stream_t0", "session_id", "stream", "t0"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(16))
    t0: Mapped[float] = mapped_column(Float)
    t1: Mapped[float] = mapped_column(Float)
    n_rows: Mapped[int] = mapped_column(Integer)
    n_cols: Mapped[int] = mapped_column(Integer)
    rate_hz: Mapped[float] = mapped_column(Float)
    encoding: Mapped[str] = mapped_column(String(24))
    data: Mapped[bytes] = mapped_column(Blob)


class BlackboxWindow(Base):
    """A full-rate window around an alarm or a clinician edit (replay of an incident)."""

    __tablename__ = "blackbox_windows"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"),
                                            index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_t: Mapped[float] = mapped_column(Float)
    t_from: Mapped[float] = mapped_column(Float)
    t_to: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(Text)


class Visit(Base):
    """A visit of a course: go/no-go decision and what was done."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("course_plans.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    visit_no: Mapped[int | None]
    visited_at: Mapped[datetime] = _now_col()
    decision: Mapped[str | None] = mapped_column(String(20))
    document: Mapped[Doc]


class SideEffect(Base):
    """A side effect reported after a session."""

    __tablename__ = "side_effects"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    recorded_at: Mapped[datetime] = _now_col()
    kind: Mapped[str] = mapped_column(String(60))
    severity: Mapped[str | None] = mapped_column(String(20))
    document: Mapped[Doc]


class Outcome(Base):
    """An outcome measurement (NPRS, ODI, NDI...)."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("course_plans.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    recorded_at: Mapped[datetime] = _now_col()
    measure: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None] = mapped_column(Float)
    document: Mapped[Doc]


class UserAccount(Base):
    """A dashboard account (revision 0003). Roles are the web layer's business; the store
    keeps the name, role, argon2 hash and whether the account may log in. Changes go through
    `UserRepository`, which writes them to the audit log (never the hash)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _now_col()


class AuditEntry(Base):
    """One change to clinical data. Append-only: the code has no update or delete path, and
    database triggers (revision 0002) refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(8))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[Doc | None]
    after: Mapped[Doc | None]
    reason: Mapped[str | None] = mapped_column(Text)
