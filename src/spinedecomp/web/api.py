"""The JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json).

Every endpoint but login needs a logged-in user with the right role; every state change
needs the session's CSRF token in the ``X-CSRF-Token`` header and is audit-logged through
the store (clinical records by their repositories, accounts by `UserStore`, live commands as
session events recorded by the control process).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, ConfigDict, Field

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.outcomes import CohortSummary, Measurement, PatientOutcome, summarise_cohort
from spinedecomp.clinic.report import ClinicReport, build_report
from spinedecomp.clinic.visits import GoNoGo, PostSessionRecord, PreSessionCheck, pre_session_check
from spinedecomp.control.library import builtin_protocols
from spinedecomp.store.repositories import (
    AlarmRecord,
    AuditRecord,
    Conflict,
    CostRecord,
    EventRecord,
    NotFound,
    PatientIn,
    PatientRecord,
    PlanRecord,
    SessionRecord,
    StoreError,
    UnitOfWork,
)
from spinedecomp.web.auth import Right, User, UserIn
from spinedecomp.web.deps import check_csrf, client_of, csrf_token, require, web
from spinedecomp.web.live import LiveCommand, LiveError, StartRequest, Viewer

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")
Schedule = Annotated[User, Depends(require(Right.SCHEDULE))]
Clinical = Annotated[User, Depends(require(Right.CLINICAL))]
Live = Annotated[User, Depends(require(Right.LIVE))]
Admin = Annotated[User, Depends(require(Right.ADMIN))]


class LoginIn(BaseModel):
    """Login body."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class CsrfOut(BaseModel):
    """The session's CSRF token."""

    csrf_token: str


class PatientFileOut(BaseModel):
    """What every role may see of a patient: the record, plans, cost estimates, sessions."""

    patient: PatientRecord
    plans: list[PlanRecord]
    costs: list[CostRecord]
    sessions: list[SessionRecord]


class ScreeningOut(BaseModel):
    """A stored screening."""

    intake_id: int
    decision_id: int
    plan_id: int | None
    cost_id: int | None
    report: ClinicReport


class CheckInOut(BaseModel):
    """A stored visit check-in and its go/no-go."""

    visit_id: int
    go: GoNoGo


class PostSessionOut(BaseModel):
    """A stored post-session record."""

    visit_id: int
    side_effect_ids: list[int]
    outcome_id: int


class OutcomeIn(BaseModel):
    """Outcome questionnaires at one time point."""

    model_config = ConfigDict(extra="forbid")

    timepoint: Literal["baseline", "discharge", "six_months"]
    measurement: Measurement


class OutcomeOut(BaseModel):
    """Stored outcome ids, one per measure."""

    outcome_ids: list[int]


class StatusOut(BaseModel):
    """The live table's state."""

    active: bool
    state: str
    controller: str | None
    session_id: int | None
    protocol: str | None
    patient_id: int | None
    events: list[dict[str, Any]]
    alarms: list[dict[str, Any]]
    resolved: dict[str, Any] | None
    error: str | None
    viewers: int


class SessionDetailOut(BaseModel):
    """A stored session with its events and latched alarms."""

    session: SessionRecord
    events: list[EventRecord]
    alarms: list[AlarmRecord]


class AcknowledgeIn(BaseModel):
    """Which alarms of an ended session to acknowledge (all unacknowledged ones by default)."""

    model_config = ConfigDict(extra="forbid")

    seqs: list[int] | None = Field(default=None, max_length=1000)
    reason: str = Field(default="", max_length=500)


class ProtocolOut(BaseModel):
    """A built-in protocol, as the set-up panel lists it."""

    name: str
    description: str
    region: str
    mode: str
    hold_s: float
    rest_s: float
    angle_deg: float
    duration_min: float


def _store_errors(exc: StoreError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, Conflict):
        return HTTPException(status.HTTP_409_CONFLICT, str(exc))
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


# ---- auth ----------------------------------------------------------------------------------
@router.get("/auth/csrf", response_model=CsrfOut, tags=["auth"])
def get_csrf(request: Request) -> CsrfOut:
    """The CSRF token to send with every state change (also before logging in)."""
    return CsrfOut(csrf_token=csrf_token(request))


