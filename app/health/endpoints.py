"""/health (the process answers) and /ready (and its database does too); no auth, for load balancers."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.errors import ErrorResponse, ServiceUnavailable
from app.kit.schemas import Schema

log = logging.getLogger(__name__)
router = APIRouter(tags=["Health"])


class HealthOut(Schema):
    status: Literal["ok", "ready"]


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/ready", response_model=HealthOut, responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> HealthOut:
    """The process is up and its database answers."""
    try:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        raise ServiceUnavailable("The database is not reachable.") from None
    return HealthOut(status="ready")
