"""Typed repositories: the only way the rest of the code reads and writes the store.

Every create, update and delete of clinical data goes through a repository method that, in
the same transaction, appends an `AuditLog` entry: who (`actor`), when (`at`), what
(`action`, `entity`, `entity_id`), the values before and after, and why (`reason`) where
given. The audit log itself has no update or delete method (and the database refuses both).

Repositories work inside a `UnitOfWork` (one transaction, one actor), opened with
`Store.unit(actor)`. They return frozen pydantic records, never ORM objects, so nothing
outside the store can lazy-load or change rows behind the audit log's back.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    CursorResult,
    Float,
    String,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from spinedecomp.core.errors import SpinedecompError
from spinedecomp.store.models import (
    AuditEntry,
    Base,
    BlackboxWindow,
    CostEstimate,
    CoursePlan,
    Intake,
    Outcome,
    Patient,
    ScreeningDecision,
    SessionAlarm,
    SessionEvent,
    SideEffect,
    TelemetryChunk,
    TreatmentSession,
    UserAccount,
    UTCDateTime,
    Visit,
    utcnow,
)
from spinedecomp.store.telemetry_codec import Batch, Finalization, Segment, decode_rows

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
Document = BaseModel | Mapping[str, Any]
Action = Literal["create", "update", "delete"]
TERMINAL_STATES = ("completed", "aborted")
CRASH_REASON = "process ended unexpectedly"


class StoreError(SpinedecompError):
    """A store operation failed in a way the user can act on."""


class NotFound(StoreError):
    """No such record."""


class Conflict(StoreError):
    """The change would break a rule (duplicate code, records still attached...)."""


def _doc(document: Document) -> dict[str, Any]:
    """A clinical document as plain JSON (pydantic models dump in JSON mode)."""
    if isinstance(document, BaseModel):
        out = document.model_dump(mode="json")
    else:
        out = json.loads(json.dumps(dict(document), default=str))
    if not isinstance(out, dict):
        raise StoreError("a clinical document must be a JSON object")
    return out


def _table(model: type[Base]) -> Table:
    """The Core table of a model (bulk inserts skip the ORM on the telemetry hot path)."""
    return cast(Table, model.__table__)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


# ---- records -------------------------------------------------------------------------------
class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class PatientIn(BaseModel):
    """A new patient."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, description="The clinic's patient number.")
    name: str = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    sex: str | None = Field(default=None, max_length=16)
    body_weight_kg: float | None = Field(default=None, gt=0.0, le=400.0)
    is_demo: bool = False
    note: str = ""


class PatientChanges(BaseModel):
    """Fields to change on a patient; only the fields given are changed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: date | None = None
    sex: str | None = Field(default=None, max_length=16)
    body_weight_kg: float | None = Field(default=None, gt=0.0, le=400.0)
    note: str | None = None


class PatientRecord(_Record):
    """A stored patient."""

    id: int
    code: str
    name: str
    birth_date: date | None
    sex: str | None
    body_weight_kg: float | None
    is_demo: bool
    note: str
    created_at: datetime
    updated_at: datetime


class DocumentRecord(_Record):
    """A stored clinical document with its patient."""

    id: int
    patient_id: int
    document: dict[str, Any]


class IntakeRecord(DocumentRecord):
    """A stored intake."""

    recorded_at: datetime
    region: str | None


class DecisionRecord(DocumentRecord):
    """A stored screening decision."""

    intake_id: int | None
    decided_at: datetime
    outcome: str
    pathway: str | None


class PlanRecord(DocumentRecord):
    """A stored course plan."""

    decision_id: int | None
    created_at: datetime
    region: str | None
    protocol_name: str | None
    sessions_planned: int | None
    status: str


class CostRecord(DocumentRecord):
    """A stored cost estimate."""

    plan_id: int | None
    created_at: datetime
    total: float | None
    currency: str | None
    payer: str | None


class VisitRecord(DocumentRecord):
    """A stored visit."""

    plan_id: int | None
    session_id: int | None
    visit_no: int | None
    visited_at: datetime
    decision: str | None


class SideEffectRecord(DocumentRecord):
    """A stored side effect."""

    visit_id: int | None
    session_id: int | None
    recorded_at: datetime
    kind: str
    severity: str | None


class OutcomeRecord(DocumentRecord):
    """A stored outcome measurement."""

    plan_id: int | None
    visit_id: int | None
    recorded_at: datetime
    measure: str
    score: float | None


class SessionStart(BaseModel):
    """What is known of a session before it starts."""

    patient_id: int
    plan_id: int | None = None
    protocol_name: str
    region: str
    mode: str
    body_weight_kg: float
    rate_hz: float
    clinical_rate_hz: float
    device: str
    protocol: dict[str, Any]
    spec: dict[str, Any]
    host: str
    pid: int
    state: str = "idle"


class SessionRecord(_Record):
    """A stored session (without its telemetry)."""

    id: int
    patient_id: int
    plan_id: int | None
    protocol_name: str
    region: str
    mode: str
    body_weight_kg: float
    rate_hz: float
    clinical_rate_hz: float
    device: str
    state: str
    abort_reason: str | None
    protocol: dict[str, Any]
    spec: dict[str, Any]
    summary: dict[str, Any] | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    last_seen_at: datetime | None
    host: str
    pid: int
    samples: int
    last_t: float | None
    last_batch: int

    @property
    def terminal(self) -> bool:
        """True once completed or aborted."""
        return self.state in TERMINAL_STATES


class EventRecord(_Record):
    """A stored session event."""

    seq: int
    t: float
    kind: str
    reason: str
    field: str | None
    old: float | None
    new: float | None
    wall_at: datetime


class AlarmRecord(_Record):
    """A stored session alarm."""

    seq: int
    t: float
    kind: str
    code: int
    priority: str
    technical: bool
    condition: str
    value: float | None
    force_n: float | None
    action: str
    acknowledged: bool
    acknowledged_by: str | None


class WindowRecord(_Record):
    """A stored black-box window."""

    id: int
    session_id: int
    trigger: str
    trigger_t: float
    t_from: float
    t_to: float
    label: str


class AuditRecord(_Record):
    """One audit log entry."""

    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None


class UserRecord(_Record):
    """A stored account, without its password hash."""

    id: int
    username: str
    full_name: str
    role: str
    active: bool
    created_at: datetime


class TelemetryStats(BaseModel):
    """How a session's telemetry is stored."""

    stream: str
    chunks: int
    rows: int
    bytes: int
    t0: float | None
    t1: float | None