def do_login(request: Request, username: str, password: str) -> User:
    """Check the rate limit and the password; start the session (shared with the login page)."""
    st = web(request)
    client = client_of(request)
    wait = st.limiter.retry_after(client, username)
    if wait > 0:
        log.warning("login rate limit: %s as %s", client, username)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"too many failed logins; try again in {wait:.0f} s",
                            headers={"Retry-After": str(int(wait) + 1)})
    user = st.users.authenticate(username, password)
    if user is None:
        st.limiter.failed(client, username)
        log.warning("failed login for %r from %s", username, client)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    st.limiter.succeeded(client, username)
    request.session.clear()  # a fresh session (and CSRF token) at every login
    request.session["uid"] = user.id
    csrf_token(request)
    log.info("login: %s (%s) from %s", user.username, user.role.value, client)
    return user


@router.post("/auth/login", response_model=User, tags=["auth"],
             dependencies=[Depends(check_csrf)])
def login(request: Request, body: LoginIn) -> User:
    """Log in; sets the session cookie. 401 on a wrong password, 429 when rate limited."""
    return do_login(request, body.username, body.password)


@router.post("/auth/logout", status_code=204, tags=["auth"], dependencies=[Depends(check_csrf)])
def logout(request: Request) -> None:
    """End the session."""
    request.session.clear()


@router.get("/me", response_model=User, tags=["auth"])
def me(user: Schedule) -> User:
    """The logged-in user."""
    return user


# ---- patients and the clinic workflow ---------------------------------------------------
@router.get("/patients", response_model=list[PatientRecord], tags=["patients"])
def list_patients(request: Request, user: Schedule) -> list[PatientRecord]:
    """Every patient (the schedule)."""
    with web(request).store.unit(user.username) as uow:
        return uow.patients.all()


@router.post("/patients", response_model=PatientRecord, status_code=201, tags=["patients"])
def add_patient(request: Request, user: Schedule, body: PatientIn) -> PatientRecord:
    """Register a patient (front desk or clinician)."""
    try:
        with web(request).store.unit(user.username) as uow:
            return uow.patients.add(body.model_copy(update={"is_demo": False}), reason="web")
    except StoreError as exc:
        raise _store_errors(exc) from exc


