"""Repositories and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from spinedecomp.store.api import Store
from spinedecomp.store.repositories import (
    Conflict,
    NotFound,
    PatientChanges,
    PatientIn,
    SessionStart,
    StoreError,
)
from spinedecomp.store.telemetry_codec import AlarmRow, Batch, Finalization


class FakeDecision(BaseModel):
    """Stands for a clinic model: the store keeps whatever it dumps."""

    candidate: bool
    pathway: str
    reasons: list[str]
    decided_on: date


def _patient(store: Store, code: str = "P-0001", actor: str = "dr.lee") -> int:
    with store.unit(actor) as uow:
        return uow.patients.add(PatientIn(code=code, name="Ann Example", birth_date=date(1970, 5, 1),
                                          sex="female", body_weight_kg=72.5),
                                reason="new patient").id


def test_patient_create_update_delete_are_audited(store: Store) -> None:
    pid = _patient(store)
    with store.unit("dr.lee") as uow:
        p = uow.patients.get(pid)
        assert (p.code, p.name, p.birth_date, p.body_weight_kg) == ("P-0001", "Ann Example",
                                                                   date(1970, 5, 1), 72.5)
        assert p.created_at.utcoffset() == timedelta(0)
        uow.patients.update(pid, PatientChanges(body_weight_kg=70.0), reason="weighed today")
    with store.unit("front-desk") as uow:
        assert uow.patients.find("P-0001").body_weight_kg == 70.0
        assert uow.patients.find(str(pid)).id == pid
        uow.patients.delete(pid, reason="duplicate registration")
    with store.unit("auditor") as uow:
        entries = uow.audit.entries(entity="patient", entity_id=pid)
        with pytest.raises(NotFound):
            uow.patients.get(pid)
    assert [(e.action, e.actor, e.reason) for e in entries] == [
        ("create", "dr.lee", "new patient"), ("update", "dr.lee", "weighed today"),
        ("delete", "front-desk", "duplicate registration")]
    create, upd, dele = entries
    assert create.before is None and create.after is not None and create.after["code"] == "P-0001"
    # an update records only what changed, before and after
    assert upd.before == {"body_weight_kg": 72.5} and upd.after == {"body_weight_kg": 70.0}
    assert dele.after is None and dele.before is not None and dele.before["name"] == "Ann Example"
    assert all(e.at.tzinfo is not None for e in entries)
    assert create.at <= upd.at <= dele.at


def test_patient_rules(store: Store) -> None:
    pid = _patient(store)
    with pytest.raises(Conflict, match="already in use"), store.unit("dr.lee") as uow:
        uow.patients.add(PatientIn(code="P-0001", name="Someone Else"))
    with store.unit("dr.lee") as uow:
        uow.intakes.add(pid, {"complaint": "low back pain"}, region="lumbar")
    # clinical records are kept: a patient with records cannot be deleted
    with pytest.raises(Conflict, match="intakes"), store.unit("dr.lee") as uow:
        uow.patients.delete(pid)
    with pytest.raises(NotFound), store.unit("dr.lee") as uow:
        uow.intakes.add(999, {"x": 1})
    with pytest.raises(StoreError, match="actor"), store.unit("  "):
        pass
    with store.unit("dr.lee") as uow:
        demo = uow.patients.demo()
        assert demo.is_demo and uow.patients.demo().id == demo.id  # created once
        assert [p.code for p in uow.patients.all(include_demo=False)] == ["P-0001"]


def test_a_failed_unit_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError), store.unit("dr.lee") as uow:
        uow.patients.add(PatientIn(code="P-0002", name="Rolled Back"))
        raise RuntimeError("crash before commit")
    with store.unit("auditor") as uow:
        assert uow.patients.all() == []
        assert uow.audit.entries() == []  # the audit entry went with the change


def test_clinical_documents_round_trip_with_their_index_fields(store: Store) -> None:
    pid = _patient(store)
    decision = FakeDecision(candidate=True, pathway="decompression", reasons=["disc herniation"],
                            decided_on=date(2026, 11, 2))
    with store.unit("dr.lee") as uow:
        intake = uow.intakes.add(pid, {"region": "lumbar", "nprs": 7}, region="lumbar")
        dec = uow.decisions.add(pid, decision, outcome="candidate", pathway="decompression",
                                intake_id=intake.id)
        plan = uow.plans.add(pid, {"sessions": 20, "protocol": "lumbar-intermittent"},
                             decision_id=dec.id, region="lumbar", protocol_name="lumbar-intermittent",
                             sessions_planned=20)
        cost = uow.costs.add(pid, {"lines": [{"code": "S9090", "amount": 150.0}]}, plan_id=plan.id,
                             total=3000.0, currency="USD", payer="self-pay")
        visit = uow.visits.add(pid, {"go": True, "nprs": 5}, plan_id=plan.id, visit_no=1,
                               decision="go")
        se = uow.side_effects.add(pid, {"note": "mild soreness"}, kind="soreness", severity="mild",
                                  visit_id=visit.id)
        out = uow.outcomes.add(pid, {"answers": [1, 2]}, measure="nprs", score=5.0, plan_id=plan.id,
                               visit_id=visit.id)
    with store.unit("dr.lee") as uow:
        d = uow.decisions.get(dec.id)
        assert d.document == decision.model_dump(mode="json")
        assert FakeDecision.model_validate(d.document) == decision
        assert (d.outcome, d.pathway, d.intake_id) == ("candidate", "decompression", intake.id)
        assert uow.plans.get(plan.id).sessions_planned == 20
        assert uow.costs.get(cost.id).total == 3000.0
        assert [v.id for v in uow.visits.for_patient(pid)] == [visit.id]
        assert uow.side_effects.get(se.id).severity == "mild"
        assert uow.outcomes.get(out.id).score == 5.0
        uow.plans.update(plan.id, status="completed", reason="course finished")
        uow.outcomes.update(out.id, score=4.0, reason="typo at entry")
        uow.side_effects.delete(se.id, reason="entered on the wrong patient")
    with store.unit("auditor") as uow:
        log = uow.audit.entries()
    assert [(e.entity, e.action) for e in log] == [
        ("patient", "create"), ("intake", "create"), ("screening_decision", "create"),
        ("course_plan", "create"), ("cost_estimate", "create"), ("visit", "create"),
        ("side_effect", "create"), ("outcome", "create"), ("course_plan", "update"),
        ("outcome", "update"), ("side_effect", "delete")]
    assert log[8].before == {"status": "planned"} and log[8].after == {"status": "completed"}
    assert log[9].before == {"score": 5.0} and log[9].after == {"score": 4.0}
    assert log[10].before is not None and log[10].before["document"] == {"note": "mild soreness"}


def test_update_without_change_writes_no_audit_entry(store: Store) -> None:
    pid = _patient(store)
    with store.unit("dr.lee") as uow:
        uow.patients.update(pid, PatientChanges(name="Ann Example"))
        assert len(uow.audit.entries(entity="patient")) == 1


def test_audit_log_is_append_only_in_the_database(store: Store) -> None:
    _patient(store)
    for stmt in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(stmt))
    with store.unit("auditor") as uow:
        assert [e.actor for e in uow.audit.entries()] == ["dr.lee"]


def _start(pid: int) -> SessionStart:
    return SessionStart(patient_id=pid, protocol_name="p", region="lumbar", mode="static",
                        body_weight_kg=80.0, rate_hz=1000.0, clinical_rate_hz=100.0, device="sim",
                        protocol={"name": "p"}, spec={"rate_hz": 1000.0}, host="elsewhere", pid=1)


def test_session_create_finalize_and_crash_abort(store: Store) -> None:
    pid = _patient(store)
    with store.unit("dr.lee") as uow:
        s1 = uow.sessions.create(_start(pid))
        s2 = uow.sessions.create(_start(pid))
        assert [s.id for s in uow.sessions.open_sessions()] == [s1.id, s2.id]
    end = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    with store.unit("writer") as uow:
        uow.sessions.finalize(s1.id, Finalization("completed", None, {"peak_force_n": 300.0}, end,
                                                  actor="dr.lee"))
        assert uow.sessions.mark_aborted(s1.id) is None  # a finished session stays finished
        aborted = uow.sessions.mark_aborted(s2.id)
    assert aborted is not None and aborted.abort_reason == "process ended unexpectedly"
    with store.unit("auditor") as uow:
        done = uow.sessions.get(s1.id)
        assert (done.state, done.summary, done.ended_at) == ("completed", {"peak_force_n": 300.0}, end)
        assert [s.id for s in uow.sessions.all(patient_id=pid)] == [s2.id, s1.id]
        assert uow.sessions.events(s2.id)[-1].reason == "idle -> aborted: process ended unexpectedly"
        fin = uow.audit.entries(entity="session", entity_id=s1.id)[-1]
    assert fin.actor == "dr.lee" and fin.after is not None and fin.after["state"] == "completed"


def test_user_accounts_are_audited_without_the_hash(store: Store) -> None:
    with store.unit("admin") as uow:
        u = uow.users.add(username="dr.lee", role="clinician", password_hash="$argon2id$secret",
                          full_name="Dr Lee")
        with pytest.raises(Conflict, match="already exists"):
            uow.users.add(username="dr.lee", role="admin", password_hash="x")
    with store.unit("admin") as uow:
        off = uow.users.set_active(u.id, False, reason="left the clinic")
        assert off.active is False
        uow.users.set_active(u.id, False)  # no change, no entry
        with pytest.raises(NotFound):
            uow.users.set_active(999, True)
    with store.unit("reader") as uow:
        assert [x.username for x in uow.users.all()] == ["dr.lee"]
        assert uow.users.by_name("nobody") is None
        found = uow.users.password_hash("dr.lee")
        assert found is not None and found[1] == "$argon2id$secret"
        entries = uow.audit.entries(entity="user", entity_id=u.id)
    assert [(e.actor, e.action) for e in entries] == [("admin", "create"), ("admin", "update")]
    assert entries[0].after is not None and entries[0].after["username"] == "dr.lee"
    assert all("password_hash" not in str(e.before) + str(e.after) for e in entries)
    assert entries[1].before == {"active": True} and entries[1].after == {"active": False}
    assert entries[1].reason == "left the clinic"


def _ended_session_with_alarms(store: Store, pid: int) -> int:
    with store.unit("dr.lee") as uow:
        sid = uow.sessions.create(_start(pid)).id
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    alarms = [AlarmRow(seq=i, t=float(i), kind=k, code=c, priority="medium", technical=False,
                       condition=k, value=1.0, force_n=200.0, action="controlled release")
              for i, (k, c) in enumerate((("operator-stop", 10), ("overforce", 3)), start=1)]
    with store.unit("writer") as uow:
        assert uow.telemetry.write_batch(Batch(session_id=sid, seq=1, wall_at=now, samples=10,
                                               last_t=2.0, state="running", alarms=alarms))
    return sid


def test_alarms_acknowledged_after_the_session_are_audited(store: Store) -> None:
    pid = _patient(store)
    sid = _ended_session_with_alarms(store, pid)
    with store.unit("dr.kim") as uow, pytest.raises(Conflict, match="live page"):
        uow.sessions.acknowledge_alarms(sid)  # still running: the engine acknowledges
    with store.unit("writer") as uow:
        uow.sessions.finalize(sid, Finalization("aborted", "operator-stop", None,
                                                datetime(2026, 11, 23, 10, 1, tzinfo=UTC),
                                                actor="dr.lee"))
    with store.unit("dr.kim") as uow:
        with pytest.raises(NotFound, match="no alarm 9"):
            uow.sessions.acknowledge_alarms(sid, seqs=[2, 9])
        first = uow.sessions.acknowledge_alarms(sid, seqs=[2], reason="reviewed the trace")
        assert [(a.seq, a.acknowledged, a.acknowledged_by) for a in first] == [(2, True, "dr.kim")]
    with store.unit("dr.lee") as uow:
        rest = uow.sessions.acknowledge_alarms(sid)
        assert [a.seq for a in rest] == [1]
        assert uow.sessions.acknowledge_alarms(sid) == []  # nothing left: no new entries
        with pytest.raises(NotFound):
            uow.sessions.acknowledge_alarms(999)
    with store.unit("auditor") as uow:
        stored = [(a.seq, a.acknowledged_by) for a in uow.sessions.alarms(sid)]
        entries = uow.audit.entries(entity="session_alarm")
    assert stored == [(1, "dr.lee"), (2, "dr.kim")]
    assert [(e.actor, e.entity_id, e.reason) for e in entries] == [
        ("dr.kim", f"{sid}/2", "reviewed the trace"),
        ("dr.lee", f"{sid}/1", "operator-stop acknowledged after the session")]
    assert entries[0].before == {"acknowledged": False, "acknowledged_by": None}
    assert entries[0].after == {"acknowledged": True, "acknowledged_by": "dr.kim"}