# ---- audit log -----------------------------------------------------------------------------
class AuditLog:
    """Append-only log of changes to clinical data. There is deliberately no update or
    delete method; entries are only ever added by the repositories below."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(self, *, actor: str, action: Action, entity: str, entity_id: int | str,
               before: dict[str, Any] | None, after: dict[str, Any] | None,
               reason: str | None) -> None:
        """Add one entry (called by the repositories in the transaction of the change)."""
        self._s.add(AuditEntry(at=utcnow(), actor=actor, action=action, entity=entity,
                               entity_id=str(entity_id), before=before, after=after,
                               reason=reason))

    def entries(self, *, entity: str | None = None, entity_id: int | str | None = None,
                actor: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Entries, oldest first, optionally for one entity/record/actor."""
        q = select(AuditEntry).order_by(AuditEntry.id)
        if entity is not None:
            q = q.where(AuditEntry.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEntry.entity_id == str(entity_id))
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        if limit is not None:
            q = q.limit(limit)
        return [AuditRecord.model_validate(r) for r in self._s.scalars(q)]


M = TypeVar("M", bound=Base)
R = TypeVar("R", bound=_Record)


class _Audited(Generic[M, R]):
    """Shared create/update/delete with audit entries."""

    model: ClassVar[type[Base]]
    record: ClassVar[type[_Record]]
    entity: ClassVar[str]

    def __init__(self, session: Session, audit: AuditLog, actor: str) -> None:
        self._s = session
        self._audit = audit
        self._actor = actor

    def _rec(self, row: M) -> R:
        return self.record.model_validate(row)  # type: ignore[return-value]

    def _row(self, id_: int) -> M:
        row = self._s.get(self.model, id_)
        if row is None:
            raise NotFound(f"{self.entity} {id_} not found")
        return row  # type: ignore[return-value]

    def get(self, id_: int) -> R:
        """The record with this id (NotFound if none)."""
        return self._rec(self._row(id_))

    def _create(self, row: M, reason: str | None) -> R:
        self._s.add(row)
        self._s.flush()
        rec = self._rec(row)
        self._audit.append(actor=self._actor, action="create", entity=self.entity,
                           entity_id=rec.id, before=None,  # type: ignore[attr-defined]
                           after=rec.model_dump(mode="json"), reason=reason)
        return rec

    def _update(self, id_: int, changes: dict[str, Any], reason: str | None) -> R:
        row = self._row(id_)
        before_rec = self._rec(row).model_dump(mode="json")
        for k, v in changes.items():
            setattr(row, k, v)
        if hasattr(row, "updated_at"):
            row.updated_at = utcnow()
        self._s.flush()
        rec = self._rec(row)
        after_rec = rec.model_dump(mode="json")
        changed = [k for k in after_rec if after_rec[k] != before_rec.get(k) and k != "updated_at"]
        if changed:
            self._audit.append(actor=self._actor, action="update", entity=self.entity, entity_id=id_,
                               before={k: before_rec[k] for k in changed},
                               after={k: after_rec[k] for k in changed}, reason=reason)
        return rec

    def _delete(self, id_: int, reason: str | None) -> None:
        row = self._row(id_)
        before = self._rec(row).model_dump(mode="json")
        self._s.delete(row)
        self._s.flush()
        self._audit.append(actor=self._actor, action="delete", entity=self.entity, entity_id=id_,
                           before=before, after=None, reason=reason)


