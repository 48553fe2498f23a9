"""Two browsers on one live session, against a real server (uvicorn on loopback), a real
control process at 1 kHz and real WebSockets: both viewers receive the same frames and
events; only the clinician holding control may adjust; STOP is accepted from either."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.web.conftest import LiveServer, login, make_env, start_server, stop_server

START = {"protocol": "lumbar-intermittent", "switch_tested": True, "harness_checked": True}


@dataclass
class ViewerLog:
    """What one WebSocket viewer received, in order."""

    name: str
    frames: list[tuple[float, float | None]] = field(default_factory=list)  # (t, force_n)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, reason)
    alarms: list[tuple[float, str]] = field(default_factory=list)
    hello_controller: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def live_frames(self) -> int:
        return len(self.frames)


def watch(server: LiveServer, cookie: str, log: ViewerLog, stop: threading.Event) -> None:
    """Viewer thread: record every frame, event and alarm until the session ends."""
    ws_url = server.url.replace("http://", "ws://") + "/api/v1/live/ws"
    try:
        with connect(ws_url, origin=Origin(server.url),
                     additional_headers={"Cookie": f"spinedecomp_session={cookie}"},
                     open_timeout=10) as ws:
            while not stop.is_set():
                try:
                    text = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                msg: dict[str, Any] = json.loads(text)
                kind = msg["type"]
                if kind == "hello":
                    log.hello_controller = msg["controller"]
                    log.frames.extend((f[1], f[3]) for f in msg["frames"])
                    log.events.extend((e["t"], e["kind"], e["reason"]) for e in msg["events"])
                    log.alarms.extend((a["t"], a["kind"]) for a in msg["alarms"])
                elif kind == "frame":
                    log.frames.append((msg["f"][1], msg["f"][3]))
                elif kind == "event":
                    d = msg["data"]
                    log.events.append((d["t"], d["kind"], d["reason"]))
                elif kind == "alarm":
                    log.alarms.append((msg["data"]["t"], msg["data"]["kind"]))
                elif kind == "end":
                    log.ended.set()
                    return
    except ConnectionClosed:
        pass
    except BaseException as exc:  # reported by the test
        log.error = exc


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    env = make_env(tmp_path)
    ls = start_server(env)
    try:
        yield ls
    finally:
        stop_server(ls)
        env.store.close()


def test_two_viewers_same_frames_one_controller_stop_from_either(server: LiveServer) -> None:
    live = server.env.app.state.web.live
    doc = httpx.Client(base_url=server.url, timeout=20)
    doc2 = httpx.Client(base_url=server.url, timeout=20)
    tok1, tok2 = login(doc, "doc"), login(doc2, "doc2")
    h1, h2 = {"X-CSRF-Token": tok1}, {"X-CSRF-Token": tok2}

    r = doc.post("/api/v1/live/start", json=START, headers=h1)
    assert r.status_code == 202, r.text
    assert r.json()["controller"] == "doc"
    stop = threading.Event()
    logs = [ViewerLog("doc"), ViewerLog("doc2")]
    threads = [threading.Thread(target=watch, args=(server, c.cookies["spinedecomp_session"], lg,
                                                    stop), daemon=True)
               for c, lg in zip((doc, doc2), logs, strict=True)]
    try:
        threads[0].start()
        wait_for(lambda: logs[0].live_frames() >= 25, 60, "the first viewer's frames")
        threads[1].start()  # the second browser joins half a second later
        wait_for(lambda: all(lg.live_frames() >= 150 for lg in logs), 30, "frames on both")
        assert [lg.hello_controller for lg in logs] == ["doc", "doc"]

        # The second clinician may watch but not adjust, until they take control.
        edit = {"kind": "edit", "field": "hold_s", "value": 20.0, "unit": "s",
                "reason": "test adjustment"}
        for body in (edit, {"kind": "pause"}, {"kind": "acknowledge"}):
            r = doc2.post("/api/v1/live/command", json=body, headers=h2)
            assert r.status_code == 409, r.text
            assert "doc holds control" in r.json()["detail"]
        assert live.controller == "doc"
        r = doc.post("/api/v1/live/command", json=edit, headers=h1)
        assert r.status_code == 202, r.text
        wait_for(lambda: all(any("doc: test adjustment" in e[2] or "by doc" in e[2]
                                 for e in lg.events) for lg in logs), 10, "the edit event")

        r = doc2.post("/api/v1/live/take-control", headers=h2)
        assert r.status_code == 200 and r.json()["controller"] == "doc2"
        r = doc.post("/api/v1/live/command", json={**edit, "value": 21.0}, headers=h1)
        assert r.status_code == 409 and "doc2 holds control" in r.json()["detail"]
        r = doc2.post("/api/v1/live/command", json={**edit, "value": 21.0,
                                                    "reason": "second clinician"}, headers=h2)
        assert r.status_code == 202, r.text
        wait_for(lambda: all(any("doc2: second clinician" in e[2] or "by doc2" in e[2]
                                 for e in lg.events) for lg in logs), 10, "doc2's edit event")

        # STOP from the clinician who no longer holds control, then from the one who does.
        r = doc.post("/api/v1/live/command", json={"kind": "operator-stop"}, headers=h1)
        assert r.status_code == 202, r.text
        r = doc2.post("/api/v1/live/command", json={"kind": "operator-stop"}, headers=h2)
        assert r.status_code == 202, r.text
        for lg in logs:
            assert lg.ended.wait(60), f"{lg.name}: no end message"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert all(lg.error is None for lg in logs), [lg.error for lg in logs]
    assert live.wait_finished(30)

    # Same frames: over the window both viewers saw, the same t values, in the same order,
    # with the same forces.
    a, b = logs
    lo = max(a.frames[0][0], b.frames[0][0])
    hi = min(a.frames[-1][0], b.frames[-1][0])
    wa = [f for f in a.frames if lo <= f[0] <= hi]
    wb = [f for f in b.frames if lo <= f[0] <= hi]
    assert len(wa) >= 150
    assert wa == wb
    assert all(t1 > t0 for (t0, _), (t1, _) in pairwise(wa))
    assert any(f[1] is not None and f[1] > 5.0 for f in wa)  # the table pulled meanwhile
    # Same events and alarms, in the same order (the late joiner got the earlier ones in its
    # hello message), none twice.
    assert a.events == b.events and a.alarms == b.alarms
    assert len(set(a.events)) == len(a.events)
    assert any("operator stop by doc:" in e[2] for e in a.events)
    assert [kind for _, kind in a.alarms] == ["operator-stop"]

    # The stored record agrees: both edits by their own clinician, the hand-over audited.
    sid = live.session_id
    with server.env.store.unit("t") as uow:
        events = uow.sessions.events(sid)
        handover = uow.audit.entries(entity="table-control")
        rec = uow.sessions.get(sid)
    assert rec.state == "aborted"
    edits = [e for e in events if e.kind in ("edit", "rejected") and e.field == "hold_s"]
    assert [("doc2" in e.reason) for e in edits] == [False, True]
    assert [(h.actor, h.before, h.after) for h in handover] == [
        ("doc2", {"controller": "doc"}, {"controller": "doc2"})]
