"""Admin: the projects (switch the console into one, create one) and the current project's API keys (create, show
the secret once, revoke). Members get a 403 page; every change goes through the /v1/projects API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.auth.service import auth_service
from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.errors import PermissionDenied
from app.kit.pagination import Order

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50


@router.get("/admin", response_class=HTMLResponse)
async def admin(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    if not console.is_admin:
        raise PermissionDenied("This page is for admin keys: ask an admin to manage projects and keys.")
    projects = await auth_service.list_projects(session, limit=PAGE_SIZE, order=Order.asc, after=after)
    current = await auth_service.get_project(session, console.project_id)
    keys = await auth_service.list_keys(session, console.project_id, limit=100, order=Order.asc, after=None)
    return render(
        request,
        "admin.html",
        console=console,
        active="admin",
        title="Admin",
        projects=projects.items,
        has_more=projects.has_more,
        current=current,
        keys=keys.items,
    )
