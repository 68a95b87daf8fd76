"""/v1/batches: OpenAI's Batch API, run by ftgw's workers through its own inference."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from app.auth.principal import PrincipalDep
from app.batches.schemas import BatchOut, CreateBatchRequest
from app.batches.service import batch_service, out
from app.db import SessionDep
from app.kit.pagination import AfterQuery, Order, limit_query
from app.kit.schemas import ListResponse
from app.worker.wakeup import wake_workers

router = APIRouter(prefix="/v1/batches", tags=["Batches"])

Limit = Annotated[int, limit_query(100)]


@router.post("", response_model=BatchOut)
async def create_batch(
    body: CreateBatchRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> BatchOut:
    """Run a file of requests in the background; the answers land in an output file."""
    batch = await batch_service.create(session, principal.project_id, principal.key_id, body)
    wake_workers(request, session)
    return out(batch)


@router.get("", response_model=ListResponse[BatchOut])
async def list_batches(
    session: SessionDep, principal: PrincipalDep, limit: Limit = 20, after: AfterQuery = None
) -> ListResponse[BatchOut]:
    """The project's batches, newest first."""
    page = await batch_service.page(session, principal.project_id, limit=limit, order=Order.desc, after=after)
    return ListResponse[BatchOut].of([out(b) for b in page.items], page.has_more)


@router.get("/{batch_id}", response_model=BatchOut)
async def retrieve_batch(batch_id: str, session: SessionDep, principal: PrincipalDep) -> BatchOut:
    return out(await batch_service.get(session, principal.project_id, batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchOut)
async def cancel_batch(batch_id: str, request: Request, session: SessionDep, principal: PrincipalDep) -> BatchOut:
    """Stop a batch: the requests done so far are written to its output file."""
    batch = await batch_service.cancel(session, principal.project_id, batch_id)
    wake_workers(request, session)
    return out(batch)
