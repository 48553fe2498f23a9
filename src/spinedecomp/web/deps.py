"""Request dependencies shared by the API and the pages: the current user, rights, CSRF."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.templating import Jinja2Templates

from spinedecomp.store.api import Store
from spinedecomp.store.repositories import NotFound
from spinedecomp.web.auth import Right, User, UserStore
from spinedecomp.web.live import LiveManager
from spinedecomp.web.security import CSRF_FIELD, CSRF_HEADER, LoginLimiter, new_token, tokens_match
from spinedecomp.web.settings import WebSettings

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class AppState:
    """What one app instance owns (kept on ``app.state.web``; nothing module-global)."""

    settings: WebSettings
    store: Store
    users: UserStore
    limiter: LoginLimiter
    live: LiveManager
    templates: Jinja2Templates


class NotLoggedIn(Exception):
    """No valid session: pages redirect to the login form, the API answers 401."""


def web(request: Request) -> AppState:
    """The app's state."""
    st: AppState = request.app.state.web
    return st


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_token()
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Every state change carries the session's CSRF token (header or form field)."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not tokens_match(request.session.get("csrf"), given):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or wrong: reload the "
                            "page and try again")


def current_user(request: Request) -> User:
    """The logged-in, active user (NotLoggedIn otherwise)."""
    uid = request.session.get("uid")
    if not isinstance(uid, int):
        raise NotLoggedIn()
    try:
        user = web(request).users.get(uid)
    except NotFound:
        request.session.clear()
        raise NotLoggedIn() from None
    if not user.active:
        request.session.clear()
        raise NotLoggedIn()
    return user


def require(right: Right) -> Callable[[Request], Coroutine[Any, Any, User]]:
    """Dependency: the current user, who must have `right` (403 otherwise)."""

    async def dep(request: Request) -> User:
        user = current_user(request)
        if not user.can(right):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"your role ({user.role.value}) may not do this ({right.value})")
        await check_csrf(request)
        return user

    return dep


def client_of(request: Request) -> str:
    """The client address (for the login rate limit)."""
    return request.client.host if request.client else "unknown"
