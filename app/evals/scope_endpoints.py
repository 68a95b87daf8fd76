"""/v1/evals/scope_checks (ftgw's own): how often a model answers in-scope questions and its guard refuses the rest.

Its own router, included before the evals router: ``POST /v1/evals/scope_checks`` would otherwise be read as an
update of an eval named ``scope_checks``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.evals import scope
from app.evals.scope import CreateScopeCheckRequest, ScopeCheckOut
from app.worker.wakeup import wake_workers

router = APIRouter(prefix="/v1/evals", tags=["Evals"])


@router.post("/scope_checks", response_model=ScopeCheckOut, status_code=201)
async def create_scope_check(
    body: CreateScopeCheckRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> ScopeCheckOut:
    """Ask a model every in-scope and out-of-scope question (an eval with one run each); read how often it answers
    and how often its guard refuses with `GET /v1/evals/{eval_id}/scope_check`."""
    state = request.app.state
    check = await scope.create(
        session,
        state.blob_store,
        state.catalog,
        principal.project_id,
        body,
        api_base=str(request.base_url),
        created_by=principal.key_id,
    )
    wake_workers(request, session)
    return check


@router.get("/{eval_id}/scope_check", response_model=ScopeCheckOut)
async def read_scope_check(eval_id: str, session: SessionDep, principal: PrincipalDep) -> ScopeCheckOut:
    """A scope check's rates as they stand: in-scope questions answered, out-of-scope ones refused (95% Wilson
    intervals)."""
    return await scope.read(session, principal.project_id, eval_id)
