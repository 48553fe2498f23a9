"""Browser tests: Debian's chromium driven by Playwright against a real server on loopback,
with a real control process on the simulated table. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORDS, LiveServer, make_env, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} not installed (apt-get install -y chromium)"),
]

if os.path.exists(CHROMIUM):
    from playwright.sync_api import BrowserContext, Page, expect, sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = make_env(tmp_path_factory.mktemp("web"))
    ls = start_server(env)
    yield ls
    stop_server(ls)
    env.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=ARGS,
                                                   headless=True, viewport={"width": 1280,
                                                                            "height": 900})
        yield ctx
        ctx.close()


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(url + "/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#login")
    expect(page.locator(".who")).to_contain_text(name)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def frame(page: Page) -> list[float] | None:
    f: list[float] | None = page.evaluate("() => window.__lastFrame || null")
    return f


def test_wrong_role_is_refused(server: LiveServer, browser: BrowserContext) -> None:
    page = browser.new_page()
    page.goto(server.url + "/login")
    shot(page, "login")
    page.fill("#username", "desk")
    page.fill("#password", "wrong password")
    page.click("#login")
    expect(page.locator(".error")).to_contain_text("wrong user name or password")
    log_in(page, server.url, "desk")
    expect(page.locator("#nav-live")).to_have_count(0)  # no telemetry controls for the front desk
    resp = page.goto(server.url + "/live")
    assert resp is not None and resp.status == 403
    assert "may not do this" in page.content()
    page.click("text=Log out") if page.locator("text=Log out").count() else None
    page.context.clear_cookies()
    page.close()


def test_screen_patient_run_session_adjust_and_stop(server: LiveServer,
                                                    browser: BrowserContext) -> None:
    page = browser.new_page()
    log_in(page, server.url, "doc")
    shot(page, "schedule")
    # Register and screen a patient.
    page.fill("input[name=code]", "P-100")
    page.fill("input[name=name]", "Sam Rivera")
    page.fill("input[name=weight_kg]", "80")
    page.click("text=Add")
    expect(page.locator("h1")).to_contain_text("Sam Rivera")
    shot(page, "patient")
    page.click("#do-intake")
    shot(page, "intake")
    page.click("#screen")
    expect(page.locator("#decision")).to_contain_text("candidate")
    shot(page, "screening")
    page.click("text=Start session 1")
    # The plan's next protocol is preselected; this test picks the standard one.
    expect(page.locator("#protocol option:checked")).to_contain_text("plan's next")
    page.select_option("#protocol", "lumbar-intermittent")
    # Start without the set-up checks is refused with the reason.
    page.click("#start")
    expect(page.locator("#setup-msg")).to_contain_text("set-up not complete")
    page.check("#switch-tested")
    page.check("#harness-checked")
    page.click("#start")
    page.wait_for_function("() => window.__lastFrame && window.__lastFrame[1] > 1", timeout=30_000)
    t1 = frame(page)
    page.wait_for_timeout(500)
    t2 = frame(page)
    assert t1 is not None and t2 is not None and t2[1] > t1[1]  # the chart moves
    rate = int(page.inner_text("#rate") or 0)
    page.wait_for_timeout(1100)
    rate = int(page.inner_text("#rate"))
    assert rate >= 20, f"only {rate} frames/s"
    # Wait for the first hold, then raise max force by 10 lb and watch the force follow.
    page.wait_for_function("() => window.__lastFrame && window.__lastFrame[8] === 2", timeout=40_000)
    before = frame(page)
    assert before is not None
    new_lb = round(before[2] * 0.2248089431) + 10
    page.fill("#max-force", str(new_lb))
    page.click("button[data-edit=max_force_n]")
    new_n = new_lb / 0.2248089431
    page.wait_for_function(f"() => window.__lastFrame[2] > {new_n - 2}", timeout=20_000)
    page.wait_for_function(f"() => Math.abs(window.__lastFrame[3] - {new_n}) < 0.03 * {new_n}",
                           timeout=30_000)
    expect(page.locator("#events")).to_contain_text("max_force")
    shot(page, "live")
    # STOP: controlled release and the operator-stop alarm.
    page.click("#stop")
    expect(page.locator("#alarms li.alarm-medium")).to_contain_text("operator pressed STOP",
                                                                    timeout=10_000)
    page.click("#ack")  # while the table releases: alarms are acknowledged on the engine
    expect(page.locator("#alarms li.acked")).to_have_count(1, timeout=10_000)
    page.wait_for_function("() => window.__lastFrame[3] < 40", timeout=30_000)
    expect(page.locator("#state")).to_have_text("aborted", timeout=30_000)
    shot(page, "live-stopped")
    assert server.env.app.state.web.live.wait_finished(30)
    sid = server.env.app.state.web.live.session_id
    with server.env.store.unit("t") as uow:
        rec = uow.sessions.get(sid)
        events = uow.sessions.events(sid)
    assert rec.state == "aborted" and rec.created_by == "doc"
    assert any(e.kind == "edit" and e.field == "max_force_n" for e in events)
    # Workflow pages after the session.
    pid = server.env.app.state.web.live.patient_id
    for path, name in ((f"/patients/{pid}/plan", "plan"), (f"/patients/{pid}/visit", "visit"),
                       (f"/patients/{pid}/cost", "cost"), (f"/patients/{pid}/summary", "summary")):
        page.goto(server.url + path)
        shot(page, name)
    page.goto(server.url + f"/patients/{pid}/visit")
    page.click("#check-in")
    expect(page.locator("#go")).to_contain_text("Go / no-go")
    page.fill("input[name=pain_before]", "7")
    page.fill("input[name=pain_after]", "4")
    page.select_option("select[name=timepoint]", "baseline")
    page.click("#post-session")
    expect(page.locator("#saved")).to_contain_text("NPRS 4")
    shot(page, "visit-saved")
    page.goto(server.url + "/outcomes")
    shot(page, "outcomes")
    page.context.clear_cookies()
    log_in(page, server.url, "boss")
    page.goto(server.url + "/admin")
    expect(page.locator("#users")).to_contain_text("desk")
    shot(page, "admin")
    page.close()
