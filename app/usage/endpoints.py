"""/v1/usage/completions: the project's tokens and requests per time bucket, by model and API key."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.errors import InvalidRequest
from app.kit.time import MAX_UNIX_SECONDS, from_unix, utcnow
from app.usage.schemas import UsagePage
from app.usage.service import BUCKETS, GroupBy, UsageMeter

router = APIRouter(prefix="/v1/usage", tags=["Usage"])

MAX_BUCKETS = 1440


@router.get("/completions", response_model=UsagePage)
async def completions_usage(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    start_time: Annotated[int, Query(ge=0, le=MAX_UNIX_SECONDS, description="Unix seconds, inclusive.")],
    end_time: Annotated[
        int | None, Query(ge=0, le=MAX_UNIX_SECONDS, description="Unix seconds, exclusive; default now.")
    ] = None,
    bucket_width: Annotated[Literal["1m", "1h", "1d"], Query()] = "1d",
    group_by: Annotated[list[GroupBy] | None, Query(description="Split results by model and/or api_key_id.")] = None,
) -> UsagePage:
    """Requests and tokens of the calling project's chat and text completions, per bucket."""
    end = from_unix(end_time) if end_time is not None else utcnow()
    start = from_unix(start_time)
    if end <= start:
        raise InvalidRequest("end_time must be after start_time.", param="end_time")
    if (end - start).total_seconds() / BUCKETS[bucket_width] > MAX_BUCKETS:
        raise InvalidRequest(
            f"That range holds more than {MAX_BUCKETS} buckets of {bucket_width}; use a wider bucket_width.",
            param="bucket_width",
        )
    meter: UsageMeter = request.app.state.usage
    return await meter.read(
        session, principal.project_id, start=start, end=end, bucket_width=bucket_width, group_by=group_by or []
    )