class PatientRepository(_Audited[Patient, PatientRecord]):
    """Patients."""

    model = Patient
    record = PatientRecord
    entity = "patient"
    DEMO_CODE: ClassVar[str] = "demo-anonymous"

    def add(self, patient: PatientIn, *, reason: str | None = None) -> PatientRecord:
        """Create a patient (Conflict if the code is taken)."""
        if self._s.scalar(select(Patient.id).where(Patient.code == patient.code)) is not None:
            raise Conflict(f"patient code {patient.code!r} is already in use")
        now = utcnow()
        return self._create(Patient(**patient.model_dump(), created_at=now, updated_at=now), reason)

    def by_code(self, code: str) -> PatientRecord:
        """The patient with this clinic code."""
        row = self._s.scalar(select(Patient).where(Patient.code == code))
        if row is None:
            raise NotFound(f"patient {code!r} not found")
        return self._rec(row)

    def find(self, ref: str | int) -> PatientRecord:
        """By id (a number) or clinic code."""
        if isinstance(ref, int) or ref.isdigit():
            try:
                return self.get(int(ref))
            except NotFound:
                if isinstance(ref, int):
                    raise
        return self.by_code(str(ref))

    def all(self, *, include_demo: bool = True) -> list[PatientRecord]:
        """All patients by id."""
        q = select(Patient).order_by(Patient.id)
        if not include_demo:
            q = q.where(Patient.is_demo.is_(False))
        return [self._rec(r) for r in self._s.scalars(q)]

    def update(self, id_: int, changes: PatientChanges, *, reason: str | None = None) -> PatientRecord:
        """Change the fields given in `changes`."""
        return self._update(id_, changes.model_dump(exclude_unset=True), reason)

    def delete(self, id_: int, *, reason: str | None = None) -> None:
        """Delete a patient that has no clinical records (records are never orphaned)."""
        for model in (Intake, ScreeningDecision, CoursePlan, CostEstimate, TreatmentSession,
                      Visit, SideEffect, Outcome):
            n = self._s.scalar(select(func.count()).select_from(model).where(
                model.patient_id == id_))
            if n:
                raise Conflict(f"patient {id_} has {n} {model.__tablename__} record(s); "
                               "clinical records are kept, so the patient cannot be deleted")
        self._delete(id_, reason)

    def demo(self) -> PatientRecord:
        """The anonymous demo patient (created on first use): sessions run without a patient
        are stored under it."""
        row = self._s.scalar(select(Patient).where(Patient.code == self.DEMO_CODE))
        if row is not None:
            return self._rec(row)
        return self.add(PatientIn(code=self.DEMO_CODE, name="Anonymous demo patient", is_demo=True,
                                  note="Sessions run without --patient are stored here."),
                        reason="first session without a patient")


D = TypeVar("D", bound=Base)
DR = TypeVar("DR", bound=DocumentRecord)


class _DocumentRepository(_Audited[D, DR]):
    """Clinical documents of a patient."""

    def _check_patient(self, patient_id: int) -> None:
        if self._s.get(Patient, patient_id) is None:
            raise NotFound(f"patient {patient_id} not found")

    def for_patient(self, patient_id: int) -> list[DR]:
        """All of a patient's documents of this kind, oldest first."""
        m = self.model
        q = select(m).where(m.patient_id == patient_id).order_by(m.id)  # type: ignore[attr-defined]
        return [self._rec(r) for r in self._s.scalars(q)]  # type: ignore[arg-type]

    def delete(self, id_: int, *, reason: str | None = None) -> None:
        """Delete one document (entered in error); the audit log keeps its content."""
        self._delete(id_, reason)


def _set(changes: dict[str, Any], **kw: Any) -> dict[str, Any]:
    changes.update({k: v for k, v in kw.items() if v is not None})
    return changes


