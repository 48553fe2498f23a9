"""Web fixtures: an app on a fresh SQLite store with one user per role."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from spinedecomp.store.api import Store
from spinedecomp.store.settings import StoreSettings
from spinedecomp.web.app import create_app
from spinedecomp.web.auth import Role, UserIn, UserStore
from spinedecomp.web.settings import WebSettings

PASSWORDS = {"doc": "doc-password-1", "desk": "desk-password-1", "boss": "boss-password-1",
             "doc2": "doc2-password-1"}
ROLES = {"doc": Role.CLINICIAN, "desk": Role.FRONT_DESK, "boss": Role.ADMIN,
         "doc2": Role.CLINICIAN}


@dataclass
class WebEnv:
    """An app with its store."""

    app: FastAPI
    store: Store
    data_dir: Path


def make_env(tmp_path: Path, **settings: object) -> WebEnv:
    """A store in tmp_path, one user per role, and an app on it."""
    ss = StoreSettings(data_dir=tmp_path)
    store = Store.open(ss)
    users = UserStore(store)
    for name, role in ROLES.items():
        users.add(UserIn(username=name, role=role, password=PASSWORDS[name]), actor="test")
    ws = WebSettings(demo=True, database_url=ss.url, **settings)  # type: ignore[arg-type]
    return WebEnv(create_app(ws, store=store), store, tmp_path)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WebEnv]:
    e = make_env(tmp_path)
    yield e
    e.store.close()


def login(client: httpx.Client, name: str) -> str:
    """Log in through the API (TestClient or a real HTTP client); returns the CSRF token."""
    tok = client.get("/api/v1/auth/csrf").json()["csrf_token"]
    r = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORDS[name]},
                    headers={"X-CSRF-Token": tok})
    assert r.status_code == 200, r.text
    return str(client.get("/api/v1/auth/csrf").json()["csrf_token"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A real uvicorn server on loopback, in a thread."""

    url: str
    env: WebEnv
    server: uvicorn.Server
    thread: threading.Thread


def start_server(env: WebEnv) -> LiveServer:
    port = free_port()
    config = uvicorn.Config(env.app, host="127.0.0.1", port=port, log_level="warning",
                            ws="websockets-sansio", lifespan="on", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return LiveServer(f"http://127.0.0.1:{port}", env, server, t)


def stop_server(ls: LiveServer) -> None:
    ls.server.should_exit = True
    ls.thread.join(120)
