"""The evals' logic: evals (create with every check its criteria need, update, delete), runs (create with every check
their data needs, so an accepted run never fails on its own input), output items, and the runs' state machine.

Every status change of a run, the API's (cancel) and the worker's (start, complete, fail), is a compare-and-set on
the run row (``EvalRepository.transition``): a run's outcome is recorded, and its webhook queued, exactly once.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit
from app.errors import InvalidRequest, NotFound
from app.evals import graders, hooks, templates
from app.evals.items import item_schema_problem, load_items
from app.evals.models import ACTIVE, Eval, EvalOutputItem, EvalRun, OutputItemStatus, RunStatus
from app.evals.repository import EvalOrder, EvalRepository, GradedItem
from app.evals.schemas import (
    SAMPLE_SCHEMA,
    CompletionsRunDataSource,
    CreateEvalRequest,
    CreateEvalRunRequest,
    CustomDataSourceConfig,
    ItemReferenceInputMessages,
    JsonlRunDataSource,
    ResponsesRunDataSource,
    RunError,
    StoredCompletionsSource,
    UpdateEvalRequest,
)
from app.evals.watch import RUNS_FINISHED, RunWatch
from app.files.storage import BlobStore
from app.fine_tuning.events import DISPATCH_WAKEUP
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.time import utcnow
from app.registry.routing import ModelCatalog
from app.webhooks.service import webhook_service

# The webhook each final status fires (OpenAI's names).
OUTCOME_EVENTS = {
    RunStatus.completed: "eval.run.succeeded",
    RunStatus.failed: "eval.run.failed",
    RunStatus.canceled: "eval.run.canceled",
}
_UNSUPPORTED_SAMPLING = ("response_format", "tools", "reasoning_effort")


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_data_source")


def _unprovided(path: str, param: str, where: str) -> InvalidRequest:
    return InvalidRequest(
        f"{where} reads {{{{{path}}}}}, which the eval's items do not provide: every {{{{item.x}}}} must be a "
        "property of the item_schema, and only testing criteria may read {{sample.…}}.",
        param=param,
    )


def _no_such_model(model: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model '{model}' does not exist or you do not have access to it.", param=param, code="model_not_found"
    )


async def _callable(catalog: ModelCatalog, project_id: str, model: str) -> bool:
    """Whether the project may call ``model`` (base, ``ft:``, checkpoint, alias, ``alias@N``, upstream)."""
    try:
        plan = await catalog.plan(project_id, model)
    except NotFound:
        return False
    return any(plan.candidates)


def _judges(grader: graders.AnyGrader, param: str) -> list[tuple[str, str]]:
    """``(param, model)`` of every judge model the grader asks (a multi grader's, under ``graders``)."""
    if isinstance(grader, graders.LabelModelGrader | graders.ScoreModelGrader):
        return [(f"{param}.model", grader.model)]
    if isinstance(grader, graders.MultiGrader):
        return [(f"{param}.graders", model) for sub in grader.named().values() for _, model in _judges(sub, param)]
    return []


def _data_source_config(config: CustomDataSourceConfig) -> dict[str, Any]:
    """The config as OpenAI returns it: one JSON schema of a row, ``item`` (and ``sample`` when included)."""
    properties: dict[str, Any] = {"item": config.item_schema}
    if config.include_sample_schema:
        properties["sample"] = SAMPLE_SCHEMA
    return {"type": "custom", "schema": {"type": "object", "properties": properties, "required": list(properties)}}


def _refuse_stored(data_source: CompletionsRunDataSource) -> None:
    if isinstance(data_source.source, StoredCompletionsSource):
        raise _unsupported(
            "Source 'stored_completions' reads OpenAI's stored traffic, which ftgw does not have: use "
            "'file_content' or 'file_id'.",
            "data_source.source.type",
        )


def _check_prompt(evaluation: Eval, data_source: CompletionsRunDataSource) -> None:
    """The run's messages read only what the eval's items provide, and its sampling parameters are ones ftgw has."""
    messages = data_source.input_messages
    if messages is None:
        raise InvalidRequest(
            "A completions run needs input_messages: a template, or an item_reference.",
            param="data_source.input_messages",
            code="missing_required_parameter",
        )
    schema = evaluation.item_schema
    if isinstance(messages, ItemReferenceInputMessages):
        param = "data_source.input_messages.item_reference"
        if templates.check_references({messages.item_reference}, schema, sample_allowed=False) is not None:
            raise _unprovided(messages.item_reference, param, "The item_reference")
    else:
        for j, message in enumerate(messages.template):
            paths = {path for text in message.texts() for path in templates.references(text)}
            unprovided = templates.check_references(paths, schema, sample_allowed=False)
            if unprovided is not None:
                raise _unprovided(unprovided, f"data_source.input_messages.template[{j}]", f"Message {j}")
    sampling = data_source.sampling_params
    for name in _UNSUPPORTED_SAMPLING:
        if sampling is not None and getattr(sampling, name) is not None:
            raise InvalidRequest(
                f"sampling_params.{name} is not supported by ftgw's eval runs.",
                param=f"data_source.sampling_params.{name}",
                code="unsupported_parameter",
            )


class EvalService:
    # --- evals -----------------------------------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, catalog: ModelCatalog | None, project_id: str, body: CreateEvalRequest
    ) -> Eval:
        """A new eval, once its item schema is a JSON schema, each criterion a valid grader whose templates read only
        what the items provide, and each judge model (label_model, score_model) one the project may call (``catalog``
        None: ftgw's own evals, whose criteria name no judge; a judge is then refused as unknown)."""
        config = body.data_source_config
        if not isinstance(config, CustomDataSourceConfig):
            raise _unsupported(
                f"Data source config '{config.type}' reads OpenAI's stored traffic, which ftgw does not have: use "
                "'custom' with an item_schema.",
                "data_source_config.type",
            )
        problem = item_schema_problem(config.item_schema)
        if problem is not None:
            raise InvalidRequest(f"The item_schema is {problem}.", param="data_source_config.item_schema")
        criteria = []
        for i, spec in enumerate(body.testing_criteria):
            param = f"testing_criteria[{i}]"
            grader = graders.parse_grader(spec, param)
            unprovided = templates.check_references(graders.references(grader), config.item_schema, sample_allowed=True)
            if unprovided is not None:
                raise _unprovided(unprovided, param, f"Testing criterion {i}")
            for judge_param, model in _judges(grader, param):
                if catalog is None or not await _callable(catalog, project_id, model):
                    raise _no_such_model(model, judge_param)
            name = str(spec.get("name", ""))
            criteria.append({**spec, "id": f"{name}-{uuid.uuid4()}"})
        eval_id = new_id("eval", separator="_")
        evaluation = Eval(
            id=eval_id,
            project_id=project_id,
            name=body.name if body.name is not None else eval_id,
            data_source_config=_data_source_config(config),
            testing_criteria=criteria,
            eval_metadata=body.metadata,
        )
        await EvalRepository(session).add(evaluation)
        return evaluation

    async def get(self, session: AsyncSession, project_id: str, eval_id: str) -> Eval:
        evaluation = await EvalRepository(session).get(project_id, eval_id)
        if evaluation is None:
            raise NotFound(f"No such eval: {eval_id}", param="eval_id")
        return evaluation

    async def list_evals(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        limit: int,
        order: Order,
        after: str | None,
        order_by: EvalOrder,
    ) -> Page[Eval]:
        return await EvalRepository(session).page(project_id, limit=limit, order=order, after=after, order_by=order_by)

    async def update(self, session: AsyncSession, project_id: str, eval_id: str, body: UpdateEvalRequest) -> Eval:
        """Rename the eval and/or replace its metadata (what the body leaves out stays as it is)."""
        evaluation = await self.get(session, project_id, eval_id)
        if body.name is not None:
            evaluation.name = body.name
        if "metadata" in body.model_fields_set:
            evaluation.eval_metadata = body.metadata
        await session.flush()
        return evaluation

    async def delete(self, session: AsyncSession, project_id: str, eval_id: str) -> None:
        """The eval with its runs and their output items; a worker running one of them loses it at its next step."""
        await EvalRepository(session).delete(await self.get(session, project_id, eval_id))

    # --- runs ------------------------------------------------------------------------------------------------------

    async def create_run(
        self,
        session: AsyncSession,
        store: BlobStore,
        catalog: ModelCatalog,
        project_id: str,
        eval_id: str,
        body: CreateEvalRunRequest,
        *,
        api_base: str,
        created_by: str | None,
    ) -> EvalRun:
        """A queued run, once its whole data source has been read and checked. ``api_base`` (``https://host/``)
        makes the run's ``report_url``, its address in this API; ``created_by`` is the API key asking (the run
        samples and judges as that key)."""
        evaluation = await self.get(session, project_id, eval_id)
        data_source = body.data_source
        if isinstance(data_source, ResponsesRunDataSource):
            raise _unsupported(
                "Data source 'responses' (OpenAI's Responses API) is not supported by ftgw: use 'completions'.",
                "data_source.type",
            )
        model = None
        if isinstance(data_source, CompletionsRunDataSource):
            model = await self._check_completions(catalog, project_id, evaluation, data_source)
        await load_items(session, store, evaluation, data_source)
        return await _queue(
            session, evaluation, data_source, model, body.name, body.metadata, api_base=api_base, created_by=created_by
        )

    async def create_own_run(
        self,
        session: AsyncSession,
        store: BlobStore,
        project_id: str,
        eval_id: str,
        data_source: CompletionsRunDataSource,
        *,
        name: str,
        metadata: dict[str, str],
        api_base: str,
    ) -> EvalRun:
        """A queued completions run that ftgw itself asks for (the eval a fine-tuning job ends with), checked as any
        run is but for its model: a job's fine-tuned model is created in the same transaction, and the catalog, which
        reads committed rows, would not find it yet. The caller names a model it knows; no API key made the run."""
        assert data_source.model is not None
        evaluation = await self.check_source(session, store, project_id, eval_id, data_source)
        return await _queue(
            session, evaluation, data_source, data_source.model, name, metadata, api_base=api_base, created_by=None
        )

    async def check_source(
        self,
        session: AsyncSession,
        store: BlobStore,
        project_id: str,
        eval_id: str,
        data_source: CompletionsRunDataSource,
    ) -> Eval:
        """A completions data source checked as a run's is, all but its model, which each run made from it names (a
        release gate's, one run per alias version it judges). The eval it was checked against."""
        evaluation = await self.get(session, project_id, eval_id)
        _refuse_stored(data_source)
        _check_prompt(evaluation, data_source)
        await load_items(session, store, evaluation, data_source)
        return evaluation

    @staticmethod
    async def _check_completions(
        catalog: ModelCatalog, project_id: str, evaluation: Eval, data_source: CompletionsRunDataSource
    ) -> str:
        """The model the run samples, once it and the prompt are known good."""
        _refuse_stored(data_source)
        if data_source.model is None:
            raise InvalidRequest(
                "A completions run needs the model to sample.",
                param="data_source.model",
                code="missing_required_parameter",
            )
        if not await _callable(catalog, project_id, data_source.model):
            raise _no_such_model(data_source.model, "data_source.model")
        _check_prompt(evaluation, data_source)
        return data_source.model

    async def get_run(
        self, session: AsyncSession, project_id: str, eval_id: str, run_id: str, *, for_update: bool = False
    ) -> EvalRun:
        run = await EvalRepository(session).get_run(project_id, eval_id, run_id, for_update=for_update)
        if run is None:
            raise NotFound(f"No such eval run: {run_id}", param="run_id")
        return run

    async def result_counts(self, session: AsyncSession, run: EvalRun) -> dict[str, int]:
        """The run's ``result_counts``: final once it has ended; while it is queued or in progress, those of the rows
        graded so far (a run's progress, as OpenAI's API shows it), counted without changing the run."""
        if run.status not in ACTIVE:
            return run.result_counts
        return await EvalRepository(session).result_counts(run.id)

    async def list_runs(
        self,
        session: AsyncSession,
        project_id: str,
        eval_id: str,
        *,
        limit: int,
        order: Order,
        after: str | None,
        status: RunStatus | None,
    ) -> Page[EvalRun]:
        evaluation = await self.get(session, project_id, eval_id)
        return await EvalRepository(session).runs_page(
            project_id, evaluation.id, limit=limit, order=order, after=after, status=status
        )

    async def latest_runs(
        self, session: AsyncSession, project_id: str, eval_ids: Collection[str]
    ) -> dict[str, tuple[EvalRun, int]]:
        """eval id -> (its newest run, its number of runs), for those of ``eval_ids`` that have runs."""
        return await EvalRepository(session).latest_runs(project_id, eval_ids)

    async def delete_run(self, session: AsyncSession, project_id: str, eval_id: str, run_id: str) -> None:
        """The run and its output items, whatever its status (a worker running it loses it at its next step)."""
        await EvalRepository(session).delete_run(await self.get_run(session, project_id, eval_id, run_id))

    async def get_output_item(
        self, session: AsyncSession, project_id: str, eval_id: str, run_id: str, output_item_id: str
    ) -> EvalOutputItem:
        run = await self.get_run(session, project_id, eval_id, run_id)
        item = await EvalRepository(session).get_output_item(project_id, run.eval_id, run.id, output_item_id)
        if item is None:
            raise NotFound(f"No such output item: {output_item_id}", param="output_item_id")
        return item

    async def list_output_items(
        self,
        session: AsyncSession,
        project_id: str,
        eval_id: str,
        run_id: str,
        *,
        limit: int,
        order: Order,
        after: str | None,
        status: OutputItemStatus | None,
    ) -> Page[EvalOutputItem]:
        run = await self.get_run(session, project_id, eval_id, run_id)
        return await EvalRepository(session).output_items_page(
            project_id, run.eval_id, run.id, limit=limit, order=order, after=after, status=status
        )

    # --- the state machine: every status change is a compare-and-set (EvalRepository.transition) -------------------

    async def cancel_run(self, session: AsyncSession, project_id: str, eval_id: str, run_id: str) -> EvalRun:
        """queued or in_progress → canceled; a worker running it stops at its next step (its lease's renewal)."""
        run = await self.get_run(session, project_id, eval_id, run_id, for_update=True)
        if not await self._finish(session, run, RunStatus.canceled, from_=ACTIVE):
            # 400 as OpenAI answers it (cancelling a finished run), not 409.
            raise InvalidRequest(
                f"Cannot cancel a run that is {run.status.value}.", param="run_id", code="invalid_run_state"
            )
        return run

    async def start(self, session: AsyncSession, run: EvalRun, worker_id: str) -> bool:
        """queued → in_progress, under the lease of ``worker_id``. Whether the run is now in progress and this
        worker's (True too for a run it resumes after another worker died); False: canceled, deleted, or the lease
        lost, and the worker must leave it."""
        repo = EvalRepository(session)
        moved = await repo.transition(
            run,
            RunStatus.in_progress,
            from_=(RunStatus.queued,),
            lease_owner=worker_id,
            values={"started_at": utcnow()},
        )
        if moved:
            return True
        held = await repo.held(run.id, worker_id)
        return held is not None and held.status is RunStatus.in_progress

    async def complete(
        self,
        session: AsyncSession,
        run: EvalRun,
        worker_id: str,
        *,
        result_counts: dict[str, int] | None = None,
        per_model_usage: list[dict[str, Any]] | None = None,
        per_testing_criteria_results: list[dict[str, Any]] | None = None,
    ) -> bool:
        """in_progress → completed, while the lease is still ``worker_id``'s. Its figures (OpenAI's shapes) are the
        ones given, and those not given come from its output items (what a run resumed by another worker needs).
        Whether this call completed it (False: canceled or deleted meanwhile, or another worker holds it now)."""
        given = {
            "result_counts": result_counts,
            "per_model_usage": per_model_usage,
            "per_testing_criteria_results": per_testing_criteria_results,
        }
        values = {key: value for key, value in given.items() if value is not None}
        return await self._finish(
            session, run, RunStatus.completed, from_=(RunStatus.in_progress,), lease_owner=worker_id, values=values
        )

    async def fail(self, session: AsyncSession, run: EvalRun, worker_id: str, *, code: str, message: str) -> bool:
        """queued or in_progress → failed with OpenAI's ``error`` ``{code, message}``, while the lease is still
        ``worker_id``'s; its figures are those of the output items recorded so far. Whether this call failed it."""
        values = {"error": RunError(code=code, message=message).model_dump()}
        return await self._finish(session, run, RunStatus.failed, from_=ACTIVE, lease_owner=worker_id, values=values)

    @staticmethod
    async def _finish(
        session: AsyncSession,
        run: EvalRun,
        status: RunStatus,
        *,
        from_: Collection[RunStatus],
        lease_owner: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """The one way into a final status: only the transaction that moves the run queues its webhook. The figures
        not in ``values`` are tallied from the run's output items (a canceled run keeps what it graded)."""
        repo = EvalRepository(session)
        tally = await repo.tally(run.id, [criterion["id"] for criterion in await _criteria(session, run)])
        final: dict[str, Any] = {
            "result_counts": tally.result_counts,
            "per_testing_criteria_results": tally.per_testing_criteria_results,
            "per_model_usage": tally.per_model_usage,
            "finished_at": utcnow(),
            **(values or {}),
        }
        if not await repo.transition(run, status, from_=from_, lease_owner=lease_owner, values=final):
            return False
        await webhook_service.enqueue(
            session, run.project_id, OUTCOME_EVENTS[status], {"id": run.id}, session.info.get(DISPATCH_WAKEUP)
        )
        await hooks.run_finished(session, run)
        watch = session.info.get(RUNS_FINISHED)
        if isinstance(watch, RunWatch):
            after_commit(session, functools.partial(watch.finished, run.id))
        return True

    # --- the executor's reads and writes ---------------------------------------------------------------------------

    async def claim(self, session: AsyncSession, worker_id: str, lease: timedelta) -> EvalRun | None:
        return await EvalRepository(session).claim(worker_id, lease)

    async def renew(self, session: AsyncSession, run_id: str, worker_id: str, lease: timedelta) -> RunStatus | None:
        return await EvalRepository(session).renew(run_id, worker_id, lease)

    async def held(self, session: AsyncSession, run_id: str, worker_id: str) -> EvalRun | None:
        return await EvalRepository(session).held(run_id, worker_id)

    async def release(self, session: AsyncSession, run_id: str, worker_id: str) -> None:
        await EvalRepository(session).release(run_id, worker_id)

    async def record_items(
        self, session: AsyncSession, run_id: str, worker_id: str, items: Sequence[GradedItem]
    ) -> int | None:
        """Store graded rows (idempotent per row: a row already stored stays as it was). How many were new; None,
        with nothing written, when the run is no longer this worker's (canceled and deleted, or taken over)."""
        return await EvalRepository(session).add_output_items(run_id, worker_id, items)

    async def graded_item_ids(self, session: AsyncSession, run_id: str) -> set[int]:
        """The rows of the run that have their output item already: a resumed run skips them."""
        return await EvalRepository(session).graded_item_ids(run_id)


async def _queue(
    session: AsyncSession,
    evaluation: Eval,
    data_source: JsonlRunDataSource | CompletionsRunDataSource,
    model: str | None,
    name: str | None,
    metadata: dict[str, str] | None,
    *,
    api_base: str,
    created_by: str | None,
) -> EvalRun:
    """A new queued run of ``evaluation`` over a data source already checked."""
    run_id = new_id("evalrun", separator="_")
    run = EvalRun(
        id=run_id,
        project_id=evaluation.project_id,
        eval_id=evaluation.id,
        name=name if name is not None else (model or run_id),
        model=model,
        status=RunStatus.queued,
        data_source=data_source.model_dump(mode="json", exclude_none=True),
        result_counts={"total": 0, "errored": 0, "failed": 0, "passed": 0},
        per_model_usage=[],
        per_testing_criteria_results=[],
        run_metadata=metadata,
        report_url=f"{api_base.rstrip('/')}/v1/evals/{evaluation.id}/runs/{run_id}",
        attempts=0,
        created_by=created_by,
    )
    await EvalRepository(session).add(run)
    return run


async def _criteria(session: AsyncSession, run: EvalRun) -> list[dict[str, Any]]:
    evaluation = await EvalRepository(session).get(run.project_id, run.eval_id)
    return evaluation.testing_criteria if evaluation is not None else []


eval_service = EvalService()
