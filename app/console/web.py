"""What every console page shares: the signed-in dependency, the route class that turns errors into pages, and
rendering with the layout's context."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from app.auth.principal import Principal, key_principal, signed_in
from app.auth.sessions import SignedIn
from app.errors import GatewayError, InvalidRequest, PermissionDenied
from app.kit.time import from_unix, utcnow

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

NAV = (
    ("jobs", "Jobs", "/console/jobs"),
    ("datasets", "Datasets", "/console/datasets"),
    ("playground", "Playground", "/console/playground"),
    ("registry", "Registry", "/console/registry"),
    ("evals", "Evals", "/console/evals"),
    ("usage", "Usage", "/console/usage"),
)


class SignInRequired(Exception):
    """No live console session: the page redirects to sign-in and comes back afterwards."""


@dataclass(frozen=True, slots=True)
class Console:
    """The signed-in person as pages see them: the principal the API would see, and the session's CSRF token."""

    principal: Principal
    session: SignedIn

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    @property
    def csrf_token(self) -> str:
        return self.session.row.csrf_token

    @property
    def is_admin(self) -> bool:
        return self.session.is_admin

    def require_form_csrf(self, presented: str) -> None:
        """A plain HTML form (no script to set X-CSRF-Token) carries the token as a field: refuse it without."""
        if not self.session.csrf_ok(presented):
            raise PermissionDenied("The form's CSRF token is missing or wrong; reload the page and try again.")


async def current_console(request: Request) -> Console:
    found = await signed_in(request)
    if found is None:
        raise SignInRequired
    return Console(key_principal(found.key, found.row.project_id), found)


ConsoleDep = Annotated[Console, Depends(current_console)]


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this site only (never ``//host`` or a full URL: no open redirect)."""
    # Browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil") and read "\" as "/": refuse them all.
    if not target:
        return "/console/jobs"
    cleaned = "".join(ch for ch in target if ch.isprintable() and not ch.isspace())
    if cleaned != target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/console/jobs"
    return target


def sign_in_redirect(request: Request) -> RedirectResponse:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/sign-in?next={quote(path, safe='')}", status_code=303)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    console: Console | None = context.get("console")
    context.setdefault("nav", NAV)
    context.setdefault("csrf_token", console.csrf_token if console else "")
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def error_page(request: Request, exc: GatewayError, console: Console | None = None) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=exc.status_code,
        console=console,
        title=_TITLES.get(exc.status_code, "Something went wrong"),
        message=exc.message,
        code=getattr(exc, "code", None),
    )


_TITLES = {404: "Not found", 403: "Not allowed", 400: "Bad request", 409: "Conflict"}


class ConsoleRoute(APIRoute):
    """Console pages answer in HTML: no session redirects to sign-in, an error the services raise (a foreign id is
    a plain 404) is a page with the error's message and status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return sign_in_redirect(request)
            except GatewayError as exc:
                return error_page(request, exc, await _maybe_console(request))
            except RequestValidationError as exc:
                problem = InvalidRequest(_validation_message(exc))
                return error_page(request, problem, await _maybe_console(request))

        return route


async def _maybe_console(request: Request) -> Console | None:
    return await current_console(request) if getattr(request.state, "console", None) is not None else None


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:])
    return f"Invalid value for '{where}': {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


# --- template filters ---------------------------------------------------------------------------------------------


def ago(value: datetime | int | None) -> str:
    """``3 min ago``: how people read an age."""
    if value is None:
        return "—"
    when = from_unix(value) if isinstance(value, int) else value
    seconds = max(0, int((utcnow() - when).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def when(value: datetime | int | None) -> str:
    if value is None:
        return "—"
    moment = from_unix(value) if isinstance(value, int) else value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | int | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


TEMPLATES.env.filters.update(ago=ago, when=when, number=number)
