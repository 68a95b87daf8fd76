"""Comparisons: one eval run per model on the same rows, read side by side (ftgw's own addition to the Evals API).

``POST /v1/evals/{eval_id}/comparisons`` queues one completions run per model, alike in everything but the model;
``GET /v1/evals/{eval_id}/comparison?run_ids=…`` reads any runs of an eval as a comparison: each run's pass rate
overall and per criterion with its Wilson interval, and the rows on which the runs disagree. The runs are ordinary
runs (listed, canceled, their items read as any other); a comparison is a way of reading them, so it has no state
of its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.evals.compare import RowOutcome, RunOutcomes, compare
from app.evals.models import EvalRun, RunStatus
from app.evals.repository import EvalRepository
from app.evals.schemas import CompletionsRunDataSource, CreateEvalRunRequest
from app.evals.service import eval_service
from app.files.storage import BlobStore
from app.kit.schemas import RequestSchema, Schema
from app.registry.routing import ModelCatalog

MAX_MODELS = 5
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class CreateComparisonRequest(RequestSchema):
    models: Annotated[list[ModelName], Field(min_length=2, max_length=MAX_MODELS)] = Field(
        description="The models to run the eval on: base, ft:, checkpoint, alias or alias@N, upstream."
    )
    data_source: CompletionsRunDataSource = Field(
        description="A completions data source without its model: each model gets a run of its own with it."
    )
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    metadata: dict[str, str] | None = None


class Rate(Schema):
    passed: int
    total: int
    pass_rate: float | None = Field(description="passed / total; null before any row is graded.")
    ci_low: float | None = Field(description="Wilson score interval at confidence_level.")
    ci_high: float | None


class CriterionRate(Rate):
    testing_criteria: str
    name: str


class RunColumn(Schema):
    run_id: str
    model: str | None
    status: RunStatus
    overall: Rate = Field(description="Rows that passed every criterion.")
    per_testing_criteria: list[CriterionRate]


class RowVerdict(Schema):
    run_id: str
    model: str | None
    status: Literal["pass", "fail", "error"] | None = Field(description="Null: this run has not graded the row.")
    passed: list[bool] | None = Field(description="Each criterion's verdict, in the eval's order.")
    output_text: str | None


class Disagreement(Schema):
    datasource_item_id: int
    datasource_item: dict[str, Any]
    outcomes: list[RowVerdict]


class Disagreements(Schema):
    total: int
    has_more: bool
    data: list[Disagreement]


class ComparisonOut(Schema):
    object: Literal["eval.comparison"] = "eval.comparison"
    eval_id: str
    status: Literal["in_progress", "completed", "failed"] = Field(
        description="completed once every run has; failed when one failed or was canceled."
    )
    confidence_level: float
    runs: list[RunColumn]
    disagreements: Disagreements


async def create(
    session: AsyncSession,
    store: BlobStore,
    catalog: ModelCatalog,
    project_id: str,
    eval_id: str,
    body: CreateComparisonRequest,
    *,
    api_base: str,
    created_by: str | None,
) -> list[EvalRun]:
    """One queued run per model, all checked before any is kept (the caller's one commit)."""
    if len(set(body.models)) != len(body.models):
        raise InvalidRequest("Each model may be compared once.", param="models")
    if body.data_source.model is not None:
        raise InvalidRequest(
            "A comparison's data source names no model: the models are in 'models'.", param="data_source.model"
        )
    runs = []
    for i, model in enumerate(body.models):
        source = body.data_source.model_copy(update={"model": model})
        request = CreateEvalRunRequest(
            name=f"{body.name or 'Comparison'}: {model}", metadata=body.metadata, data_source=source
        )
        try:
            run = await eval_service.create_run(
                session, store, catalog, project_id, eval_id, request, api_base=api_base, created_by=created_by
            )
        except InvalidRequest as exc:
            if exc.param == "data_source.model":
                exc.param = f"models[{i}]"
            raise
        runs.append(run)
    return runs


async def read(
    session: AsyncSession, project_id: str, eval_id: str, run_ids: list[str], *, disagreements_limit: int
) -> ComparisonOut:
    """The comparison of ``run_ids`` (runs of this eval, 2 to 5) as they stand."""
    evaluation = await eval_service.get(session, project_id, eval_id)
    if not 2 <= len(run_ids) <= MAX_MODELS or len(set(run_ids)) != len(run_ids):
        raise InvalidRequest(f"Compare 2 to {MAX_MODELS} distinct runs.", param="run_ids")
    repo = EvalRepository(session)
    runs = [await eval_service.get_run(session, project_id, eval_id, run_id) for run_id in run_ids]
    outcomes = []
    for run in runs:
        rows = {
            row_id: RowOutcome(status, tuple(passed), text, item)
            for row_id, status, passed, text, item in await repo.outcomes(run.id)
        }
        outcomes.append(RunOutcomes(run.id, run.model, run.status.value, rows))
    criteria = [(c["id"], c["name"]) for c in evaluation.testing_criteria]
    result = compare(criteria, outcomes).as_dict(disagreements_limit=disagreements_limit)
    statuses = {run.status for run in runs}
    if statuses & {RunStatus.failed, RunStatus.canceled}:
        status = "failed"
    elif statuses == {RunStatus.completed}:
        status = "completed"
    else:
        status = "in_progress"
    return ComparisonOut.model_validate({**result, "eval_id": eval_id, "status": status})
