"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume; events (and their live stream); checkpoints;
the eval a job ended with (ftgw's own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.evals.comparisons import ComparisonOut
from app.fine_tuning import evaluation
from app.fine_tuning.models import FineTuningJob
from app.fine_tuning.schemas import (
    CheckpointOut,
    CreateJobRequest,
    EventList,
    EventOut,
    JobError,
    JobHyperparameters,
    JobList,
    JobOut,
    Method,
)
from app.fine_tuning.service import job_service
from app.fine_tuning.stream import follow
from app.kit.openapi import event_stream
from app.kit.pagination import AfterQuery, limit_query
from app.kit.schemas import ListResponse
from app.worker.wakeup import wake_workers

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["Fine-tuning"])

JobLimit = Annotated[int, limit_query(100)]


def job_out(job: FineTuningJob) -> JobOut:
    method = job.method["type"]
    hyper = job.hyperparameters
    return JobOut(
        id=job.id,
        created_at=job.created_at,
        error=JobError.model_validate(job.error) if job.error else None,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=job.finished_at,
        hyperparameters=JobHyperparameters(
            batch_size=hyper["batch_size"],
            learning_rate_multiplier=hyper["learning_rate_multiplier"],
            n_epochs=hyper["n_epochs"],
        ),
        model=job.model,
        organization_id=job.project_id,
        result_files=job.result_files,
        seed=job.seed,
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file,
        validation_file=job.validation_file,
        estimated_finish=job.estimated_finish,
        metadata=job.job_metadata,
        method=Method.model_validate({"type": method, method: {"hyperparameters": hyper}}),
        user_provided_suffix=job.suffix,
    )


@router.post("", response_model=JobOut)
async def create_job(body: CreateJobRequest, request: Request, session: SessionDep, principal: PrincipalDep) -> JobOut:
    """Create a fine-tuning job: it validates its files, queues, and a worker trains it."""
    job = await job_service.create(session, request.app.state.providers, principal.project_id, body)
    wake_workers(request, session)
    return job_out(job)


@router.get("", response_model=JobList)
async def list_jobs(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    limit: JobLimit = 20,
    after: AfterQuery = None,
) -> JobList:
    """List the project's jobs, newest first; filter with `metadata[key]=value`."""
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    page = await job_service.list(session, principal.project_id, metadata=metadata, limit=limit, after=after)
    return JobList(data=[job_out(j) for j in page.items], has_more=page.has_more)


@router.get("/{fine_tuning_job_id}", response_model=JobOut)
async def retrieve_job(fine_tuning_job_id: str, session: SessionDep, principal: PrincipalDep) -> JobOut:
    """Retrieve a job."""
    return job_out(await job_service.get(session, principal.project_id, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/cancel", response_model=JobOut)
async def cancel_job(fine_tuning_job_id: str, session: SessionDep, principal: PrincipalDep) -> JobOut:
    """Cancel a job; a running one's training process is stopped within a heartbeat."""
    return job_out(await job_service.cancel(session, principal.project_id, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/pause", response_model=JobOut)
async def pause_job(fine_tuning_job_id: str, session: SessionDep, principal: PrincipalDep) -> JobOut:
    """Pause a job: training stops after saving its progress."""
    return job_out(await job_service.pause(session, principal.project_id, fine_tuning_job_id))


@router.post("/{fine_tuning_job_id}/resume", response_model=JobOut)
async def resume_job(fine_tuning_job_id: str, request: Request, session: SessionDep, principal: PrincipalDep) -> JobOut:
    """Resume a paused job from where it stopped."""
    job = await job_service.resume(session, principal.project_id, fine_tuning_job_id)
    wake_workers(request, session)
    return job_out(job)


@router.get(
    "/{fine_tuning_job_id}/events",
    response_model=EventList,
    responses=event_stream(
        EventOut,
        "The events as JSON; with `stream=true`, server-sent events, oldest first: each one's data an event as JSON "
        "and its id the event's (send it back as `Last-Event-ID` to resume), then `[DONE]` once the job has ended.",
    ),
)
async def list_events(
    fine_tuning_job_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    limit: JobLimit = 20,
    after: AfterQuery = None,
    stream: Annotated[
        bool, Query(description="Server-sent events, oldest first, live until the job ends (resumable).")
    ] = False,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> EventList | EventSourceResponse:
    """List a job's events newest first, or with `stream=true` follow them live (`Last-Event-ID` resumes)."""
    if not stream:
        page = await job_service.events(session, principal.project_id, fine_tuning_job_id, limit=limit, after=after)
        return EventList(data=[EventOut.model_validate(e) for e in page.items], has_more=page.has_more)
    seq = await job_service.stream_cursor(session, principal.project_id, fine_tuning_job_id, last_event_id or after)
    events = follow(request.app.state.sessionmaker, principal.project_id, fine_tuning_job_id, seq)
    return EventSourceResponse(events, ping=15)


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=ListResponse[CheckpointOut])
async def list_checkpoints(
    fine_tuning_job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, limit_query(100)] = 10,
    after: AfterQuery = None,
) -> ListResponse[CheckpointOut]:
    """List a job's checkpoints (one per epoch), newest first; each is usable as a model."""
    page = await job_service.checkpoints(session, principal.project_id, fine_tuning_job_id, limit=limit, after=after)
    return ListResponse.of([CheckpointOut.model_validate(c) for c in page.items], page.has_more)


@router.get("/{fine_tuning_job_id}/eval", response_model=ComparisonOut)
async def job_eval(
    fine_tuning_job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    disagreements_limit: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> ComparisonOut:
    """ftgw: the eval the job ended with, its base run then its fine-tuned run on the validation file, side by side."""
    job = await job_service.get(session, principal.project_id, fine_tuning_job_id)
    return await evaluation.read(session, job, disagreements_limit=disagreements_limit)
