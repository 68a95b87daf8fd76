"""Wire schemas of /v1/batches (OpenAI's CreateBatchRequest, Batch, ListBatchesResponse).

OpenAI's Batch has no nulls: a field not set yet (``output_file_id``, ``errors``, a step's timestamp) is left out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from app.batches.models import BatchStatus
from app.kit.schemas import Metadata, RequestSchema, Schema, UnixTime

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
ENDPOINTS = (CHAT, COMPLETIONS)  # of OpenAI's batch endpoints, the ones ftgw serves


def _unset(value: object) -> bool:
    return value is None


class CreateBatchRequest(RequestSchema):
    input_file_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description='A file of purpose "batch": JSONL, one {"custom_id", "method": "POST", "url", "body"} per line.'
    )
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="/v1/chat/completions or /v1/completions (OpenAI's other batch endpoints are not served here)."
    )
    completion_window: Annotated[str, StringConstraints(min_length=1, max_length=16)] = Field(
        description="Only 24h, as OpenAI."
    )
    metadata: Metadata | None = None
    output_expires_after: dict[str, Any] | None = Field(default=None, description="Accepted; output files are kept.")


class BatchErrorOut(Schema):
    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchErrors(Schema):
    object: Literal["list"] = "list"
    data: list[BatchErrorOut]


class RequestCounts(Schema):
    total: int
    completed: int
    failed: int


class BatchOut(Schema):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: UnixTime
    errors: BatchErrors | None = Field(default=None, exclude_if=_unset)
    output_file_id: str | None = Field(default=None, exclude_if=_unset)
    error_file_id: str | None = Field(default=None, exclude_if=_unset)
    request_counts: RequestCounts
    metadata: dict[str, str] | None = None
    usage: dict[str, Any] | None = Field(default=None, exclude_if=_unset)
    expires_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    in_progress_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    finalizing_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    completed_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    failed_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    cancelling_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    cancelled_at: UnixTime | None = Field(default=None, exclude_if=_unset)
