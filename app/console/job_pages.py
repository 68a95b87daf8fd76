"""Jobs: the list (status, model, progress, age; filter by status and metadata) and a job's page."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.errors import InvalidRequest, NotFound
from app.evals.comparisons import ComparisonOut
from app.fine_tuning import evaluation
from app.fine_tuning.models import ACTIVE, TERMINAL, FineTuningJob, JobStatus
from app.fine_tuning.service import job_service, step_progress
from app.kit.pagination import Order
from app.registry.aliases import alias_service

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25
EVENTS_SHOWN = 50  # a job page lists its latest events; the API pages through the rest
CHECKPOINTS_SHOWN = 100
# The metrics a job page plots, as each metrics event's data names them (StepMetrics.data()); the page embeds one
# row of these per step, in this order, and job.js reads live events by the same names.
MAX_POINTS = 1_000
CHART_KEYS = (
    "step",
    "total_steps",
    "train_loss",
    "valid_loss",
    "full_valid_loss",
    "train_mean_token_accuracy",
    "valid_mean_token_accuracy",
    "full_valid_mean_token_accuracy",
)
# Which buttons a job's status offers: (action, label, statuses it is valid in), as the service's state machine says.
ACTIONS = (
    ("pause", "Pause", (JobStatus.validating_files, JobStatus.queued, JobStatus.running)),
    ("resume", "Resume", (JobStatus.paused,)),
    ("cancel", "Cancel", tuple(s for s in JobStatus if s in ACTIVE)),
)


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


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    job_id: Annotated[str, Path(max_length=64)],
) -> HTMLResponse:
    job = await job_service.get(session, console.project_id, job_id)
    timeline = await job_service.timeline(session, job, messages=EVENTS_SHOWN)
    checkpoints = await job_service.checkpoints(
        session, console.project_id, job.id, limit=CHECKPOINTS_SHOWN, after=None
    )
    aliases = await alias_service.page(session, console.project_id, limit=100, order=Order.asc, after=None)
    rows = _thin([[_compact(point.get(key)) for key in CHART_KEYS] for point in timeline.metrics])
    latest = timeline.metrics[-1] if timeline.metrics else {}
    return render(
        request,
        "job.html",
        console=console,
        active="jobs",
        title=f"Job {job.id}",
        job=job,
        terminal=job.status in TERMINAL,
        actions=ACTIONS,
        chart={"keys": CHART_KEYS, "rows": rows},
        progress=_progress(job, latest),
        events=timeline.messages,
        last_event_id=timeline.last_event_id,
        checkpoints=checkpoints.items,
        comparison=await _eval_of(session, job),
        alias_names=[alias.name for alias in aliases.items],
    )


async def _eval_of(session: SessionDep, job: FineTuningJob) -> ComparisonOut | None:
    """The eval the job ended with against its base, if it has one (only a job with a validation file may)."""
    if job.validation_file is None:
        return None
    try:
        return await evaluation.read(session, job, disagreements_limit=0)
    except NotFound:
        return None


def _progress(job: FineTuningJob, latest: dict[str, Any]) -> float | None:
    """Steps done / total steps (0-1) from the latest metrics; None before the first step."""
    if job.status is JobStatus.succeeded:
        return 1.0
    return step_progress(latest)


def _thin(rows: list[list[Any]]) -> list[list[Any]]:
    """At most about MAX_POINTS training points for the first render (a chart is a few hundred pixels wide and a long
    job has tens of thousands of steps): every k-th step, the last one, and every step that has a validation value
    (those are few and each matters). Points that arrive live are all added."""
    if len(rows) <= MAX_POINTS:
        return rows
    stride = math.ceil(len(rows) / MAX_POINTS)
    validation = [CHART_KEYS.index(key) for key in CHART_KEYS if "valid" in key]
    last = len(rows) - 1
    return [
        row for i, row in enumerate(rows) if i % stride == 0 or i == last or any(row[k] is not None for k in validation)
    ]


def _compact(value: Any) -> Any:
    """Floats to 6 significant digits (a chart shows no more), so a long job's embedded points stay small."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value
