"""API tests (httpx via Starlette's TestClient against the real app and a real SQLite store):
authentication, roles, CSRF, rate limiting, malformed bodies, audit, clinic workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from spinedecomp.store.repositories import SessionStart
from spinedecomp.store.telemetry_codec import AlarmRow, Batch, Finalization
from spinedecomp.web.settings import InsecureSettings, WebSettings
from tests.web.conftest import WebEnv, login, make_env

ROOT = Path(__file__).resolve().parents[2]
INTAKE = yaml.safe_load((ROOT / "examples/intakes/clear_candidate_lumbar.yaml").read_text())
for k in ("assessed_on",):
    INTAKE[k] = str(INTAKE[k])
for d in INTAKE["diagnostic_results"]:
    d["performed_on"] = str(d["performed_on"])

# (method, path, body, right needed): every endpoint of the API.
ENDPOINTS = [
    ("GET", "/api/v1/me", None, "schedule"),
    ("GET", "/api/v1/patients", None, "schedule"),
    ("POST", "/api/v1/patients", {"code": "X-1", "name": "X"}, "schedule"),
    ("GET", "/api/v1/patients/1", None, "schedule"),
    ("POST", "/api/v1/patients/1/screening", INTAKE, "clinical"),
    ("POST", "/api/v1/patients/1/visits/check-in", {"session_number": 1}, "clinical"),
    ("POST", "/api/v1/patients/1/visits/post-session",
     {"session_number": 1, "pain_before": 6, "pain_after": 4}, "clinical"),
    ("POST", "/api/v1/patients/1/outcomes",
     {"timepoint": "baseline", "measurement": {"nprs": 7}}, "clinical"),
    ("GET", "/api/v1/patients/1/report", None, "schedule"),
    ("GET", "/api/v1/outcomes/cohort", None, "schedule"),
    ("GET", "/api/v1/sessions", None, "schedule"),
    ("GET", "/api/v1/sessions/1", None, "live"),
    ("POST", "/api/v1/sessions/1/alarms/acknowledge", {}, "live"),
    ("GET", "/api/v1/protocols", None, "live"),
    ("GET", "/api/v1/live/status", None, "live"),
    ("POST", "/api/v1/live/start", {"protocol": "lumbar-intermittent", "switch_tested": True,
                                    "harness_checked": True}, "live"),
    ("POST", "/api/v1/live/command", {"kind": "pause"}, "live"),
    ("POST", "/api/v1/live/take-control", {}, "live"),
    ("GET", "/api/v1/users", None, "admin"),
    ("POST", "/api/v1/users", {"username": "new1", "role": "clinician",
                               "password": "long-enough-1"}, "admin"),
    ("POST", "/api/v1/users/1/active", {"active": True}, "admin"),
    ("GET", "/api/v1/audit", None, "admin"),
]
RIGHTS = {"doc": {"schedule", "clinical", "live"}, "desk": {"schedule"},
          "boss": {"schedule", "admin"}}


def audit_count(env: WebEnv) -> int:
    with env.store.unit("test") as uow:
        return len(uow.audit.entries())


def test_default_secret_refused_outside_demo() -> None:
    with pytest.raises(InsecureSettings):
        WebSettings()
    assert WebSettings(secret_key="x" * 32).demo is False


@pytest.mark.parametrize(("method", "path", "body", "right"), ENDPOINTS)
def test_unauthenticated_is_401_and_stores_nothing(env: WebEnv, method: str, path: str,
                                                  body: object, right: str) -> None:
    c = TestClient(env.app)
    before = audit_count(env)
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    r = c.request(method, path, json=body, headers={"X-CSRF-Token": tok})
    assert r.status_code == 401
    assert r.json()["detail"] == "log in first"
    assert audit_count(env) == before


def test_wrong_role_is_403_on_every_endpoint(env: WebEnv) -> None:
    for name in ("desk", "boss"):
        c = TestClient(env.app)
        tok = login(c, name)
        for method, path, body, right in ENDPOINTS:
            if right in RIGHTS[name]:
                continue
            before = audit_count(env)
            r = c.request(method, path, json=body, headers={"X-CSRF-Token": tok})
            assert r.status_code == 403, (name, path, r.text)
            assert audit_count(env) == before
    assert not env.app.state.web.live.active  # the front desk never started the table


def test_state_change_without_csrf_is_refused(env: WebEnv) -> None:
    c = TestClient(env.app)
    login(c, "doc")
    r = c.post("/api/v1/patients", json={"code": "P-9", "name": "No Token"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = c.post("/api/v1/patients", json={"code": "P-9", "name": "No Token"},
               headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert all(p["code"] != "P-9" for p in c.get("/api/v1/patients").json())
    # Login itself needs the token, so another site cannot log a browser in.
    c2 = TestClient(env.app)
    r = c2.post("/api/v1/auth/login", json={"username": "doc", "password": "doc-password-1"})
    assert r.status_code == 403


def test_session_cookie_is_httponly_and_samesite(env: WebEnv) -> None:
    c = TestClient(env.app)
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    r = c.post("/api/v1/auth/login", json={"username": "doc", "password": "doc-password-1"},
               headers={"X-CSRF-Token": tok})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/api/v1/me").json()["role"] == "clinician"
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    assert c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": tok}).status_code == 204
    assert c.get("/api/v1/me").status_code == 401


def test_login_rate_limit(tmp_path: Path) -> None:
    env = make_env(tmp_path, login_max_failures=3)
    c = TestClient(env.app)
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    codes = [c.post("/api/v1/auth/login", json={"username": "doc", "password": "wrong-one"},
                    headers={"X-CSRF-Token": tok}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # Even the right password waits out the window.
    r = c.post("/api/v1/auth/login", json={"username": "doc", "password": "doc-password-1"},
               headers={"X-CSRF-Token": tok})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    env.store.close()


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/patients", {"code": "", "name": "x"}),
    ("/api/v1/patients", {"code": "A", "name": "x", "body_weight_kg": -3}),
    ("/api/v1/patients", "not json"),
    ("/api/v1/patients/1/screening", {**INTAKE, "weight_kg": -3}),
    ("/api/v1/patients/1/screening", {**INTAKE, "region": "elbow"}),
    ("/api/v1/patients/1/visits/check-in", {"session_number": 0}),
    ("/api/v1/patients/1/visits/post-session", {"session_number": 1, "pain_before": 11,
                                                "pain_after": 2}),
    ("/api/v1/patients/1/outcomes", {"timepoint": "later", "measurement": {"nprs": 3}}),
    ("/api/v1/patients/1/outcomes", {"timepoint": "baseline", "measurement": {}}),
    ("/api/v1/live/start", {"protocol": "lumbar-intermittent"}),
    ("/api/v1/live/start", {"protocol": "nope", "switch_tested": True, "harness_checked": True}),
    ("/api/v1/live/command", {"kind": "edit", "field": "colour", "value": 3}),
    ("/api/v1/live/command", {"kind": "launch"}),
    ("/api/v1/users", {"username": "UPPER case", "role": "clinician", "password": "long-enough-1"}),
    ("/api/v1/users", {"username": "short", "role": "clinician", "password": "short"}),
    ("/api/v1/users", {"username": "x1", "role": "god", "password": "long-enough-1"}),
])
def test_malformed_bodies_are_422_and_store_nothing(env: WebEnv, path: str, body: object) -> None:
    c = TestClient(env.app)
    name = "boss" if path.startswith("/api/v1/users") else "doc"
    tok = login(c, name)
    with env.store.unit("t") as uow:
        uow.patients.demo()
    before = audit_count(env)
    if isinstance(body, str):
        r = c.post(path, content=body, headers={"X-CSRF-Token": tok,
                                                "Content-Type": "application/json"})
    else:
        r = c.post(path, json=body, headers={"X-CSRF-Token": tok})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert audit_count(env) == before
    assert not env.app.state.web.live.active


def test_clinic_workflow_is_stored_and_audited(env: WebEnv) -> None:
    desk = TestClient(env.app)
    dtok = login(desk, "desk")
    r = desk.post("/api/v1/patients", json={"code": "P-1", "name": "Ann Lee", "body_weight_kg": 70},
                  headers={"X-CSRF-Token": dtok})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert desk.post("/api/v1/patients", json={"code": "P-1", "name": "Dup"},
                     headers={"X-CSRF-Token": dtok}).status_code == 409
    doc = TestClient(env.app)
    tok = login(doc, "doc")
    r = doc.post(f"/api/v1/patients/{pid}/screening", json=INTAKE, headers={"X-CSRF-Token": tok})
    assert r.status_code == 201, r.text
    rep = r.json()["report"]
    assert rep["decision"]["status"] == "candidate"
    assert all(x["citation"] for x in rep["decision"]["reasons"])
    assert r.json()["plan_id"] is not None
    r = doc.post(f"/api/v1/patients/{pid}/visits/check-in", json={"session_number": 1},
                 headers={"X-CSRF-Token": tok})
    assert r.status_code == 201 and r.json()["go"]["decision"]
    r = doc.post(f"/api/v1/patients/{pid}/visits/check-in",
                 json={"session_number": 2, "red_flags": {"saddle_anaesthesia": True}},
                 headers={"X-CSRF-Token": tok})
    assert r.json()["go"]["alert"] is not None
    r = doc.post(f"/api/v1/patients/{pid}/visits/post-session",
                 json={"session_number": 1, "pain_before": 7, "pain_after": 5,
                       "side_effects": [{"effect": "muscle_soreness", "severity": "mild"}]},
                 headers={"X-CSRF-Token": tok})
    assert r.status_code in (201, 422), r.text  # side-effect ids come from the knowledge file
    for tp, nprs in (("baseline", 7), ("discharge", 3)):
        r = doc.post(f"/api/v1/patients/{pid}/outcomes",
                     json={"timepoint": tp, "measurement": {"nprs": nprs}},
                     headers={"X-CSRF-Token": tok})
        assert r.status_code == 201
    cohort = desk.get("/api/v1/outcomes/cohort").json()
    assert cohort["immediate"]["measured"] == 1 and cohort["immediate"]["improved"] == 1
    assert cohort["comparisons"][0]["published"] > 0
    f = desk.get(f"/api/v1/patients/{pid}").json()
    assert f["costs"] and f["plans"]
    assert desk.get("/api/v1/patients/999").status_code == 404
    boss = TestClient(env.app)
    login(boss, "boss")
    audit = boss.get("/api/v1/audit").json()
    actors = {(a["actor"], a["entity"]) for a in audit}
    assert ("desk", "patient") in actors and ("doc", "screening_decision") in actors
    assert ("doc", "outcome") in actors and ("doc", "visit") in actors


def test_admin_manages_accounts_audited(env: WebEnv) -> None:
    c = TestClient(env.app)
    tok = login(c, "boss")
    r = c.post("/api/v1/users", json={"username": "nurse.b", "role": "front-desk",
                                      "password": "long-enough-1"}, headers={"X-CSRF-Token": tok})
    assert r.status_code == 201 and "password" not in r.text
    assert c.post("/api/v1/users", json={"username": "nurse.b", "role": "front-desk",
                                         "password": "long-enough-1"},
                  headers={"X-CSRF-Token": tok}).status_code == 409
    uid = r.json()["id"]
    n = TestClient(env.app)
    ntok = n.get("/api/v1/auth/csrf").json()["csrf_token"]
    assert n.post("/api/v1/auth/login", json={"username": "nurse.b", "password": "long-enough-1"},
                  headers={"X-CSRF-Token": ntok}).status_code == 200
    assert c.post(f"/api/v1/users/{uid}/active", json={"active": False, "reason": "left"},
                  headers={"X-CSRF-Token": tok}).json()["active"] is False
    assert n.get("/api/v1/me").status_code == 401  # disabled at once, not at next login
    entries = [a for a in c.get("/api/v1/audit").json() if a["entity"] == "user"]
    assert {a["action"] for a in entries} >= {"create", "update"}


def test_pages_by_role(env: WebEnv) -> None:
    anon = TestClient(env.app, follow_redirects=False)
    r = anon.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert anon.get("/static/live.js").status_code == 200
    desk = TestClient(env.app)
    login(desk, "desk")
    assert desk.get("/").status_code == 200
    assert "Live session" not in desk.get("/").text
    assert desk.get("/live").status_code == 403
    assert desk.get("/outcomes").status_code == 200
    assert desk.get("/admin").status_code == 403
    doc = TestClient(env.app)
    login(doc, "doc")
    assert "STOP" in doc.get("/live").text
    with env.store.unit("t") as uow:
        pid = uow.patients.demo().id
    r = doc.get(f"/patients/{pid}/intake")
    assert r.status_code == 200 and "disc_herniation" in r.text
    assert doc.get("/api/v1/openapi.json").json()["info"]["title"]


def test_form_login_and_screening_page(env: WebEnv) -> None:
    import re

    c = TestClient(env.app, follow_redirects=False)
    page = c.get("/login").text
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = c.post("/login", data={"username": "doc", "password": "bad", "csrf_token": tok})
    assert r.status_code == 401 and "wrong user name or password" in r.text
    r = c.post("/login", data={"username": "doc", "password": "doc-password-1", "csrf_token": tok,
                               "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    with env.store.unit("t") as uow:
        pid = uow.patients.demo().id
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    r = c.post(f"/patients/{pid}/intake", data={"intake": yaml.safe_dump(INTAKE), "csrf_token": tok})
    assert r.status_code == 200 and "Decision: candidate" in r.text
    r = c.post(f"/patients/{pid}/intake", data={"intake": "weight_kg: -3", "csrf_token": tok})
    assert r.status_code == 422 and "region" in r.text


def stored_session_with_alarms(env: WebEnv) -> int:
    """A session as the control process leaves it: two latched alarms, not acknowledged."""
    with env.store.unit("doc") as uow:
        pid = uow.patients.demo().id
        sid = uow.sessions.create(SessionStart(
            patient_id=pid, protocol_name="lumbar-intermittent", region="lumbar",
            mode="intermittent", body_weight_kg=80.0, rate_hz=1000.0, clinical_rate_hz=100.0,
            device="sim", protocol={}, spec={}, host="here", pid=1)).id
    alarms = [AlarmRow(seq=i, t=10.0 * i, kind=k, code=i, priority=p, technical=False,
                       condition=c, value=1.0, force_n=150.0, action="controlled release")
              for i, (k, p, c) in enumerate((("operator-stop", "medium", "operator pressed STOP"),
                                             ("overforce", "high", "force above the clamp")),
                                            start=1)]
    with env.store.unit("writer") as uow:
        uow.telemetry.write_batch(Batch(session_id=sid, seq=1, wall_at=datetime.now(UTC),
                                        samples=100, last_t=20.0, state="running", alarms=alarms))
    return sid


def test_alarms_acknowledged_after_the_session(env: WebEnv) -> None:
    sid = stored_session_with_alarms(env)
    doc = TestClient(env.app, follow_redirects=False)
    tok = login(doc, "doc")
    h = {"X-CSRF-Token": tok}
    d = doc.get(f"/api/v1/sessions/{sid}").json()
    assert [(a["seq"], a["acknowledged"]) for a in d["alarms"]] == [(1, False), (2, False)]
    # While the session is open its alarms belong to the engine (live page).
    r = doc.post(f"/api/v1/sessions/{sid}/alarms/acknowledge", json={}, headers=h)
    assert r.status_code == 409 and "live page" in r.json()["detail"]
    assert "Acknowledge alarms (" not in doc.get(f"/sessions/{sid}").text
    with env.store.unit("writer") as uow:
        uow.sessions.finalize(sid, Finalization("aborted", "operator-stop", None,
                                                datetime.now(UTC), actor="doc"))
    assert doc.post("/api/v1/sessions/999/alarms/acknowledge", json={},
                    headers=h).status_code == 404
    assert doc.post(f"/api/v1/sessions/{sid}/alarms/acknowledge", json={"seqs": [7]},
                    headers=h).status_code == 404
    assert doc.post(f"/api/v1/sessions/{sid}/alarms/acknowledge", json={"seqs": [2]}).status_code \
        == 403  # no CSRF token
    r = doc.post(f"/api/v1/sessions/{sid}/alarms/acknowledge",
                 json={"seqs": [2], "reason": "reviewed the force trace"}, headers=h)
    assert r.status_code == 200, r.text
    assert [(a["seq"], a["acknowledged_by"]) for a in r.json()] == [(2, "doc")]
    # The session page lists the alarms and offers the button for the one left.
    page = doc.get(f"/sessions/{sid}").text
    assert "operator pressed STOP" in page and "yes, by doc" in page
    assert "Acknowledge alarms (1)" in page
    r = doc.post(f"/sessions/{sid}/acknowledge", data={"csrf_token": tok, "reason": "seen"})
    assert r.status_code == 303 and r.headers["location"] == f"/sessions/{sid}?acked=1"
    page = doc.get(r.headers["location"]).text
    assert "1 alarm(s) acknowledged" in page and "Acknowledge alarms (" not in page
    assert page.count("yes, by doc") == 2
    assert doc.post(f"/api/v1/sessions/{sid}/alarms/acknowledge", json={},
                    headers=h).json() == []  # nothing left
    with env.store.unit("t") as uow:
        entries = uow.audit.entries(entity="session_alarm")
    assert [(e.actor, e.entity_id, e.reason) for e in entries] == [
        ("doc", f"{sid}/2", "reviewed the force trace"), ("doc", f"{sid}/1", "seen")]
    # The front desk sees the session in the schedule but not its alarms.
    desk = TestClient(env.app, follow_redirects=False)
    dtok = login(desk, "desk")
    assert desk.get(f"/sessions/{sid}").status_code == 403
    assert desk.post(f"/sessions/{sid}/acknowledge",
                     data={"csrf_token": dtok}).status_code == 403
    assert f'href="/sessions/{sid}"' not in desk.get("/").text
    assert f'href="/sessions/{sid}"' in doc.get("/").text


def test_plan_page_shows_the_course_as_tables(env: WebEnv) -> None:
    import html
    import re

    from spinedecomp.clinic.intake import Intake
    from spinedecomp.clinic.report import build_report

    doc = TestClient(env.app)
    tok = login(doc, "doc")
    with env.store.unit("t") as uow:
        pid = uow.patients.demo().id
    assert doc.post(f"/api/v1/patients/{pid}/screening", json=INTAKE,
                    headers={"X-CSRF-Token": tok}).status_code == 201
    r = doc.get(f"/patients/{pid}/plan")
    assert r.status_code == 200
    page = html.unescape(r.text)
    assert '"starting_protocol"' not in page and "<pre" not in page  # no raw JSON any more
    plan = build_report(Intake.model_validate(INTAKE)).plan
    assert plan is not None

    def cells(table_id: str) -> list[list[str]]:
        m = re.search(rf'<table class="list" id="{table_id}">(.*?)</table>', page, re.S)
        assert m is not None, table_id
        return [[re.sub(r"<[^>]+>", "", c).strip()
                 for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
                for row in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S)]

    course = dict(row for row in cells("plan-course") if len(row) == 2)
    assert course["Sessions"] == str(plan.sessions) and course["Weeks"] == str(plan.weeks)
    week_row, sessions_row = cells("plan-frequency")
    assert week_row == ["Week", *[str(w.week) for w in plan.frequency]]
    assert sessions_row == ["Sessions", *[str(w.sessions) for w in plan.frequency]]
    assert sum(int(x) for x in sessions_row[1:]) == plan.sessions
    sp = plan.starting_protocol
    proto = dict(row for row in cells("plan-protocol") if len(row) == 2)
    assert proto["Protocol"] == sp.protocol_name
    assert proto["Hold force"] == f"{sp.max_force_lb:.0f} lb ({sp.max_force_n:.0f} N)"
    assert proto["Hold / rest"] == f"{sp.hold_s:g} s / {sp.rest_s:g} s"
    assert proto["Duration"] == f"{sp.duration_min:g} min"
    checkpoints = cells("plan-checkpoints")[1:]
    assert [(c[0], c[1], c[2]) for c in checkpoints] == [
        (c.kind.value.replace("_", "-"), "–" if c.after_session is None else str(c.after_session),
         str(c.week)) for c in plan.checkpoints]
    kinds = {c[0] for c in checkpoints}
    assert "reassessment" in kinds and "follow-up" in kinds
