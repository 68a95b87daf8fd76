"""Scope checks: the seed's last step before trusting a chatbot, one request away (ftgw's own addition).

"Run through the training questions verbatim, variations of them, and completely unrelated questions": a scope check
asks a model (usually a guarded alias, or ``alias@N`` to check a version before it is promoted) every in-scope and
every out-of-scope question, and reports how often it answers the first and how often its guard refuses the second.

It is an ordinary eval with two ordinary completions runs, one per set of questions (run metadata ``scope_check``:
``in_scope`` or ``out_of_scope``), graded by one criterion: ``string_check`` ``ne`` of the answer's
``finish_reason`` against ``content_filter``. A guard's refusal, and nothing else ftgw answers, finishes with
``content_filter`` (OpenAI's reason for an answer its filter replaced), whatever the version's refusal text: so the
criterion passes exactly the rows that were answered. Comparing the answer with the refusal text instead would count
a model that happens to say those words as refused, and would break when a version changes its text. A row whose call
failed (errored) is neither answered nor refused; rates are over the rows graded so far.

``POST /v1/evals/scope_checks`` creates the eval and queues both runs; ``GET /v1/evals/{eval_id}/scope_check`` reads
the rates as they stand, each with its Wilson interval (as comparisons do).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest, NotFound
from app.evals.compare import CONFIDENCE, Rate
from app.evals.models import EvalRun, RunStatus
from app.evals.repository import EvalRepository
from app.evals.schemas import (
    CompletionsRunDataSource,
    CreateEvalRequest,
    CreateEvalRunRequest,
    ModelName,
    Name,
    RunSamplingParams,
    TemplateMessage,
)
from app.evals.service import eval_service
from app.files.storage import BlobStore
from app.kit.schemas import Metadata, RequestSchema, Schema
from app.registry.routing import ModelCatalog

SCOPE_KEY = "scope_check"  # in the runs' metadata
IN_SCOPE, OUT_OF_SCOPE = "in_scope", "out_of_scope"
MAX_QUESTIONS = 500
DEFAULT_SAMPLING: dict[str, Any] = {"temperature": 0, "max_completion_tokens": 64}
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}
ANSWERED: dict[str, Any] = {
    "type": "string_check",
    "name": "Answered (not refused by a guard)",
    "input": "{{sample.choices[0].finish_reason}}",
    "reference": "content_filter",
    "operation": "ne",
}

Question = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Questions = Annotated[list[Question], Field(min_length=1, max_length=MAX_QUESTIONS)]


class CreateScopeCheckRequest(RequestSchema):
    model: ModelName = Field(
        description="The model to check: usually a guarded alias, or alias@N (a version not yet promoted); any model "
        "the project may call."
    )
    in_scope: Questions = Field(description="Questions it should answer: the training questions and variations.")
    out_of_scope: Questions = Field(description="Questions its guard should refuse: unrelated ones.")
    sampling_params: RunSamplingParams | None = Field(
        default=None, description="How the answers are sampled; unset: temperature 0, max_completion_tokens 64."
    )
    name: Name | None = None
    metadata: Metadata | None = None


class Share(Schema):
    count: int
    total: int = Field(description="Rows graded so far.")
    rate: float | None = Field(description="count / total; null before any row is graded.")
    ci_low: float | None = Field(description="Wilson score interval at confidence_level.")
    ci_high: float | None


class ScopeRun(Schema):
    run_id: str
    status: RunStatus
    questions: int
    answered: Share = Field(description="Rows answered: the guard let them through.")
    refused: Share = Field(description="Rows refused by the guard (finish_reason content_filter).")
    errored: int = Field(description="Rows whose call failed: neither answered nor refused.")


class ScopeCheckOut(Schema):
    object: Literal["eval.scope_check"] = "eval.scope_check"
    eval_id: str
    model: str | None
    status: Literal["in_progress", "completed", "failed"] = Field(
        description="completed once both runs have; failed when one failed or was canceled."
    )
    confidence_level: float
    in_scope: ScopeRun = Field(description="Its answered rate is how often the model answers in scope.")
    out_of_scope: ScopeRun = Field(description="Its refused rate is how often the guard refuses.")


async def create(
    session: AsyncSession,
    store: BlobStore,
    catalog: ModelCatalog,
    project_id: str,
    body: CreateScopeCheckRequest,
    *,
    api_base: str,
    created_by: str | None,
) -> ScopeCheckOut:
    """The eval and its two queued runs, all checked before any is kept (the caller's one commit)."""
    name = body.name if body.name is not None else f"Scope check: {body.model}"
    evaluation = await eval_service.create(
        session,
        catalog,
        project_id,
        CreateEvalRequest.model_validate(
            {
                "name": name,
                "metadata": body.metadata,
                "data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True},
                "testing_criteria": [ANSWERED],
            }
        ),
    )
    given = body.sampling_params.model_dump(exclude_none=True) if body.sampling_params else {}
    for scope, questions in ((IN_SCOPE, body.in_scope), (OUT_OF_SCOPE, body.out_of_scope)):
        source = CompletionsRunDataSource.model_validate(
            {
                "type": "completions",
                "model": body.model,
                "input_messages": {
                    "type": "template",
                    "template": [TemplateMessage.user("{{item.question}}")],
                },
                "sampling_params": {**DEFAULT_SAMPLING, **given},
                "source": {"type": "file_content", "content": [{"item": {"question": q}} for q in questions]},
            }
        )
        request = CreateEvalRunRequest(name=f"{name}: {scope}", metadata={SCOPE_KEY: scope}, data_source=source)
        try:
            await eval_service.create_run(
                session, store, catalog, project_id, evaluation.id, request, api_base=api_base, created_by=created_by
            )
        except InvalidRequest as exc:
            if exc.param is not None and exc.param.startswith("data_source."):
                exc.param = _request_param(exc.param.removeprefix("data_source."), scope)
            raise
    return await read(session, project_id, evaluation.id)


def _request_param(param: str, scope: str) -> str:
    """A run's ``data_source.…`` param as this request names it."""
    if param.startswith("source.content"):
        return scope + param.removeprefix("source.content")
    return param


async def read(session: AsyncSession, project_id: str, eval_id: str) -> ScopeCheckOut:
    """The scope check that is the eval ``eval_id``, as its runs stand."""
    await eval_service.get(session, project_id, eval_id)
    repo = EvalRepository(session)
    by_scope: dict[str, EvalRun] = {}
    for run in await repo.runs_with_metadata(project_id, eval_id, SCOPE_KEY):
        by_scope.setdefault(str((run.run_metadata or {})[SCOPE_KEY]), run)
    if IN_SCOPE not in by_scope or OUT_OF_SCOPE not in by_scope:
        raise NotFound(f"The eval {eval_id} is not a scope check.", param="eval_id")
    columns = {scope: await _column(repo, by_scope[scope]) for scope in (IN_SCOPE, OUT_OF_SCOPE)}
    statuses = {run.status for run in by_scope.values()}
    if statuses & {RunStatus.failed, RunStatus.canceled}:
        status: Literal["in_progress", "completed", "failed"] = "failed"
    elif statuses == {RunStatus.completed}:
        status = "completed"
    else:
        status = "in_progress"
    return ScopeCheckOut(
        eval_id=eval_id,
        model=by_scope[IN_SCOPE].model,
        status=status,
        confidence_level=CONFIDENCE,
        in_scope=columns[IN_SCOPE],
        out_of_scope=columns[OUT_OF_SCOPE],
    )


async def _column(repo: EvalRepository, run: EvalRun) -> ScopeRun:
    counts = Counter(status for _, status, _, _, _ in await repo.outcomes(run.id))
    graded = sum(counts.values())
    content = run.data_source.get("source", {}).get("content", [])
    return ScopeRun(
        run_id=run.id,
        status=run.status,
        questions=len(content),
        answered=_share(Rate(counts["pass"], graded)),
        refused=_share(Rate(counts["fail"], graded)),
        errored=counts["error"],
    )


def _share(rate: Rate) -> Share:
    figures = rate.as_dict()
    return Share(
        count=rate.passed,
        total=rate.total,
        rate=figures["pass_rate"],
        ci_low=figures["ci_low"],
        ci_high=figures["ci_high"],
    )
