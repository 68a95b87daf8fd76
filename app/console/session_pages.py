"""Signing in and out of the console, and an admin's project switch.

Sign-in takes an API key once, from a form, and answers with the session cookie (HttpOnly, SameSite=Strict): the
key is never kept in the browser. The sign-in form itself is protected by a double-submit token (a cookie and a
field that must match), so another site cannot sign a visitor into its own account.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.sessions import SESSION_COOKIE, console_sessions
from app.config import Settings
from app.console.web import ConsoleDep, ConsoleRoute, render, safe_next
from app.db import SessionDep
from app.errors import AuthenticationFailed, NotFound
from app.kit.ids import random_token

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

SIGN_IN_CSRF_COOKIE = "ftgw_sign_in_csrf"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    settings: Settings = request.app.state.settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookies or request.url.scheme == "https",
    )


def _sign_in_form(request: Request, next_: str, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = random_token(32)
    response = render(
        request, "sign_in.html", status_code=status_code, title="Sign in", next=next_, error=error, pre_csrf=token
    )
    _cookie(response, request, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    return _sign_in_form(request, safe_next(next))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=512)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    target = safe_next(next)
    expected = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return _sign_in_form(request, target, "The sign-in form expired; please try again.", status_code=403)
    settings: Settings = request.app.state.settings
    lifetime = timedelta(hours=settings.console_session_hours)
    try:
        token, _ = await console_sessions.sign_in(session, api_key, lifetime)
    except AuthenticationFailed as exc:
        return _sign_in_form(request, target, exc.message, status_code=401)
    response = RedirectResponse(target, status_code=303)
    _cookie(response, request, SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()))
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, session: SessionDep, console: ConsoleDep, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    console.require_form_csrf(csrf_token)
    await console_sessions.sign_out(session, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/project")
async def switch_project(
    session: SessionDep,
    console: ConsoleDep,
    project_id: Annotated[str, Form(max_length=64)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """An admin acts in another project from now on (the API key stays the admin's)."""
    console.require_form_csrf(csrf_token)
    await console_sessions.switch_project(session, console.session, project_id)
    return RedirectResponse(safe_next(next), status_code=303)


home = APIRouter(include_in_schema=False)


@home.get("/")
@home.get("/console")
async def console_home() -> RedirectResponse:
    return RedirectResponse("/console/jobs", status_code=307)


unknown = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@unknown.get("/{rest:path}", response_class=HTMLResponse)
async def unknown_page(rest: str, console: ConsoleDep) -> Response:
    raise NotFound("There is no console page at this address.")
