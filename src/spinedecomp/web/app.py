"""The app factory: `create_app(settings)` builds one FastAPI app with its own store, users,
login limiter and live table. Nothing is created at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from spinedecomp.store.api import Store
from spinedecomp.store.settings import StoreSettings
from spinedecomp.web import api, pages
from spinedecomp.web.auth import UserStore
from spinedecomp.web.deps import AppState, NotLoggedIn
from spinedecomp.web.live import LiveManager
from spinedecomp.web.security import LoginLimiter
from spinedecomp.web.settings import WebSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def create_app(settings: WebSettings, store: Store | None = None) -> FastAPI:
    """A ready app: opens (and on SQLite upgrades) the store unless one is given."""
    if store is None:
        store = Store.open(StoreSettings(), url=settings.database_url)
    live = LiveManager(rate_hz=settings.control_rate_hz, frame_hz=settings.frame_hz,
                       database_url=store.settings.url if settings.database_url is None
                       else settings.database_url,
                       record=settings.live_store, data_dir=str(store.settings.data_dir))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        live.shutdown()

    app = FastAPI(title="spinedecomp clinic dashboard", version="1",
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
                  lifespan=lifespan)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.web = AppState(settings=settings, store=store, users=UserStore(store),
                             limiter=LoginLimiter(settings.login_max_failures, settings.login_window_s),
                             live=live, templates=templates)
    # Signed cookie, HttpOnly (Starlette's default), SameSite=strict: the browser never sends
    # it on a request started by another site.
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key,
                       session_cookie="spinedecomp_session", max_age=settings.session_max_age_s,
                       same_site="strict", https_only=settings.cookie_secure)

    @app.exception_handler(NotLoggedIn)
    async def _not_logged_in(request: Request, _exc: NotLoggedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "log in first"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.middleware("http")
    async def _headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                    "img-src 'self' data:; connect-src 'self' ws: wss:")
        return response

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    log.info("dashboard app ready on %s", store.display_url)
    return app
