"""/v1/evals: evals (create, list, retrieve, update, delete), their runs (create, list, retrieve, cancel, delete) and
the runs' output items (list, retrieve), as OpenAI's Evals API has them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.evals import comparisons
from app.evals.comparisons import ComparisonOut, CreateComparisonRequest
from app.evals.models import Eval, EvalOutputItem, EvalRun, OutputItemStatus, RunStatus
from app.evals.repository import EvalOrder
from app.evals.schemas import (
    CreateEvalRequest,
    CreateEvalRunRequest,
    EvalDeleted,
    EvalList,
    EvalOut,
    EvalRunDeleted,
    EvalRunList,
    EvalRunOut,
    OutputItemList,
    OutputItemOut,
    ResultCounts,
    UpdateEvalRequest,
)
from app.evals.service import eval_service
from app.kit.pagination import AfterQuery, Order, limit_query
from app.worker.wakeup import wake_workers

router = APIRouter(prefix="/v1/evals", tags=["Evals"])

Limit = Annotated[int, limit_query(100)]
AscFirst = Annotated[Order, Query(description="Sort order by creation (`asc`, the default, or `desc`).")]


def eval_out(evaluation: Eval) -> EvalOut:
    return EvalOut.model_validate(evaluation)


def run_out(run: EvalRun) -> EvalRunOut:
    return EvalRunOut.model_validate(run)


def item_out(item: EvalOutputItem) -> OutputItemOut:
    return OutputItemOut.model_validate(item)


@router.post("", response_model=EvalOut, status_code=201)
async def create_eval(
    body: CreateEvalRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> EvalOut:
    """Create an eval: the schema of its data's rows and the testing criteria (graders) each row is scored by."""
    return eval_out(await eval_service.create(session, request.app.state.catalog, principal.project_id, body))


@router.get("", response_model=EvalList)
async def list_evals(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Limit = 20,
    after: AfterQuery = None,
    order: AscFirst = Order.asc,
    order_by: Annotated[EvalOrder, Query(description="Order by creation or last update.")] = "created_at",
) -> EvalList:
    """List the project's evals."""
    page = await eval_service.list_evals(
        session, principal.project_id, limit=limit, order=order, after=after, order_by=order_by
    )
    return EvalList.of([eval_out(e) for e in page.items], page.has_more)


@router.get("/{eval_id}", response_model=EvalOut)
async def retrieve_eval(eval_id: str, session: SessionDep, principal: PrincipalDep) -> EvalOut:
    """Retrieve an eval."""
    return eval_out(await eval_service.get(session, principal.project_id, eval_id))


@router.post("/{eval_id}", response_model=EvalOut)
async def update_eval(eval_id: str, body: UpdateEvalRequest, session: SessionDep, principal: PrincipalDep) -> EvalOut:
    """Rename an eval or replace its metadata."""
    return eval_out(await eval_service.update(session, principal.project_id, eval_id, body))


@router.delete("/{eval_id}", response_model=EvalDeleted)
async def delete_eval(eval_id: str, session: SessionDep, principal: PrincipalDep) -> EvalDeleted:
    """Delete an eval with its runs and their output items."""
    await eval_service.delete(session, principal.project_id, eval_id)
    return EvalDeleted(eval_id=eval_id)


