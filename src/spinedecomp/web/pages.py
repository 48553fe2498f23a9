"""Server-rendered pages (Jinja2). Forms post here with the CSRF token as a hidden field; the
live page talks to the JSON API and the WebSocket from static/live.js."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.knowledge import load_knowledge
from spinedecomp.clinic.outcomes import Measurement
from spinedecomp.clinic.report import build_report
from spinedecomp.clinic.visits import PostSessionRecord, PreSessionCheck, pre_session_check
from spinedecomp.control.library import builtin_protocols
from spinedecomp.web import api
from spinedecomp.web.auth import Right, User, UserIn
from spinedecomp.web.deps import check_csrf, csrf_token, current_user, require, web

router = APIRouter(include_in_schema=False)
Schedule = Annotated[User, Depends(require(Right.SCHEDULE))]
Clinical = Annotated[User, Depends(require(Right.CLINICAL))]
Live = Annotated[User, Depends(require(Right.LIVE))]
Admin = Annotated[User, Depends(require(Right.ADMIN))]


def render(request: Request, name: str, user: User | None, status_code: int = 200,
           **ctx: Any) -> HTMLResponse:
    """Render a template with the user, their rights and the CSRF token."""
    rights = {r.value: user.can(r) for r in Right} if user else {}
    return web(request).templates.TemplateResponse(
        request, name, {"user": user, "rights": rights, "csrf": csrf_token(request),
                        "demo": web(request).settings.demo, **ctx}, status_code=status_code)


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", None, next=next, error=None)


@router.post("/login", dependencies=[Depends(check_csrf)])
def login_post(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
               next: Annotated[str, Form()] = "/") -> Response:
    """Log in from the form; back to the form with the reason on failure."""
    try:
        api.do_login(request, username, password)
    except HTTPException as exc:
        return render(request, "login.html", None, status_code=exc.status_code, next=next,
                      error=str(exc.detail))
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return RedirectResponse(target, status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout_post(request: Request) -> Response:
    """Log out."""
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: Schedule) -> HTMLResponse:
    """The schedule: patients and recent sessions."""
    with web(request).store.unit(user.username) as uow:
        patients = uow.patients.all()
        sessions = list(reversed(uow.sessions.all()))[:20]
    return render(request, "home.html", user, patients=patients, sessions=sessions)


@router.post("/patients")
def add_patient(request: Request, user: Schedule, code: Annotated[str, Form()],
                name: Annotated[str, Form()], weight_kg: Annotated[str, Form()] = "") -> Response:
    """Register a patient from the home page form."""
    from spinedecomp.store.repositories import PatientIn, StoreError

    try:
        new = PatientIn(code=code, name=name, body_weight_kg=float(weight_kg) if weight_kg else None)
        with web(request).store.unit(user.username) as uow:
            p = uow.patients.add(new, reason="web")
    except (ValidationError, ValueError, StoreError) as exc:
        with web(request).store.unit(user.username) as uow:
            patients = uow.patients.all()
        msg = _errors(exc) if isinstance(exc, ValidationError) else [str(exc)]
        return render(request, "home.html", user, status_code=422, patients=patients, sessions=[],
                      errors=msg)
    return RedirectResponse(f"/patients/{p.id}", status_code=303)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(request: Request, user: Schedule, patient_id: int) -> HTMLResponse:
    """A patient's file (clinical documents for clinicians only)."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        clinical = user.can(Right.CLINICAL)
        ctx: dict[str, Any] = {
               "p": p, "plans": uow.plans.for_patient(p.id), "costs": uow.costs.for_patient(p.id),
               "sessions": list(reversed(uow.sessions.all(patient_id=p.id))),
               "decisions": uow.decisions.for_patient(p.id) if clinical else [],
               "visits": uow.visits.for_patient(p.id) if clinical else [],
               "outcomes": uow.outcomes.for_patient(p.id) if clinical else []}
    return render(request, "patient.html", user, **ctx)


def _example_intake(weight: float | None, code: str) -> str:
    from importlib import resources

    _ = resources  # the example lives in the repository, not the package
    from pathlib import Path

    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        f = base / "examples" / "intakes" / "clear_candidate_lumbar.yaml"
        if f.is_file():
            data = yaml.safe_load(f.read_text())
            data["patient_id"] = code
            if weight:
                data["weight_kg"] = weight
            data["assessed_on"] = date.today().isoformat()
            return yaml.safe_dump(data, sort_keys=False)
    return ""


