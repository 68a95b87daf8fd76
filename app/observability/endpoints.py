"""``GET /metrics``: Prometheus' text format, for a scraper holding ``FTGW_METRICS_TOKEN`` or an admin key.

Model names in the labels are tenants' data, so the endpoint is never open: with ``FTGW_METRICS_TOKEN`` set,
``Authorization: Bearer <that token>`` is enough (what a scrape config's ``authorization.credentials`` sends); an
admin API key always works. It is not part of the OpenAI-shaped API, so it stays out of the OpenAPI document (the
README says how to scrape it). Counters are this process's: scrape each replica on its own.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from app.auth.principal import get_principal
from app.db import SessionDep
from app.errors import PermissionDenied
from app.evals.models import RunStatus
from app.fine_tuning.models import JobStatus
from app.inference.gateway import InferenceGateway
from app.observability.metrics import CONTENT_TYPE, exposition, scraped
from app.observability.repository import WorkRepository
from app.observability.requestid import outermost

router = APIRouter(include_in_schema=False)

STATUSES = {"fine_tuning_job": [s.value for s in JobStatus], "eval_run": [s.value for s in RunStatus]}


def _bearer(request: Request) -> str | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


async def scraper(request: Request) -> None:
    """The metrics token, when one is configured, or an admin key (or an admin's console session)."""
    token: str | None = request.app.state.settings.metrics_token
    given = _bearer(request)
    if token is not None and given is not None and hmac.compare_digest(given.encode(), token.encode()):
        return
    principal = await get_principal(request)
    if not principal.is_admin:
        raise PermissionDenied("/metrics needs an admin API key or the metrics token (FTGW_METRICS_TOKEN).")


@router.get("/metrics", dependencies=[Depends(scraper)])
async def metrics(request: Request, session: SessionDep) -> Response:
    """This process's metrics, and the jobs, eval runs and leases of the whole database."""
    work = await WorkRepository(session).by_status()
    gateway: InferenceGateway = request.app.state.inference
    backends = {backend.name: (await backend.health()).healthy for backend in gateway.backends}
    families = scraped(work, STATUSES, gateway.backends.load(), backends)
    return Response(exposition(families), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Serve ``/metrics`` and put the request-id middleware outside every other one, Starlette's error handler
    included (see :func:`app.observability.requestid.outermost`)."""
    app.include_router(router)
    app.build_middleware_stack = outermost(app.build_middleware_stack)  # type: ignore[method-assign]