def _patient(uow: UnitOfWork, patient_id: int) -> PatientRecord:
    try:
        return uow.patients.get(patient_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no patient {patient_id}") from exc


@router.get("/patients/{patient_id}", response_model=PatientFileOut, tags=["patients"])
def patient_file(request: Request, user: Schedule, patient_id: int) -> PatientFileOut:
    """A patient's record, plans, cost estimates and sessions."""
    with web(request).store.unit(user.username) as uow:
        p = _patient(uow, patient_id)
        return PatientFileOut(patient=p, plans=uow.plans.for_patient(p.id),
                              costs=uow.costs.for_patient(p.id),
                              sessions=uow.sessions.all(patient_id=p.id))


def store_screening(uow: UnitOfWork, patient_id: int, intake: Intake) -> ScreeningOut:
    """Screen an intake and store intake, decision, plan and cost estimate (each audited)."""
    report = build_report(intake, start_date=date.today())
    rec = uow.intakes.add(patient_id, intake, region=intake.region.value, reason="intake (web)")
    dec = uow.decisions.add(patient_id, report.decision, outcome=report.decision.status.value,
                            pathway=report.pathway.kind.value, intake_id=rec.id,
                            reason="screening decision (web)")
    plan_id = cost_id = None
    if report.plan is not None:
        plan_id = uow.plans.add(patient_id, report.plan, decision_id=dec.id,
                                region=report.plan.region.value,
                                protocol_name=report.plan.starting_protocol.protocol_name,
                                sessions_planned=report.plan.sessions,
                                reason="course plan from screening (web)").id
    if report.cost is not None:
        cost_id = uow.costs.add(patient_id, report.cost, plan_id=plan_id, currency="USD",
                                payer=report.cost.payer.value,
                                reason="cost estimate from screening (web)").id
    return ScreeningOut(intake_id=rec.id, decision_id=dec.id, plan_id=plan_id, cost_id=cost_id,
                        report=report)


@router.post("/patients/{patient_id}/screening", response_model=ScreeningOut, status_code=201,
             tags=["clinic"])
def screen_patient(request: Request, user: Clinical, patient_id: int, body: Intake) -> ScreeningOut:
    """Intake -> screening decision with reasons and citations, course plan, cost estimate."""
    with web(request).store.unit(user.username) as uow:
        _patient(uow, patient_id)
        return store_screening(uow, patient_id, body)


def latest_intake(uow: UnitOfWork, patient_id: int) -> Intake:
    """The patient's most recent intake (409 if none)."""
    intakes = uow.intakes.for_patient(patient_id)
    if not intakes:
        raise HTTPException(status.HTTP_409_CONFLICT, "screen the patient first (no intake)")
    return Intake.model_validate(intakes[-1].document)


@router.post("/patients/{patient_id}/visits/check-in", response_model=CheckInOut, status_code=201,
             tags=["clinic"])
def check_in(request: Request, user: Clinical, patient_id: int, body: PreSessionCheck) -> CheckInOut:
    """Visit check-in: the go/no-go for today's session, stored with its reasons."""
    with web(request).store.unit(user.username) as uow:
        _patient(uow, patient_id)
        go = pre_session_check(latest_intake(uow, patient_id), body)
        plans = uow.plans.for_patient(patient_id)
        visit = uow.visits.add(patient_id, {"check": body.model_dump(mode="json"),
                                            "go": go.model_dump(mode="json")},
                               plan_id=plans[-1].id if plans else None,
                               visit_no=body.session_number, decision=go.decision.value,
                               reason="check-in (web)")
        return CheckInOut(visit_id=visit.id, go=go)


@router.post("/patients/{patient_id}/visits/post-session", response_model=PostSessionOut,
             status_code=201, tags=["clinic"])
def post_session(request: Request, user: Clinical, patient_id: int,
                 body: PostSessionRecord) -> PostSessionOut:
    """After the session: pain before/after, side effects, red flags."""
    with web(request).store.unit(user.username) as uow:
        _patient(uow, patient_id)
        plans = uow.plans.for_patient(patient_id)
        visit = uow.visits.add(patient_id, {"post": body.model_dump(mode="json")},
                               plan_id=plans[-1].id if plans else None,
                               visit_no=body.session_number, decision="post-session",
                               reason="post-session record (web)")
        se = [uow.side_effects.add(patient_id, s, kind=s.effect, severity=s.severity.value,
                                   visit_id=visit.id, reason="reported after session").id
              for s in body.side_effects]
        out = uow.outcomes.add(patient_id, {"nprs": body.pain_after, "timepoint": "post-session"},
                               measure="nprs", score=float(body.pain_after), visit_id=visit.id,
                               reason="pain after session")
        return PostSessionOut(visit_id=visit.id, side_effect_ids=se, outcome_id=out.id)


@router.post("/patients/{patient_id}/outcomes", response_model=OutcomeOut, status_code=201,
             tags=["clinic"])
def add_outcome(request: Request, user: Clinical, patient_id: int, body: OutcomeIn) -> OutcomeOut:
    """NPRS, ODI and/or NDI at baseline, discharge or six months."""
    from spinedecomp.clinic.outcomes import Measure

    ids: list[int] = []
    with web(request).store.unit(user.username) as uow:
        _patient(uow, patient_id)
        for m in Measure:
            score = body.measurement.value(m)
            if score is None:
                continue
            doc = {"timepoint": body.timepoint,
                   "measurement": body.measurement.model_dump(mode="json")}
            ids.append(uow.outcomes.add(patient_id, doc, measure=m.value, score=score,
                                        reason=f"{m.value} at {body.timepoint} (web)").id)
    return OutcomeOut(outcome_ids=ids)


@router.get("/patients/{patient_id}/report", response_model=ClinicReport, tags=["clinic"])
def patient_report(request: Request, user: Schedule, patient_id: int) -> ClinicReport:
    """The latest screening report (plan, cost estimate, patient summary)."""
    with web(request).store.unit(user.username) as uow:
        _patient(uow, patient_id)
        return build_report(latest_intake(uow, patient_id), start_date=date.today())


def cohort(uow: UnitOfWork) -> CohortSummary:
    """The clinic's outcome figures from stored baseline/discharge/six-month measurements."""
    outcomes: list[PatientOutcome] = []
    for p in uow.patients.all(include_demo=True):
        points: dict[str, Measurement] = {}
        for o in uow.outcomes.for_patient(p.id):
            tp = o.document.get("timepoint")
            if tp in ("baseline", "discharge", "six_months") and "measurement" in o.document:
                points[str(tp)] = Measurement.model_validate(o.document["measurement"])
        intakes = uow.intakes.for_patient(p.id)
        if "baseline" not in points or not intakes:
            continue
        region = Intake.model_validate(intakes[-1].document).region
        outcomes.append(PatientOutcome(patient_id=p.code, region=region,
                                       baseline=points["baseline"],
                                       discharge=points.get("discharge"),
                                       six_months=points.get("six_months")))
    return summarise_cohort(outcomes)


@router.get("/outcomes/cohort", response_model=CohortSummary, tags=["clinic"])
def cohort_outcomes(request: Request, user: Schedule) -> CohortSummary:
    """Immediate and sustained improvement rates beside the published figures."""
    with web(request).store.unit(user.username) as uow:
        return cohort(uow)


@router.get("/sessions", response_model=list[SessionRecord], tags=["sessions"])
def list_sessions(request: Request, user: Schedule) -> list[SessionRecord]:
    """Stored treatment sessions, newest first."""
    with web(request).store.unit(user.username) as uow:
        return list(reversed(uow.sessions.all()))


def session_detail(uow: UnitOfWork, session_id: int) -> SessionDetailOut:
    """A stored session, its events and alarms (404 if none)."""
    try:
        rec = uow.sessions.get(session_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {session_id}") from exc
    return SessionDetailOut(session=rec, events=uow.sessions.events(session_id),
                            alarms=uow.sessions.alarms(session_id))


@router.get("/sessions/{session_id}", response_model=SessionDetailOut, tags=["sessions"])
def get_session(request: Request, user: Live, session_id: int) -> SessionDetailOut:
    """A stored session with its events and latched alarms."""
    with web(request).store.unit(user.username) as uow:
        return session_detail(uow, session_id)


def acknowledge_stored_alarms(request: Request, user: User, session_id: int,
                              seqs: list[int] | None, reason: str) -> list[AlarmRecord]:
    """Acknowledge latched alarms of an ended session (audited); 404 / 409 as the store says."""
    try:
        with web(request).store.unit(user.username) as uow:
            done = uow.sessions.acknowledge_alarms(session_id, seqs=seqs, reason=reason or None)
    except StoreError as exc:
        raise _store_errors(exc) from exc
    log.info("%s acknowledged %d alarm(s) of session %d after it ended", user.username,
             len(done), session_id)
    return done


@router.post("/sessions/{session_id}/alarms/acknowledge", response_model=list[AlarmRecord],
             tags=["sessions"])
def acknowledge_alarms(request: Request, user: Live, session_id: int,
                       body: AcknowledgeIn) -> list[AlarmRecord]:
    """Acknowledge the latched alarms of a session that has ended (each audit-logged; the
    answer lists those acknowledged now). 409 while the session runs: acknowledge on the live
    page then."""
    return acknowledge_stored_alarms(request, user, session_id, body.seqs, body.reason)


# ---- live ------------------------------------------------------------------------------------
@router.get("/protocols", response_model=list[ProtocolOut], tags=["live"])
def protocols(user: Live) -> list[ProtocolOut]:
    """The built-in protocols."""
    return [ProtocolOut(name=p.name, description=p.description, region=p.region.value,
                        mode=p.mode.value, hold_s=p.hold_s, rest_s=p.rest_s, angle_deg=p.angle_deg,
                        duration_min=p.duration_min) for p in builtin_protocols().values()]


def live_status(request: Request) -> StatusOut:
    """The live table's state as the API returns it."""
    live = web(request).live
    st = live.status()
    return StatusOut(active=st.active, state=st.state, controller=st.controller,
                     session_id=st.session_id, protocol=st.protocol, patient_id=st.patient_id,
                     events=st.events, alarms=st.alarms, resolved=st.resolved, error=st.error,
                     viewers=live.viewer_count)


@router.get("/live/status", response_model=StatusOut, tags=["live"])
def get_live_status(request: Request, user: Live) -> StatusOut:
    """State, controller, recent events and alarms of the table."""
    return live_status(request)


@router.post("/live/start", response_model=StatusOut, status_code=202, tags=["live"])
def start_live(request: Request, user: Live, body: StartRequest) -> StatusOut:
    """Set up and start a session on the table; the caller holds control."""
    if body.protocol not in builtin_protocols():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"unknown protocol {body.protocol!r}")
    if body.patient_id is not None:
        with web(request).store.unit(user.username) as uow:
            p = _patient(uow, body.patient_id)
            if p.body_weight_kg:
                body = body.model_copy(update={"body_weight_kg": p.body_weight_kg})
    try:
        web(request).live.start(body, user.username)
    except LiveError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return live_status(request)


@router.post("/live/command", status_code=202, response_model=StatusOut, tags=["live"])
def live_command(request: Request, user: Live, body: LiveCommand) -> StatusOut:
    """Adjust or stop the running session; applied at the control loop's next period and
    recorded as a session event."""
    try:
        web(request).live.command(body, user.username)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except LiveError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return live_status(request)


@router.post("/live/take-control", response_model=StatusOut, tags=["live"])
def take_control(request: Request, user: Live) -> StatusOut:
    """Take control of the running session from another clinician (logged)."""
    try:
        before = web(request).live.take_control(user.username)
    except LiveError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    with web(request).store.unit(user.username) as uow:
        uow.audit.append(actor=user.username, action="update", entity="table-control",
                         entity_id="table-1", before={"controller": before},
                         after={"controller": user.username}, reason="took control (web)")
    return live_status(request)


@router.websocket("/live/ws")
async def live_ws(ws: WebSocket) -> None:
    """Live frames, events, alarms and status for one viewer. Needs a clinician's session
    cookie and a same-origin page (the Origin header is checked against the Host)."""
    st = ws.app.state.web
    uid = ws.session.get("uid") if "session" in ws.scope else None
    origin = ws.headers.get("origin")
    host = ws.headers.get("host")
    user = None
    if isinstance(uid, int):
        try:
            user = st.users.get(uid)
        except NotFound:
            user = None
    if user is None or not user.can(Right.LIVE) or (
            origin is not None and origin.split("://", 1)[-1] != host):
        await ws.close(code=1008)
        return
    await ws.accept()
    viewer = Viewer(user.username, asyncio.get_running_loop())
    history, s = st.live.add_viewer(viewer)
    try:
        await ws.send_text(json.dumps({"type": "hello", "state": s.state, "controller": s.controller,
                                       "session_id": s.session_id, "active": s.active,
                                       "events": s.events, "alarms": s.alarms,
                                       "resolved": s.resolved, "frames": history[-1500:]},
                                      default=str))
        while True:
            text = await viewer.q.get()
            await ws.send_text(text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        st.live.remove_viewer(viewer)


# ---- accounts and audit ----------------------------------------------------------------
@router.get("/users", response_model=list[User], tags=["admin"])
def list_users(request: Request, user: Admin) -> list[User]:
    """Every account."""
    return web(request).users.all()


@router.post("/users", response_model=User, status_code=201, tags=["admin"])
def add_user(request: Request, user: Admin, body: UserIn) -> User:
    """Create an account."""
    try:
        return web(request).users.add(body, actor=user.username, reason="created in the dashboard")
    except StoreError as exc:
        raise _store_errors(exc) from exc


class ActiveIn(BaseModel):
    """Enable or disable an account."""

    model_config = ConfigDict(extra="forbid")

    active: bool
    reason: str = Field(default="", max_length=500)


@router.post("/users/{user_id}/active", response_model=User, tags=["admin"])
def set_active(request: Request, user: Admin, user_id: int, body: ActiveIn) -> User:
    """Enable or disable an account."""
    try:
        return web(request).users.set_active(user_id, body.active, actor=user.username,
                                             reason=body.reason or None)
    except StoreError as exc:
        raise _store_errors(exc) from exc


@router.get("/audit", response_model=list[AuditRecord], tags=["admin"])
def audit(request: Request, user: Admin, limit: int = 200) -> list[AuditRecord]:
    """The latest audit-log entries, newest first."""
    with web(request).store.unit(user.username) as uow:
        entries = uow.audit.entries()
    return list(reversed(entries))[: max(1, min(limit, 5000))]
