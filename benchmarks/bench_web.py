"""Web bench: WebSocket sample-to-browser latency with 1 and 20 viewers, and the control
loop's period jitter at 1 kHz idle vs. with 20 viewers and the API under load.

    .venv/bin/python -m benchmarks.bench_web

A real uvicorn server on loopback, a real control process on the simulated table, real
WebSocket clients (the `websockets` package). Latency = client receive wall time - the wall
time the control process stamped on the sample. Jitter = |period - 1 ms| measured in the
control process over every period of the run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn
import websockets

from spinedecomp.store.api import Store
from spinedecomp.store.settings import StoreSettings
from spinedecomp.web.app import create_app
from spinedecomp.web.auth import Role, UserIn, UserStore
from spinedecomp.web.settings import WebSettings

RUN_S = 12.0
PASSWORD = "bench-password-1"


@dataclass
class Client:
    """A logged-in HTTP client."""

    http: httpx.Client
    csrf: str


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login(base: str) -> Client:
    c = httpx.Client(base_url=base)
    tok = c.get("/api/v1/auth/csrf").json()["csrf_token"]
    c.post("/api/v1/auth/login", json={"username": "bench", "password": PASSWORD},
           headers={"X-CSRF-Token": tok}).raise_for_status()
    return Client(c, c.get("/api/v1/auth/csrf").json()["csrf_token"])


async def _viewers(url: str, cookie: str, n: int, seconds: float) -> list[float]:
    lat: list[float] = []

    async def one() -> None:
        async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if msg["type"] == "frame":
                    lat.append((time.time() - msg["f"][0]) * 1000.0)

    await asyncio.gather(*(one() for _ in range(n)))
    return lat


def _api_load(base: str, stop: threading.Event, counter: list[int]) -> None:
    c = _login(base)
    while not stop.is_set():
        c.http.get("/api/v1/patients")
        c.http.get("/api/v1/live/status")
        counter[0] += 2


def _session(c: Client, app_live: object, viewers: int, load: bool, base: str) -> dict[str, object]:
    c.http.post("/api/v1/live/start", json={"protocol": "lumbar-intermittent", "switch_tested": True,
                                            "harness_checked": True},
                headers={"X-CSRF-Token": c.csrf}).raise_for_status()
    while c.http.get("/api/v1/live/status").json()["state"] != "running":
        time.sleep(0.1)
    stop = threading.Event()
    counter = [0]
    threads = [threading.Thread(target=_api_load, args=(base, stop, counter))
               for _ in range(4 if load else 0)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    cookie = "; ".join(f"{k}={v}" for k, v in c.http.cookies.items())
    ws_url = base.replace("http", "ws") + "/api/v1/live/ws"
    lat = asyncio.run(_viewers(ws_url, cookie, viewers, RUN_S)) if viewers else []
    if not viewers:
        time.sleep(RUN_S)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join()
    c.http.post("/api/v1/live/command", json={"kind": "operator-stop", "reason": "bench"},
                headers={"X-CSRF-Token": c.csrf}).raise_for_status()
    live = app_live
    assert live.wait_finished(60)  # type: ignore[attr-defined]
    time.sleep(0.5)
    stats = live.last_stats or {}  # type: ignore[attr-defined]
    return {"viewers": viewers, "api_rps": counter[0] / elapsed, "lat": lat, "jitter": stats}


def main() -> None:
    """Run the bench and print a table."""
    with tempfile.TemporaryDirectory() as tmp:
        ss = StoreSettings(data_dir=Path(tmp))
        store = Store.open(ss)
        UserStore(store).add(UserIn(username="bench", role=Role.CLINICIAN, password=PASSWORD),
                             actor="bench")
        app = create_app(WebSettings(demo=True, database_url=ss.url), store=store)
        port = _port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               ws="websockets-sansio", timeout_graceful_shutdown=3))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        c = _login(base)
        live = app.state.web.live
        runs = [("1 viewer", 1, False), ("20 viewers", 20, False),
                ("idle (no viewers, no load)", 0, False),
                ("20 viewers + API load", 20, True)]
        print(f"web bench: {RUN_S:g} s per run, control loop 1 kHz in its own process")
        for label, n, load in runs:
            r = _session(c, live, n, load, base)
            lat = np.array(r["lat"]) if r["lat"] else None  # type: ignore[arg-type]
            j = r["jitter"]
            lat_s = (f"latency p50 {np.percentile(lat, 50):.1f} ms p95 {np.percentile(lat, 95):.1f} ms "
                     f"({lat.size} frames)") if lat is not None else "latency -"
            print(f"  {label:28s} {lat_s:45s} jitter p99 {j.get('p99_ms', float('nan')):.3f} ms "  # type: ignore[union-attr]
                  f"p99.9 {j.get('p999_ms', float('nan')):.3f} ms max {j.get('max_ms', float('nan')):.2f} ms"  # type: ignore[union-attr]
                  + (f"  API {r['api_rps']:.0f} req/s" if load else ""))
        server.should_exit = True
        th.join(30)
        store.close()


if __name__ == "__main__":
    main()
