"""Wire schemas of /v1/usage/completions, shaped like OpenAI's organization usage API."""

from __future__ import annotations

from typing import Literal

from app.kit.schemas import Schema


class UsageResult(Schema):
    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int
    output_tokens: int
    num_model_requests: int
    project_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None


class UsageBucketOut(Schema):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[UsageResult]


class UsagePage(Schema):
    object: Literal["page"] = "page"
    data: list[UsageBucketOut]
    has_more: bool = False
