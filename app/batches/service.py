"""Batches: create (the input file checked for its purpose, the endpoint for one ftgw serves), read, cancel; and
what the worker records as a batch moves (``app.batches.tasks``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.batches.models import ENDED, Batch, BatchStatus
from app.batches.repository import BatchRepository
from app.batches.schemas import ENDPOINTS, BatchErrors, BatchOut, CreateBatchRequest, RequestCounts
from app.errors import Conflict, InvalidRequest, NotFound
from app.files.models import FilePurpose
from app.files.service import file_service
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.time import utcnow

WINDOW = timedelta(hours=24)


def batch_not_found(batch_id: str) -> NotFound:
    return NotFound(f"No such batch: {batch_id}", param="batch_id")


class BatchService:
    async def create(self, session: AsyncSession, project_id: str, created_by: str, body: CreateBatchRequest) -> Batch:
        if body.endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"ftgw runs batches of {' and '.join(ENDPOINTS)}, not {body.endpoint}.",
                param="endpoint",
                code="unsupported_endpoint",
            )
        if body.completion_window != "24h":
            raise InvalidRequest("completion_window must be 24h.", param="completion_window")
        try:
            record = await file_service.get(session, project_id, body.input_file_id)
        except NotFound:
            raise InvalidRequest(
                f"No file {body.input_file_id} in this project.", param="input_file_id", code="invalid_file"
            ) from None
        if record.purpose is not FilePurpose.batch:
            raise InvalidRequest(
                f"File {record.id} has purpose '{record.purpose.value}'; a batch's input needs purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )
        now = utcnow()
        batch = Batch(
            id=new_id("batch", separator="_"),
            project_id=project_id,
            endpoint=body.endpoint,
            input_file_id=record.id,
            completion_window=body.completion_window,
            status=BatchStatus.validating,
            batch_metadata=body.metadata,
            created_by=created_by,
            created_at=now,
            expires_at=now + WINDOW,
        )
        return await BatchRepository(session).add(batch)

    async def get(self, session: AsyncSession, project_id: str, batch_id: str, *, for_update: bool = False) -> Batch:
        found = await BatchRepository(session).get(project_id, batch_id, for_update=for_update)
        if found is None:
            raise batch_not_found(batch_id)
        return found

    async def page(
        self, session: AsyncSession, project_id: str, *, limit: int, order: Order, after: str | None
    ) -> Page[Batch]:
        return await BatchRepository(session).page(project_id, limit=limit, order=order, after=after)

    async def cancel(self, session: AsyncSession, project_id: str, batch_id: str) -> Batch:
        """A batch not ended goes to ``cancelling``; its worker writes what is done, then it is ``cancelled``."""
        batch = await self.get(session, project_id, batch_id, for_update=True)
        if batch.status in ENDED or batch.status is BatchStatus.cancelling:
            raise Conflict(
                f"Batch {batch.id} is {batch.status.value}: it cannot be cancelled.",
                param="batch_id",
                code="batch_not_cancellable",
            )
        batch.status = BatchStatus.cancelling
        batch.cancelling_at = utcnow()
        await session.flush()
        return batch


def out(batch: Batch) -> BatchOut:
    errors = BatchErrors.model_validate({"data": batch.errors}) if batch.errors else None
    return BatchOut(
        id=batch.id,
        endpoint=batch.endpoint,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=batch.status,
        created_at=batch.created_at,
        errors=errors,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        request_counts=RequestCounts(
            total=batch.request_total, completed=batch.request_completed, failed=batch.request_failed
        ),
        metadata=batch.batch_metadata,
        usage=_usage(batch.usage) if batch.usage is not None else None,
        expires_at=batch.expires_at,
        in_progress_at=batch.in_progress_at,
        finalizing_at=batch.finalizing_at,
        completed_at=batch.completed_at,
        failed_at=batch.failed_at,
        cancelling_at=batch.cancelling_at,
        cancelled_at=batch.cancelled_at,
    )


def _usage(tokens: dict[str, int]) -> dict[str, Any]:
    prompt, completion = tokens.get("input_tokens", 0), tokens.get("output_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


batch_service = BatchService()