@router.get("/patients/{patient_id}/intake", response_class=HTMLResponse)
def intake_form(request: Request, user: Clinical, patient_id: int) -> HTMLResponse:
    """Intake form (YAML or JSON, pre-filled with an example to edit)."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
    return render(request, "intake.html", user, p=p, text=_example_intake(p.body_weight_kg, p.code),
                  errors=[])


@router.post("/patients/{patient_id}/intake", response_class=HTMLResponse)
def intake_post(request: Request, user: Clinical, patient_id: int,
                intake: Annotated[str, Form()]) -> HTMLResponse:
    """Screen the intake and show the decision with reasons and citations (stored)."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        try:
            data = yaml.safe_load(intake)
            model = Intake.model_validate(data)
        except ValidationError as exc:
            return render(request, "intake.html", user, status_code=422, p=p, text=intake,
                          errors=_errors(exc))
        except yaml.YAMLError as exc:
            return render(request, "intake.html", user, status_code=422, p=p, text=intake,
                          errors=[f"not valid YAML/JSON: {exc}"])
        out = api.store_screening(uow, patient_id, model)
    return render(request, "screening.html", user, p=p, r=out.report, out=out)


@router.get("/patients/{patient_id}/plan", response_class=HTMLResponse)
def plan_page(request: Request, user: Clinical, patient_id: int) -> HTMLResponse:
    """The course plan from the latest screening."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        r = build_report(api.latest_intake(uow, patient_id), start_date=date.today())
    return render(request, "plan.html", user, p=p, r=r)


@router.get("/patients/{patient_id}/visit", response_class=HTMLResponse)
def visit_page(request: Request, user: Clinical, patient_id: int) -> HTMLResponse:
    """Check-in (go/no-go) and post-session forms."""
    kb = load_knowledge()
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        n = 1 + sum(1 for v in uow.visits.for_patient(p.id) if v.decision != "post-session")
    return render(request, "visit.html", user, p=p, n=n, red_flags=[r.id for r in kb.red_flags],
                  side_effects=[s.id for s in kb.side_effects], go=None, errors=[], saved=None)


@router.post("/patients/{patient_id}/visit/check-in", response_class=HTMLResponse)
async def visit_check_in(request: Request, user: Clinical, patient_id: int) -> HTMLResponse:
    """Store the check-in and show the go/no-go."""
    form = await request.form()
    kb = load_knowledge()
    flags = {r.id: form.get(f"rf_{r.id}") == "on" for r in kb.red_flags}
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        try:
            check = PreSessionCheck(session_number=int(str(form.get("session_number", "1"))),
                                    red_flags=flags)
        except (ValidationError, ValueError) as exc:
            errs = _errors(exc) if isinstance(exc, ValidationError) else [str(exc)]
            return render(request, "visit.html", user, status_code=422, p=p, n=1,
                          red_flags=list(flags), side_effects=[s.id for s in kb.side_effects],
                          go=None, errors=errs, saved=None)
        go = pre_session_check(api.latest_intake(uow, patient_id), check)
        plans = uow.plans.for_patient(patient_id)
        uow.visits.add(patient_id, {"check": check.model_dump(mode="json"),
                                    "go": go.model_dump(mode="json")},
                       plan_id=plans[-1].id if plans else None, visit_no=check.session_number,
                       decision=go.decision.value, reason="check-in (web)")
    return render(request, "visit.html", user, p=p, n=check.session_number, red_flags=list(flags),
                  side_effects=[s.id for s in kb.side_effects], go=go, errors=[], saved=None)


@router.post("/patients/{patient_id}/visit/post", response_class=HTMLResponse)
async def visit_post(request: Request, user: Clinical, patient_id: int) -> HTMLResponse:
    """Post-session record (pain, side effects) and outcome questionnaires."""
    form = await request.form()
    kb = load_knowledge()
    se = [{"effect": s.id, "severity": str(form.get(f"sev_{s.id}"))} for s in kb.side_effects
          if form.get(f"se_{s.id}") == "on"]
    saved: list[str] = []
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        try:
            rec = PostSessionRecord.model_validate({
                "session_number": int(str(form.get("session_number", "1"))),
                "pain_before": int(str(form.get("pain_before", ""))),
                "pain_after": int(str(form.get("pain_after", ""))),
                "side_effects": se, "notes": str(form.get("notes", ""))})
            odi_raw = str(form.get("odi", "")).strip()
            ndi_raw = str(form.get("ndi", "")).strip()
            meas = Measurement.model_validate({
                "nprs": rec.pain_after,
                "odi": json.loads(odi_raw) if odi_raw else None,
                "ndi": json.loads(ndi_raw) if ndi_raw else None})
        except (ValidationError, ValueError) as exc:
            errs = _errors(exc) if isinstance(exc, ValidationError) else [f"not a number: {exc}"]
            return render(request, "visit.html", user, status_code=422, p=p, n=1,
                          red_flags=[r.id for r in kb.red_flags],
                          side_effects=[s.id for s in kb.side_effects], go=None, errors=errs,
                          saved=None)
        visit = uow.visits.add(patient_id, {"post": rec.model_dump(mode="json")},
                               visit_no=rec.session_number, decision="post-session",
                               reason="post-session record (web)")
        for s in rec.side_effects:
            uow.side_effects.add(patient_id, s, kind=s.effect, severity=s.severity.value,
                                 visit_id=visit.id, reason="reported after session")
            saved.append(f"side effect {s.effect} ({s.severity.value})")
        tp = str(form.get("timepoint", "")) or None
        from spinedecomp.clinic.outcomes import Measure

        for m in Measure:
            score = meas.value(m)
            if score is not None:
                uow.outcomes.add(patient_id, {"timepoint": tp or "post-session",
                                              "measurement": meas.model_dump(mode="json")},
                                 measure=m.value, score=score, visit_id=visit.id,
                                 reason=f"{m.value} after session (web)")
                saved.append(f"{m.value.upper()} {score:g}")
    return render(request, "visit.html", user, p=p, n=rec.session_number + 1,
                  red_flags=[r.id for r in kb.red_flags], side_effects=[s.id for s in kb.side_effects],
                  go=None, errors=[], saved=saved)


@router.get("/patients/{patient_id}/cost", response_class=HTMLResponse)
def cost_page(request: Request, user: Schedule, patient_id: int) -> HTMLResponse:
    """The latest cost estimate."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        costs = uow.costs.for_patient(p.id)
    return render(request, "cost.html", user, p=p, cost=costs[-1].document if costs else None)