class IntakeRepository(_DocumentRepository[Intake, IntakeRecord]):
    """Intakes."""

    model = Intake
    record = IntakeRecord
    entity = "intake"

    def add(self, patient_id: int, document: Document, *, region: str | None = None,
            recorded_at: datetime | None = None, reason: str | None = None) -> IntakeRecord:
        """Store an intake."""
        self._check_patient(patient_id)
        return self._create(Intake(patient_id=patient_id, document=_doc(document), region=region,
                                   recorded_at=recorded_at or utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, region: str | None = None,
               reason: str | None = None) -> IntakeRecord:
        """Correct an intake."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      region=region), reason)


class DecisionRepository(_DocumentRepository[ScreeningDecision, DecisionRecord]):
    """Screening decisions."""

    model = ScreeningDecision
    record = DecisionRecord
    entity = "screening_decision"

    def add(self, patient_id: int, document: Document, *, outcome: str,
            intake_id: int | None = None, pathway: str | None = None,
            decided_at: datetime | None = None, reason: str | None = None) -> DecisionRecord:
        """Store a screening decision."""
        self._check_patient(patient_id)
        return self._create(ScreeningDecision(patient_id=patient_id, intake_id=intake_id,
                                              outcome=outcome, pathway=pathway,
                                              document=_doc(document),
                                              decided_at=decided_at or utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, outcome: str | None = None,
               pathway: str | None = None, reason: str | None = None) -> DecisionRecord:
        """Correct a decision."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      outcome=outcome, pathway=pathway), reason)


class PlanRepository(_DocumentRepository[CoursePlan, PlanRecord]):
    """Course plans."""

    model = CoursePlan
    record = PlanRecord
    entity = "course_plan"

    def add(self, patient_id: int, document: Document, *, decision_id: int | None = None,
            region: str | None = None, protocol_name: str | None = None,
            sessions_planned: int | None = None, status: str = "planned",
            reason: str | None = None) -> PlanRecord:
        """Store a course plan."""
        self._check_patient(patient_id)
        return self._create(CoursePlan(patient_id=patient_id, decision_id=decision_id, region=region,
                                       protocol_name=protocol_name, sessions_planned=sessions_planned,
                                       status=status, document=_doc(document),
                                       created_at=utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, status: str | None = None,
               sessions_planned: int | None = None, protocol_name: str | None = None,
               reason: str | None = None) -> PlanRecord:
        """Change a plan (e.g. its status, or the plan itself)."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      status=status, sessions_planned=sessions_planned,
                                      protocol_name=protocol_name), reason)


class CostRepository(_DocumentRepository[CostEstimate, CostRecord]):
    """Cost estimates."""

    model = CostEstimate
    record = CostRecord
    entity = "cost_estimate"

    def add(self, patient_id: int, document: Document, *, plan_id: int | None = None,
            total: float | None = None, currency: str | None = None, payer: str | None = None,
            reason: str | None = None) -> CostRecord:
        """Store a cost estimate."""
        self._check_patient(patient_id)
        return self._create(CostEstimate(patient_id=patient_id, plan_id=plan_id, total=total,
                                         currency=currency, payer=payer, document=_doc(document),
                                         created_at=utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, total: float | None = None,
               reason: str | None = None) -> CostRecord:
        """Correct an estimate."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      total=total), reason)


class VisitRepository(_DocumentRepository[Visit, VisitRecord]):
    """Visits."""

    model = Visit
    record = VisitRecord
    entity = "visit"

    def add(self, patient_id: int, document: Document, *, plan_id: int | None = None,
            session_id: int | None = None, visit_no: int | None = None,
            decision: str | None = None, visited_at: datetime | None = None,
            reason: str | None = None) -> VisitRecord:
        """Store a visit."""
        self._check_patient(patient_id)
        return self._create(Visit(patient_id=patient_id, plan_id=plan_id, session_id=session_id,
                                  visit_no=visit_no, decision=decision, document=_doc(document),
                                  visited_at=visited_at or utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, decision: str | None = None,
               session_id: int | None = None, reason: str | None = None) -> VisitRecord:
        """Change a visit (e.g. attach its session)."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      decision=decision, session_id=session_id), reason)


class SideEffectRepository(_DocumentRepository[SideEffect, SideEffectRecord]):
    """Side effects."""

    model = SideEffect
    record = SideEffectRecord
    entity = "side_effect"

    def add(self, patient_id: int, document: Document, *, kind: str,
            severity: str | None = None, visit_id: int | None = None,
            session_id: int | None = None, reason: str | None = None) -> SideEffectRecord:
        """Store a side effect."""
        self._check_patient(patient_id)
        return self._create(SideEffect(patient_id=patient_id, visit_id=visit_id,
                                       session_id=session_id, kind=kind, severity=severity,
                                       document=_doc(document), recorded_at=utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, severity: str | None = None,
               reason: str | None = None) -> SideEffectRecord:
        """Correct a side effect."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      severity=severity), reason)


class OutcomeRepository(_DocumentRepository[Outcome, OutcomeRecord]):
    """Outcome measurements."""

    model = Outcome
    record = OutcomeRecord
    entity = "outcome"

    def add(self, patient_id: int, document: Document, *, measure: str,
            score: float | None = None, plan_id: int | None = None,
            visit_id: int | None = None, recorded_at: datetime | None = None,
            reason: str | None = None) -> OutcomeRecord:
        """Store an outcome measurement."""
        self._check_patient(patient_id)
        return self._create(Outcome(patient_id=patient_id, plan_id=plan_id, visit_id=visit_id,
                                    measure=measure, score=score, document=_doc(document),
                                    recorded_at=recorded_at or utcnow()), reason)

    def update(self, id_: int, *, document: Document | None = None, score: float | None = None,
               reason: str | None = None) -> OutcomeRecord:
        """Correct a measurement."""
        return self._update(id_, _set({}, document=None if document is None else _doc(document),
                                      score=score), reason)


class SessionRepository(_Audited[TreatmentSession, SessionRecord]):
    """Treatment sessions: the row, its events, alarms and black-box windows."""

    model = TreatmentSession
    record = SessionRecord
    entity = "session"

    def create(self, start: SessionStart, *, reason: str | None = None) -> SessionRecord:
        """Create the session row before the session starts."""
        if self._s.get(Patient, start.patient_id) is None:
            raise NotFound(f"patient {start.patient_id} not found")
        return self._create(TreatmentSession(**start.model_dump(), created_by=self._actor,
                                             created_at=utcnow(), samples=0, last_batch=0), reason)

    def all(self, *, patient_id: int | None = None, state: str | None = None,
             limit: int | None = None) -> list[SessionRecord]:
        """Sessions, newest first."""
        q = select(TreatmentSession).order_by(TreatmentSession.id.desc())
        if patient_id is not None:
            q = q.where(TreatmentSession.patient_id == patient_id)
        if state is not None:
            q = q.where(TreatmentSession.state == state)
        if limit is not None:
            q = q.limit(limit)
        return [self._rec(r) for r in self._s.scalars(q)]

    def open_sessions(self) -> list[SessionRecord]:
        """Sessions not completed or aborted (running now, or their process died)."""
        q = select(TreatmentSession).where(TreatmentSession.state.not_in(TERMINAL_STATES))
        return [self._rec(r) for r in self._s.scalars(q.order_by(TreatmentSession.id))]

    def events(self, session_id: int) -> list[EventRecord]:
        """Events in order."""
        q = select(SessionEvent).where(SessionEvent.session_id == session_id).order_by(SessionEvent.seq)
        return [EventRecord.model_validate(r) for r in self._s.scalars(q)]

    def alarms(self, session_id: int) -> list[AlarmRecord]:
        """Alarms in order."""
        q = select(SessionAlarm).where(SessionAlarm.session_id == session_id).order_by(SessionAlarm.seq)
        return [AlarmRecord.model_validate(r) for r in self._s.scalars(q)]

    def acknowledge_alarms(self, session_id: int, *, seqs: Sequence[int] | None = None,
                           reason: str | None = None) -> list[AlarmRecord]:
        """Acknowledge latched alarms of a session that has ended (all unacknowledged ones, or
        those numbered `seqs`), by this unit's actor. Each is audited (entity
        ``session_alarm``, id ``<session>/<seq>``). Returns the alarms acknowledged now.

        Conflict while the session runs: its alarms are acknowledged on the engine (the live
        page), which records the acknowledgement in the session's own record."""
        sess = self.get(session_id)
        if not sess.terminal:
            raise Conflict(f"session {session_id} is still {sess.state}: acknowledge its alarms "
                           "on the live page")
        q = select(SessionAlarm).where(SessionAlarm.session_id == session_id)
        if seqs is not None:
            wanted = set(seqs)
            rows = [r for r in self._s.scalars(q) if r.seq in wanted]
            missing = wanted - {r.seq for r in rows}
            if missing:
                raise NotFound(f"session {session_id} has no alarm {min(missing)}")
        else:
            rows = list(self._s.scalars(q))
        done: list[AlarmRecord] = []
        for row in sorted(rows, key=lambda r: r.seq):
            if row.acknowledged:
                continue
            row.acknowledged = True
            row.acknowledged_by = self._actor
            self._s.flush()
            self._audit.append(actor=self._actor, action="update", entity="session_alarm",
                               entity_id=f"{session_id}/{row.seq}",
                               before={"acknowledged": False, "acknowledged_by": None},
                               after={"acknowledged": True, "acknowledged_by": self._actor},
                               reason=reason or f"{row.kind} acknowledged after the session")
            done.append(AlarmRecord.model_validate(row))
        return done

    def windows(self, session_id: int) -> list[WindowRecord]:
        """Black-box windows in order."""
        q = select(BlackboxWindow).where(BlackboxWindow.session_id == session_id).order_by(
            BlackboxWindow.id)
        return [WindowRecord.model_validate(r) for r in self._s.scalars(q)]

    def finalize(self, session_id: int, final: Finalization, *, reason: str | None = None) -> SessionRecord:
        """Record how the session ended (audited as an update by the finalization's actor)."""
        for ack in final.acks:
            self._s.execute(update(SessionAlarm).where(
                SessionAlarm.session_id == session_id, SessionAlarm.seq == ack.seq).values(
                acknowledged=True, acknowledged_by=ack.by))
        changes: dict[str, Any] = {"state": final.end_state, "abort_reason": final.abort_reason,
                                   "ended_at": final.ended_at}
        if final.summary is not None:
            changes["summary"] = final.summary
        audit_actor, self._actor = self._actor, final.actor
        try:
            return self._update(session_id, changes, reason or f"session {final.end_state}")
        finally:
            self._actor = audit_actor

    def mark_aborted(self, session_id: int, reason: str = CRASH_REASON) -> SessionRecord | None:
        """Abort a session whose process is gone; its last event says why. None if the session
        ended in the meantime (the conditional update makes this safe against a race with its
        own writer finishing)."""
        row = self._row(session_id)
        before = self._rec(row).model_dump(mode="json")
        now = utcnow()
        res = self._s.execute(update(TreatmentSession).where(
            TreatmentSession.id == session_id, TreatmentSession.state.not_in(TERMINAL_STATES)).values(
            state="aborted", abort_reason=reason, ended_at=now),
            execution_options={"synchronize_session": False})
        if not isinstance(res, CursorResult) or res.rowcount == 0:
            return None
        seq = (self._s.scalar(select(func.max(SessionEvent.seq)).where(
            SessionEvent.session_id == session_id)) or 0) + 1
        self._s.add(SessionEvent(session_id=session_id, seq=seq, t=row.last_t or 0.0, kind="state",
                                 reason=f"{before['state']} -> aborted: {reason}", field=None,
                                 old=None, new=None, wall_at=now))
        self._s.flush()
        self._s.refresh(row)
        after = self._rec(row).model_dump(mode="json")
        changed = [k for k in after if after[k] != before.get(k)]
        self._audit.append(actor=self._actor, action="update", entity=self.entity, entity_id=session_id,
                           before={k: before[k] for k in changed}, after={k: after[k] for k in changed},
                           reason=f"recovery on start: {reason}")
        return self._rec(row)


class UserRepository(_Audited[UserAccount, UserRecord]):
    """Dashboard accounts. Create and enable/disable are audited (entity ``user``); the
    audit entries never contain the password hash. Hashing is the caller's job."""

    model = UserAccount
    record = UserRecord
    entity = "user"

    def add(self, *, username: str, role: str, password_hash: str, full_name: str = "",
            reason: str | None = None) -> UserRecord:
        """Create an account (Conflict if the name is taken)."""
        if self._s.scalar(select(UserAccount.id).where(UserAccount.username == username)) is not None:
            raise Conflict(f"user {username!r} already exists")
        return self._create(UserAccount(username=username, full_name=full_name, role=role,
                                        password_hash=password_hash, active=True,
                                        created_at=utcnow()), reason or "account created")

    def set_active(self, id_: int, active: bool, *, reason: str | None = None) -> UserRecord:
        """Enable or disable an account."""
        return self._update(id_, {"active": active}, reason)

    def by_name(self, username: str) -> UserRecord | None:
        """The account with this name, if any."""
        row = self._s.scalar(select(UserAccount).where(UserAccount.username == username))
        return None if row is None else self._rec(row)

    def password_hash(self, username: str) -> tuple[UserRecord, str] | None:
        """The account and its stored hash (for checking a password), or None."""
        row = self._s.scalar(select(UserAccount).where(UserAccount.username == username))
        return None if row is None else (self._rec(row), row.password_hash)

    def all(self) -> list[UserRecord]:
        """Every account by id."""
        return [self._rec(r) for r in self._s.scalars(select(UserAccount).order_by(UserAccount.id))]


def _heartbeat_statement() -> Update:
    t = _table(TreatmentSession)
    c = t.c
    # built once: the writer runs it ten times a second per session
    return update(t).where(c.id == bindparam("sid"), c.last_batch < bindparam("seq")).values(
        last_batch=bindparam("seq"), last_seen_at=bindparam("wall_at", type_=UTCDateTime()),
        samples=bindparam("samples"),
        last_t=func.coalesce(bindparam("last_t", type_=Float()), c.last_t),
        state=func.coalesce(bindparam("state", type_=String()), c.state),
        started_at=func.coalesce(bindparam("started_at", type_=UTCDateTime()), c.started_at))


_HEARTBEAT = _heartbeat_statement()
_INSERT = {m.__name__: insert(_table(m)) for m in (TelemetryChunk, SessionEvent, SessionAlarm,
                                                   BlackboxWindow)}


class TelemetryRepository:
    """Telemetry chunks, events and alarms written by the telemetry writer, read back as arrays.

    Writes use Core bulk inserts (executemany) on the session's connection: this is the hot
    path of the store. They are records of what the engine did, not edits of clinical data,
    so they are not audited row by row; the session's creation and end are.
    """

    def __init__(self, session: Session) -> None:
        self._s = session

    def write_batch(self, b: Batch) -> bool:
        """Apply a writer batch; False if it was applied before (spool replay)."""
        conn = self._s.connection()  # Core on the unit's connection: the hot path skips the ORM
        res = conn.execute(_HEARTBEAT, {
            "sid": b.session_id, "seq": b.seq, "wall_at": b.wall_at, "samples": b.samples,
            "last_t": b.last_t, "state": b.state, "started_at": b.started_at})
        if res.rowcount == 0:
            if self._s.get(TreatmentSession, b.session_id) is None:
                raise NotFound(f"session {b.session_id} not found")
            return False
        if b.segments:
            conn.execute(_INSERT["TelemetryChunk"], [
                {"session_id": b.session_id, "stream": s.stream, "t0": s.t0, "t1": s.t1,
                 "n_rows": s.n_rows, "n_cols": s.n_cols, "rate_hz": s.rate_hz,
                 "encoding": s.encoding, "data": s.data} for s in b.segments])
        if b.events:
            conn.execute(_INSERT["SessionEvent"], [
                {"session_id": b.session_id, "seq": e.seq, "t": e.t, "kind": e.kind,
                 "reason": e.reason, "field": e.field, "old": _finite(e.old), "new": _finite(e.new),
                 "wall_at": e.wall_at} for e in b.events])
        if b.alarms:
            conn.execute(_INSERT["SessionAlarm"], [
                {"session_id": b.session_id, "seq": a.seq, "t": a.t, "kind": a.kind, "code": a.code,
                 "priority": a.priority, "technical": a.technical, "condition": a.condition,
                 "value": _finite(a.value), "force_n": _finite(a.force_n), "action": a.action,
                 "acknowledged": False, "acknowledged_by": None} for a in b.alarms])
        if b.windows:
            conn.execute(_INSERT["BlackboxWindow"], [
                {"session_id": b.session_id, "trigger": w.trigger, "trigger_t": w.trigger_t,
                 "t_from": w.t_from, "t_to": w.t_to, "label": w.label} for w in b.windows])
        return True

    def _segments(self, session_id: int, stream: str, t_from: float | None = None,
                  t_to: float | None = None) -> list[Segment]:
        q = select(TelemetryChunk).where(TelemetryChunk.session_id == session_id,
                                         TelemetryChunk.stream == stream)
        if t_from is not None:
            q = q.where(TelemetryChunk.t1 >= t_from)
        if t_to is not None:
            q = q.where(TelemetryChunk.t0 <= t_to)
        return [Segment(c.stream, c.t0, c.t1, c.n_rows, c.n_cols, c.rate_hz, c.encoding, c.data)
                for c in self._s.scalars(q.order_by(TelemetryChunk.t0, TelemetryChunk.id))]

    @staticmethod
    def _concat(segs: Sequence[Segment], n_cols: int) -> F64:
        if not segs:
            return np.zeros((0, n_cols))
        return np.concatenate([decode_rows(s.data, s.n_rows, s.n_cols, s.encoding) for s in segs])

    def clinical(self, session_id: int, n_cols: int = 14) -> F64:
        """The clinical record (e.g. 100 Hz): exact rows as the engine recorded them."""
        return self._concat(self._segments(session_id, "clinical"), n_cols)

    def fullrate(self, session_id: int, t_from: float | None = None, t_to: float | None = None,
                 n_cols: int = 14) -> F64:
        """Control-rate rows recorded in black-box windows, optionally within [t_from, t_to]."""
        rows = self._concat(self._segments(session_id, "fullrate", t_from, t_to), n_cols)
        if rows.shape[0] and (t_from is not None or t_to is not None):
            lo = -np.inf if t_from is None else t_from
            hi = np.inf if t_to is None else t_to
            rows = rows[(rows[:, 0] >= lo) & (rows[:, 0] <= hi)]
        return rows

    def stats(self, session_id: int) -> list[TelemetryStats]:
        """Chunks, rows and bytes per stream."""
        q = select(TelemetryChunk.stream, func.count(), func.sum(TelemetryChunk.n_rows),
                   func.sum(func.length(TelemetryChunk.data)), func.min(TelemetryChunk.t0),
                   func.max(TelemetryChunk.t1)).where(
            TelemetryChunk.session_id == session_id).group_by(TelemetryChunk.stream).order_by(
            TelemetryChunk.stream)
        return [TelemetryStats(stream=s, chunks=int(c), rows=int(n or 0), bytes=int(b or 0), t0=t0, t1=t1)
                for s, c, n, b, t0, t1 in self._s.execute(q)]

    def compact(self, session_id: int, chunk_s: float) -> int:
        """Merge the writer's small segments into chunks of about `chunk_s` seconds, in one
        transaction (same rows, fewer and better-compressed blobs). Returns chunks written."""
        written = 0
        for stream in ("clinical", "fullrate"):
            segs = self._segments(session_id, stream)
            if not segs:
                continue
            rate = segs[0].rate_hz
            chunk_rows = max(1, round(chunk_s * rate))
            rows = self._concat(segs, segs[0].n_cols)
            # split where time jumps (separate black-box windows), then into chunk_rows pieces
            gaps = np.flatnonzero(np.diff(rows[:, 0]) > 1.5 / rate) + 1
            pieces: list[F64] = []
            for run in np.split(rows, gaps):
                pieces.extend(run[i:i + chunk_rows] for i in range(0, run.shape[0], chunk_rows))
            if [p.shape[0] for p in pieces] == [s.n_rows for s in segs]:
                continue  # already compact
            self._s.execute(delete(TelemetryChunk).where(TelemetryChunk.session_id == session_id,
                                                         TelemetryChunk.stream == stream))
            new = [Segment.of(stream, p, rate) for p in pieces if p.shape[0]]
            self._s.connection().execute(_INSERT["TelemetryChunk"], [
                {"session_id": session_id, "stream": s.stream, "t0": s.t0, "t1": s.t1,
                 "n_rows": s.n_rows, "n_cols": s.n_cols, "rate_hz": s.rate_hz,
                 "encoding": s.encoding, "data": s.data} for s in new])
            log.info("session %d: %s telemetry compacted from %d segments to %d chunks",
                     session_id, stream, len(segs), len(new))
            written += len(new)
        return written


class UnitOfWork:
    """One transaction and one actor, with every repository. Use `Store.unit(actor)`."""

    def __init__(self, session: Session, actor: str) -> None:
        if not actor.strip():
            raise StoreError("every change needs an actor (who is making it)")
        self._session = session
        self.actor = actor
        self.audit = AuditLog(session)
        self.patients = PatientRepository(session, self.audit, actor)
        self.intakes = IntakeRepository(session, self.audit, actor)
        self.decisions = DecisionRepository(session, self.audit, actor)
        self.plans = PlanRepository(session, self.audit, actor)
        self.costs = CostRepository(session, self.audit, actor)
        self.visits = VisitRepository(session, self.audit, actor)
        self.side_effects = SideEffectRepository(session, self.audit, actor)
        self.outcomes = OutcomeRepository(session, self.audit, actor)
        self.sessions = SessionRepository(session, self.audit, actor)
        self.users = UserRepository(session, self.audit, actor)
        self.telemetry = TelemetryRepository(session)

    def commit(self) -> None:
        """Commit now (the unit commits at the end of its `with` block anyway)."""
        self._session.commit()

    def rollback(self) -> None:
        """Drop every change since the last commit."""
        self._session.rollback()