@router.post("/{eval_id}/runs", response_model=EvalRunOut, status_code=201)
async def create_run(
    eval_id: str, body: CreateEvalRunRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> EvalRunOut:
    """Create a run: its data is read and checked now, then a worker samples (completions) and grades every row."""
    state = request.app.state
    run = await eval_service.create_run(
        session,
        state.blob_store,
        state.catalog,
        principal.project_id,
        eval_id,
        body,
        api_base=str(request.base_url),
        created_by=principal.key_id,
    )
    wake_workers(request, session)
    return run_out(run)


@router.get("/{eval_id}/runs", response_model=EvalRunList)
async def list_runs(
    eval_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Limit = 20,
    after: AfterQuery = None,
    order: AscFirst = Order.asc,
    status: Annotated[RunStatus | None, Query(description="Only the runs in this status.")] = None,
) -> EvalRunList:
    """List an eval's runs."""
    page = await eval_service.list_runs(
        session, principal.project_id, eval_id, limit=limit, order=order, after=after, status=status
    )
    return EvalRunList.of([run_out(r) for r in page.items], page.has_more)


@router.get("/{eval_id}/runs/{run_id}", response_model=EvalRunOut)
async def retrieve_run(eval_id: str, run_id: str, session: SessionDep, principal: PrincipalDep) -> EvalRunOut:
    """Retrieve a run: its status and, as it goes, its counts."""
    run = await eval_service.get_run(session, principal.project_id, eval_id, run_id)
    counts = ResultCounts.model_validate(await eval_service.result_counts(session, run))
    return run_out(run).model_copy(update={"result_counts": counts})


@router.post("/{eval_id}/runs/{run_id}", response_model=EvalRunOut)
async def cancel_run(eval_id: str, run_id: str, session: SessionDep, principal: PrincipalDep) -> EvalRunOut:
    """Cancel a queued or running run; the rows graded so far are kept."""
    return run_out(await eval_service.cancel_run(session, principal.project_id, eval_id, run_id))


@router.post("/{eval_id}/runs/{run_id}/cancel", response_model=EvalRunOut)
async def cancel_run_by_name(eval_id: str, run_id: str, session: SessionDep, principal: PrincipalDep) -> EvalRunOut:
    """Cancel a run (the path the `openai` SDK calls; OpenAI's reference has the one without `/cancel`)."""
    return run_out(await eval_service.cancel_run(session, principal.project_id, eval_id, run_id))


@router.delete("/{eval_id}/runs/{run_id}", response_model=EvalRunDeleted)
async def delete_run(eval_id: str, run_id: str, session: SessionDep, principal: PrincipalDep) -> EvalRunDeleted:
    """Delete a run and its output items."""
    await eval_service.delete_run(session, principal.project_id, eval_id, run_id)
    return EvalRunDeleted(run_id=run_id)


@router.get("/{eval_id}/runs/{run_id}/output_items", response_model=OutputItemList)
async def list_output_items(
    eval_id: str,
    run_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Limit = 20,
    after: AfterQuery = None,
    order: Annotated[Order, Query(description="In data source order (`asc`, the default) or reversed.")] = Order.asc,
    status: Annotated[OutputItemStatus | None, Query(description="Only the passed or the failed rows.")] = None,
) -> OutputItemList:
    """List a run's output items: each row with its sample and its graders' results."""
    page = await eval_service.list_output_items(
        session, principal.project_id, eval_id, run_id, limit=limit, order=order, after=after, status=status
    )
    return OutputItemList.of([item_out(i) for i in page.items], page.has_more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}", response_model=OutputItemOut)
async def retrieve_output_item(
    eval_id: str, run_id: str, output_item_id: str, session: SessionDep, principal: PrincipalDep
) -> OutputItemOut:
    """Retrieve one output item."""
    return item_out(await eval_service.get_output_item(session, principal.project_id, eval_id, run_id, output_item_id))


# --- comparisons (ftgw's own): one run per model, read side by side ---------------------------------------------


@router.post("/{eval_id}/comparisons", response_model=ComparisonOut, status_code=201)
async def create_comparison(
    eval_id: str, body: CreateComparisonRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> ComparisonOut:
    """Queue one completions run per model on the same rows; read them with `GET …/comparison?run_ids=…`."""
    state = request.app.state
    runs = await comparisons.create(
        session,
        state.blob_store,
        state.catalog,
        principal.project_id,
        eval_id,
        body,
        api_base=str(request.base_url),
        created_by=principal.key_id,
    )
    wake_workers(request, session)
    return await comparisons.read(
        session, principal.project_id, eval_id, [run.id for run in runs], disagreements_limit=0
    )


@router.get("/{eval_id}/comparison", response_model=ComparisonOut)
async def read_comparison(
    eval_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    run_ids: Annotated[
        list[str], Query(description="The runs to compare, 2 to 5, as repeated `run_ids` or one comma-separated list.")
    ],
    disagreements_limit: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> ComparisonOut:
    """Pass rates of each run overall and per criterion with 95% Wilson intervals, and the rows they disagree on."""
    ids = [part for value in run_ids for part in value.split(",") if part]
    return await comparisons.read(session, principal.project_id, eval_id, ids, disagreements_limit=disagreements_limit)
