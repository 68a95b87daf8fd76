"""Jobs: the list (status, model, progress, age; filter by status and metadata) and a job's page."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.errors import InvalidRequest
from app.fine_tuning.models import JobStatus
from app.fine_tuning.service import job_service

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25


def parse_metadata(text: str) -> dict[str, str]:
    """``team=support, env=prod`` -> {"team": "support", "env": "prod"}."""
    found: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"Write metadata filters as key=value, separated by commas (got '{part.strip()}').")
        found[key.strip()] = value.strip()
    return found


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    status: Annotated[JobStatus | Literal[""], Query()] = "",
    metadata: Annotated[str, Query(max_length=1024)] = "",
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    filters = parse_metadata(metadata)
    page = await job_service.list(
        session, console.project_id, metadata=filters, limit=PAGE_SIZE, after=after, status=status or None
    )
    progress = await job_service.progress(session, console.project_id, [job.id for job in page.items])
    return render(
        request,
        "jobs.html",
        console=console,
        active="jobs",
        title="Jobs",
        jobs=page.items,
        has_more=page.has_more,
        progress=progress,
        statuses=list(JobStatus),
        status=status or "",
        metadata=metadata,
        filtered=bool(status or filters or after),
    )