@router.get("/patients/{patient_id}/summary", response_class=HTMLResponse)
def summary_page(request: Request, user: Schedule, patient_id: int) -> HTMLResponse:
    """Printable plain-language summary for the patient."""
    with web(request).store.unit(user.username) as uow:
        p = api._patient(uow, patient_id)
        r = build_report(api.latest_intake(uow, patient_id), start_date=date.today())
    return render(request, "summary.html", user, p=p, r=r)


@router.get("/outcomes", response_class=HTMLResponse)
def outcomes_page(request: Request, user: Schedule) -> HTMLResponse:
    """The clinic's outcome figures beside the published ones, as a chart."""
    with web(request).store.unit(user.username) as uow:
        c = api.cohort(uow)
    return render(request, "outcomes.html", user, c=c)


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(request: Request, user: Live, session_id: int, acked: int | None = None) -> HTMLResponse:
    """A stored session: summary, events and latched alarms (acknowledge once it has ended)."""
    with web(request).store.unit(user.username) as uow:
        d = api.session_detail(uow, session_id)
        patient = uow.patients.get(d.session.patient_id)
    return render(request, "session.html", user, s=d.session, events=d.events, alarms=d.alarms,
                  patient=patient, acked=acked,
                  unacked=sum(1 for a in d.alarms if not a.acknowledged))


@router.post("/sessions/{session_id}/acknowledge")
def session_acknowledge(request: Request, user: Live, session_id: int,
                        reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    """The session page's "Acknowledge alarms" button."""
    done = api.acknowledge_stored_alarms(request, user, session_id, None, reason)
    return RedirectResponse(f"/sessions/{session_id}?acked={len(done)}", status_code=303)


@router.get("/live", response_class=HTMLResponse)
def live_page(request: Request, user: Live, patient_id: int | None = None) -> HTMLResponse:
    """The live session page."""
    with web(request).store.unit(user.username) as uow:
        patients = uow.patients.all()
        plan_protocol = None
        if patient_id is not None:
            plans = uow.plans.for_patient(patient_id)
            plan_protocol = plans[-1].protocol_name if plans else None
    return render(request, "live.html", user, protocols=list(builtin_protocols().values()),
                  patients=patients, patient_id=patient_id, plan_protocol=plan_protocol)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, user: Admin) -> HTMLResponse:
    """Accounts and the audit log."""
    with web(request).store.unit(user.username) as uow:
        audit = list(reversed(uow.audit.entries()))[:100]
    return render(request, "admin.html", user, users=web(request).users.all(), audit=audit,
                  errors=[])


@router.post("/admin/users", response_class=HTMLResponse)
def admin_add_user(request: Request, user: Admin, username: Annotated[str, Form()],
                   role: Annotated[str, Form()], password: Annotated[str, Form()],
                   full_name: Annotated[str, Form()] = "") -> Response:
    """Create an account from the admin page."""
    from spinedecomp.store.repositories import StoreError

    try:
        web(request).users.add(UserIn(username=username, role=role, password=password,
                                      full_name=full_name), actor=user.username)
    except (ValidationError, StoreError) as exc:
        with web(request).store.unit(user.username) as uow:
            audit = list(reversed(uow.audit.entries()))[:100]
        errs = _errors(exc) if isinstance(exc, ValidationError) else [str(exc)]
        return render(request, "admin.html", user, status_code=422, users=web(request).users.all(),
                      audit=audit, errors=errs)
    return RedirectResponse("/admin", status_code=303)


__all__ = ["current_user", "router"]
