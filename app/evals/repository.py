"""All SQL for evals, runs and output items: the API's project-scoped reads and writes, and the workers' leases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.evals.models import Eval, EvalOutputItem, EvalRun, OutputItemStatus, RunStatus
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.repository import compare_and_set, keyset_page
from app.kit.time import utcnow

EvalOrder = Literal["created_at", "updated_at"]


@dataclass(frozen=True, slots=True)
class GradedItem:
    """One graded row, as the executor hands it over: ``results[i]`` is the result of the eval's criterion ``i``."""

    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    sample: dict[str, Any]
    status: OutputItemStatus


@dataclass(frozen=True, slots=True)
class Tally:
    """A run's figures from its output items: OpenAI's ``result_counts``, ``per_testing_criteria_results`` and
    ``per_model_usage``."""

    result_counts: dict[str, int]
    per_testing_criteria_results: list[dict[str, Any]]
    per_model_usage: list[dict[str, Any]]


_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")


class _Usage:
    """Token usage summed per model: sampled answers (``sample.model`` and ``sample.usage``) and the judges of model
    graders (``results[i].metadata.usage``, by model)."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, int]] = {}

    def add(self, model: object, usage: object) -> None:
        if not isinstance(model, str) or not model or not isinstance(usage, Mapping):
            return
        tokens = {key: int(usage.get(key) or 0) for key in _TOKENS}
        if not tokens["total_tokens"]:
            return  # nothing was asked of a model (a jsonl row's own answer)
        entry = self.models.setdefault(model, dict.fromkeys(("invocation_count", *_TOKENS), 0))
        entry["invocation_count"] += 1
        for key, value in tokens.items():
            entry[key] += value

    def add_row(self, sample: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> None:
        self.add(sample.get("model"), sample.get("usage"))
        for result in results:
            metadata = result.get("metadata")
            judges = metadata.get("usage") if isinstance(metadata, Mapping) else None
            for model, usage in (judges or {}).items() if isinstance(judges, Mapping) else ():
                self.add(model, usage)

    def rows(self) -> list[dict[str, Any]]:
        return [{"model_name": model, **figures} for model, figures in sorted(self.models.items())]


class EvalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- evals ---------------------------------------------------------------------------------------------------

    async def add(self, row: Eval | EvalRun) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, project_id: str, eval_id: str) -> Eval | None:
        stmt = select(Eval).where(Eval.project_id == project_id, Eval.id == eval_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(
        self, project_id: str, *, limit: int, order: Order, after: str | None, order_by: EvalOrder
    ) -> Page[Eval]:
        stmt = select(Eval).where(Eval.project_id == project_id)
        return await keyset_page(self.session, stmt, Eval, limit=limit, order=order, after=after, by=order_by)

    async def first_with_metadata(self, project_id: str, key: str, value: str) -> Eval | None:
        """The project's earliest eval whose metadata maps ``key`` to ``value``."""
        stmt = (
            select(Eval)
            .where(Eval.project_id == project_id, Eval.eval_metadata[key].as_string() == value)
            .order_by(Eval.created_at, Eval.id)
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def delete(self, evaluation: Eval) -> None:
        """The eval, its runs and their output items (explicitly: a worker running one of its runs loses it)."""
        await self.session.execute(delete(EvalOutputItem).where(EvalOutputItem.eval_id == evaluation.id))
        await self.session.execute(delete(EvalRun).where(EvalRun.eval_id == evaluation.id))
        await self.session.delete(evaluation)
        await self.session.flush()

    # --- runs ----------------------------------------------------------------------------------------------------

    async def get_run(self, project_id: str, eval_id: str, run_id: str, *, for_update: bool = False) -> EvalRun | None:
        stmt = select(EvalRun).where(EvalRun.project_id == project_id, EvalRun.eval_id == eval_id, EvalRun.id == run_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def runs_page(
        self,
        project_id: str,
        eval_id: str,
        *,
        limit: int,
        order: Order,
        after: str | None,
        status: RunStatus | None,
    ) -> Page[EvalRun]:
        stmt = select(EvalRun).where(EvalRun.project_id == project_id, EvalRun.eval_id == eval_id)
        if status is not None:
            stmt = stmt.where(EvalRun.status == status)
        return await keyset_page(self.session, stmt, EvalRun, limit=limit, order=order, after=after)

    async def latest_runs(self, project_id: str, eval_ids: Collection[str]) -> dict[str, tuple[EvalRun, int]]:
        """eval id -> (its newest run, how many runs it has), for the evals of ``eval_ids`` that have runs: one
        query, a window over those evals' runs."""
        if not eval_ids:
            return {}
        ranked = (
            select(
                EvalRun.id,
                func.row_number()
                .over(partition_by=EvalRun.eval_id, order_by=(EvalRun.created_at.desc(), EvalRun.id.desc()))
                .label("rank"),
                func.count().over(partition_by=EvalRun.eval_id).label("runs"),
            )
            .where(EvalRun.project_id == project_id, EvalRun.eval_id.in_(eval_ids))
            .subquery()
        )
        stmt = select(EvalRun, ranked.c.runs).join(ranked, ranked.c.id == EvalRun.id).where(ranked.c.rank == 1)
        return {run.eval_id: (run, count) for run, count in (await self.session.execute(stmt)).all()}

    async def runs_with_metadata(self, project_id: str, eval_id: str, key: str) -> Sequence[EvalRun]:
        """The eval's runs whose metadata has ``key``, oldest first, read afresh: a run that another transaction has
        just finished shows its final status even when this session had loaded it before."""
        stmt = (
            select(EvalRun)
            .where(
                EvalRun.project_id == project_id,
                EvalRun.eval_id == eval_id,
                EvalRun.run_metadata[key].as_string().is_not(None),
            )
            .order_by(EvalRun.created_at, EvalRun.id)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def delete_run(self, run: EvalRun) -> None:
        await self.session.execute(delete(EvalOutputItem).where(EvalOutputItem.run_id == run.id))
        await self.session.delete(run)
        await self.session.flush()

    async def transition(
        self,
        run: EvalRun,
        to: RunStatus,
        *,
        from_: Collection[RunStatus],
        lease_owner: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """Compare-and-set the run's status (see :func:`app.kit.repository.compare_and_set`)."""
        return await compare_and_set(self.session, run, to, from_=from_, lease_owner=lease_owner, values=values)

    # --- output items --------------------------------------------------------------------------------------------

    async def get_output_item(
        self, project_id: str, eval_id: str, run_id: str, output_item_id: str
    ) -> EvalOutputItem | None:
        stmt = select(EvalOutputItem).where(
            EvalOutputItem.project_id == project_id,
            EvalOutputItem.eval_id == eval_id,
            EvalOutputItem.run_id == run_id,
            EvalOutputItem.id == output_item_id,
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def output_items_page(
        self,
        project_id: str,
        eval_id: str,
        run_id: str,
        *,
        limit: int,
        order: Order,
        after: str | None,
        status: OutputItemStatus | None,
    ) -> Page[EvalOutputItem]:
        """In data source order (``datasource_item_id``): the order a run's rows come in, whatever order they were
        graded in. ``after`` is an output item id of the run (the status filter does not apply to it)."""
        scope = (
            EvalOutputItem.project_id == project_id,
            EvalOutputItem.eval_id == eval_id,
            EvalOutputItem.run_id == run_id,
        )
        stmt = select(EvalOutputItem).where(*scope)
        if status is not None:
            stmt = stmt.where(EvalOutputItem.status == status)
        position = EvalOutputItem.datasource_item_id
        if after is not None:
            cursor_stmt = select(position).where(*scope, EvalOutputItem.id == after)
            cursor = (await self.session.execute(cursor_stmt)).scalar()
            if cursor is None:
                raise InvalidRequest(f"No output item with id '{after}' to continue after.", param="after")
            stmt = stmt.where(position > cursor if order is Order.asc else position < cursor)
        stmt = stmt.order_by(position.asc() if order is Order.asc else position.desc()).limit(limit + 1)
        rows = list((await self.session.execute(stmt)).scalars().all())
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    async def add_output_items(self, run_id: str, worker_id: str, items: Sequence[GradedItem]) -> int | None:
        """Record graded rows of the run ``worker_id`` holds in progress; a row already recorded is kept as it is (a
        resumed run never grades a row twice). How many were new; None (and nothing written) when the run is no
        longer this worker's to grade: canceled, deleted, or its lease taken over."""
        run = (
            await self.session.execute(
                select(EvalRun.project_id, EvalRun.eval_id)
                .where(EvalRun.id == run_id, EvalRun.lease_owner == worker_id, EvalRun.status == RunStatus.in_progress)
                .with_for_update()
            )
        ).one_or_none()
        if run is None:
            return None
        if not items:
            return 0
        now = utcnow()
        rows = [
            {
                "id": new_id("outputitem", separator="_"),
                "project_id": run.project_id,
                "eval_id": run.eval_id,
                "run_id": run_id,
                "datasource_item_id": item.datasource_item_id,
                "datasource_item": item.datasource_item,
                "results": item.results,
                "sample": item.sample,
                "status": item.status,
                "created_at": now,
            }
            for item in items
        ]
        insert = postgresql.insert if self._dialect() == "postgresql" else sqlite.insert
        stmt = (
            insert(EvalOutputItem)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["run_id", "datasource_item_id"])
            .returning(EvalOutputItem.id)
        )
        return len((await self.session.execute(stmt)).scalars().all())

    async def graded_item_ids(self, run_id: str) -> set[int]:
        """The rows of the run that have an output item already."""
        stmt = select(EvalOutputItem.datasource_item_id).where(EvalOutputItem.run_id == run_id)
        return set((await self.session.execute(stmt)).scalars().all())

    async def result_counts(self, run_id: str) -> dict[str, int]:
        """OpenAI's ``result_counts`` of the run's output items so far: one count per status, no row read."""
        stmt = (
            select(EvalOutputItem.status, func.count())
            .where(EvalOutputItem.run_id == run_id)
            .group_by(EvalOutputItem.status)
        )
        counts: dict[OutputItemStatus, int] = dict((await self.session.execute(stmt)).all())
        return {
            "total": sum(counts.values()),
            "errored": counts.get(OutputItemStatus.errored, 0),
            "failed": counts.get(OutputItemStatus.failed, 0),
            "passed": counts.get(OutputItemStatus.passed, 0),
        }

    async def tally(self, run_id: str, criteria: Sequence[str]) -> Tally:
        """The run's figures over its output items; ``criteria`` are the eval's criterion ids, in order (``results[i]``
        is criterion ``i``'s result; an errored row counts for no criterion)."""
        counts: Counter[OutputItemStatus] = Counter()
        passed, failed = [0] * len(criteria), [0] * len(criteria)
        usage = _Usage()
        stmt = select(EvalOutputItem.status, EvalOutputItem.results, EvalOutputItem.sample).where(
            EvalOutputItem.run_id == run_id
        )
        async for status, results, sample in await self.session.stream(stmt.execution_options(yield_per=500)):
            counts[status] += 1
            usage.add_row(sample, results)
            if status is OutputItemStatus.errored:
                continue
            for i, result in enumerate(results[: len(criteria)]):
                if result.get("passed"):
                    passed[i] += 1
                else:
                    failed[i] += 1
        return Tally(
            result_counts={
                "total": sum(counts.values()),
                "errored": counts[OutputItemStatus.errored],
                "failed": counts[OutputItemStatus.failed],
                "passed": counts[OutputItemStatus.passed],
            },
            per_testing_criteria_results=[
                {"testing_criteria": criterion, "passed": passed[i], "failed": failed[i]}
                for i, criterion in enumerate(criteria)
            ],
            per_model_usage=usage.rows(),
        )

    async def outcomes(self, run_id: str) -> list[tuple[int, str, list[bool], str, dict[str, Any]]]:
        """Each graded row of the run: (row id, status, each criterion's pass, the answer's text, the row's item),
        what a comparison reads."""
        stmt = (
            select(
                EvalOutputItem.datasource_item_id,
                EvalOutputItem.status,
                EvalOutputItem.results,
                EvalOutputItem.sample,
                EvalOutputItem.datasource_item,
            )
            .where(EvalOutputItem.run_id == run_id)
            .order_by(EvalOutputItem.datasource_item_id)
        )
        rows = []
        async for row_id, status, results, sample, item in await self.session.stream(
            stmt.execution_options(yield_per=500)
        ):
            output = (sample or {}).get("output") or [{}]
            text = str(output[0].get("content") or "") if isinstance(output[0], dict) else ""
            passed = [] if status is OutputItemStatus.errored else [bool(r.get("passed")) for r in results]
            rows.append((row_id, status.value, passed, text, item))
        return rows

    # --- the workers' view: leases across projects ---------------------------------------------------------------

    async def claim(self, worker_id: str, lease: timedelta, now: datetime | None = None) -> EvalRun | None:
        """Atomically lease the oldest runnable run to ``worker_id``: queued, or in progress under a lease that has
        expired (its worker died). Its status is left as it is: the service's ``start`` moves it.

        The candidate is picked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers don't queue on each
        other's rows; the compare-and-set UPDATE is what guarantees one winner everywhere.
        """
        now = now or utcnow()
        runnable = and_(
            EvalRun.status.in_([RunStatus.queued, RunStatus.in_progress]),
            or_(EvalRun.lease_owner.is_(None), EvalRun.lease_expires_at < now),
        )
        candidates = select(EvalRun.id).where(runnable).order_by(EvalRun.created_at, EvalRun.id).limit(1)
        if self._dialect() == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        run_id = (await self.session.execute(candidates)).scalar()
        if run_id is None:
            return None
        claimed = await self.session.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id, runnable)
            .values(lease_owner=worker_id, lease_expires_at=now + lease, attempts=EvalRun.attempts + 1)
            .returning(EvalRun.id)
        )
        if claimed.scalar() is None:
            return None
        return await self.session.get(EvalRun, run_id, populate_existing=True)

    async def renew(self, run_id: str, worker_id: str, lease: timedelta) -> RunStatus | None:
        """Extend our lease; the run's status, or None when the lease is no longer ours (or the run is gone)."""
        result = await self.session.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id, EvalRun.lease_owner == worker_id)
            .values(lease_expires_at=utcnow() + lease)
            .returning(EvalRun.status)
        )
        return result.scalar()

    async def held(self, run_id: str, worker_id: str) -> EvalRun | None:
        stmt = select(EvalRun).where(EvalRun.id == run_id, EvalRun.lease_owner == worker_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def release(self, run_id: str, worker_id: str) -> None:
        await self.session.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id, EvalRun.lease_owner == worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )

    def _dialect(self) -> str:
        bind = self.session.bind
        return bind.dialect.name if bind is not None else ""
