"""Eval runs as leased background work: the worker's loop for runs (see ``app.worker``).

The task claims a run, keeps its lease, samples and grades its rows many at a time (the local engine batches
concurrent requests, so a run fans out over its batching rather than waiting on one call after another), and records
the graded rows in batches. A row is recorded once (``(run, row)`` is unique): a run resumed after its worker died
grades only the rows it had not recorded. How the run ends is the evals service's to record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.config import Settings
from app.db import commit
from app.errors import GatewayError
from app.evals import graders
from app.evals.items import Row, data_source_of, load_items
from app.evals.judge import GatewayJudge
from app.evals.models import Eval, EvalRun, OutputItemStatus, RunStatus
from app.evals.repository import GradedItem
from app.evals.sampling import Sampled, Sampler, stored_sample
from app.evals.schemas import CompletionsRunDataSource
from app.evals.service import eval_service
from app.files.storage import BlobStore
from app.inference.gateway import InferenceGateway
from app.worker.lease import Lease, kept

log = logging.getLogger(__name__)

FLUSH_ROWS = 32  # graded rows written per transaction while a run goes on


class EvalRunTask:
    name = "evals"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        gateway: InferenceGateway,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        concurrency: int,
        max_attempts: int,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.gateway = gateway
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self.concurrency = concurrency
        self.max_attempts = max_attempts

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        gateway: InferenceGateway,
    ) -> EvalRunTask:
        return cls(
            sessionmaker,
            store,
            gateway,
            lease_seconds=settings.worker_lease_seconds,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            concurrency=settings.eval_concurrency,
            max_attempts=settings.worker_max_attempts,
        )

    async def run_next(self, worker_id: str) -> bool:
        async with self.sessionmaker() as session:
            run = await eval_service.claim(session, worker_id, self.lease)
            await commit(session)
        if run is None:
            return False
        execution = _Execution(self, run, worker_id)
        lease = Lease(
            execution.renew,
            duration=self.lease,
            interval=self.heartbeat_seconds,
            on_lost=execution.stop,
            name=run.id,
        )
        try:
            async with kept(lease):
                await execution.run()
        finally:
            await asyncio.shield(execution.release())
        return True


class _Execution:
    """One worker's run of one eval run."""

    def __init__(self, task: EvalRunTask, run: EvalRun, worker_id: str) -> None:
        self.task = task
        self.run_id = run.id
        self.project_id = run.project_id
        self.eval_id = run.eval_id
        self.worker_id = worker_id
        # The run samples and judges as the key that created it (its usage is that key's), without its rate
        # limits: a run's calls are queued work, paced by the run's own concurrency.
        self.principal = Principal(project_id=run.project_id, key_id=run.created_by or run.id, role=Role.member)
        self.stopped = False
        self._pending: list[GradedItem] = []

    def stop(self) -> None:
        self.stopped = True

    async def renew(self) -> bool:
        async with self.task.sessionmaker() as session:
            status = await eval_service.renew(session, self.run_id, self.worker_id, self.task.lease)
            await commit(session)
        if status is not RunStatus.in_progress and status is not RunStatus.queued:
            self.stop()  # canceled (or deleted): stop sampling; what is graded stays
        return status is not None

    async def release(self) -> None:
        async with self.task.sessionmaker() as session:
            await eval_service.release(session, self.run_id, self.worker_id)
            await commit(session)

    async def run(self) -> None:
        async with self.task.sessionmaker() as session:
            run = await eval_service.held(session, self.run_id, self.worker_id)
            if run is None or not await eval_service.start(session, run, self.worker_id):
                await commit(session)
                return
            if run.attempts > self.task.max_attempts:
                why = f"Gave up after {run.attempts - 1} attempts: the run's worker kept failing."
                await eval_service.fail(session, run, self.worker_id, code="run_failed", message=why)
                await commit(session)
                return
            evaluation = await eval_service.get(session, self.project_id, self.eval_id)
            source = data_source_of(run)
            try:
                rows = await load_items(session, self.task.store, evaluation, source)
            except GatewayError as exc:  # its file was deleted since the run was accepted
                code = exc.code or "invalid_file"
                await eval_service.fail(session, run, self.worker_id, code=code, message=exc.message)
                await commit(session)
                return
            done = await eval_service.graded_item_ids(session, run.id)
            await commit(session)
        log.info("eval run %s: %d rows to grade, %d graded before", self.run_id, len(rows) - len(done), len(done))
        criteria = _criteria(evaluation)
        sampler = (
            Sampler(self.task.gateway, self.principal, source) if isinstance(source, CompletionsRunDataSource) else None
        )
        judge = GatewayJudge(self.task.gateway, self.principal)
        await self._grade_all([row for row in rows if row.id not in done], criteria, sampler, judge)
        if self.stopped:
            return
        async with self.task.sessionmaker() as session:
            run = await eval_service.held(session, self.run_id, self.worker_id)
            if run is not None:
                await eval_service.complete(session, run, self.worker_id)
            await commit(session)

    async def _grade_all(
        self,
        rows: Sequence[Row],
        criteria: Sequence[graders.Grader],
        sampler: Sampler | None,
        judge: GatewayJudge,
    ) -> None:
        """Grade ``rows`` with at most ``concurrency`` in flight, writing them ``FLUSH_ROWS`` at a time."""
        slots = asyncio.Semaphore(self.task.concurrency)

        async def one(row: Row) -> None:
            try:
                sampled = await sampler.sample(row) if sampler is not None else stored_sample(row)
                self._pending.append(await _graded(row, sampled, criteria, judge))
            finally:
                slots.release()

        async with asyncio.TaskGroup() as group:
            for row in rows:
                await slots.acquire()
                if self.stopped:
                    slots.release()
                    break
                group.create_task(one(row))
                if len(self._pending) >= FLUSH_ROWS:
                    await self._flush()
        await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self.stopped:
            return
        batch, self._pending = self._pending, []
        async with self.task.sessionmaker() as session:
            recorded = await eval_service.record_items(session, self.run_id, self.worker_id, batch)
            await commit(session)
        if recorded is None:
            self.stop()  # canceled, deleted or taken over: nothing more of ours to write


def _criteria(evaluation: Eval) -> list[graders.Grader]:
    return [graders.parse_grader(spec, f"testing_criteria[{i}]") for i, spec in enumerate(evaluation.testing_criteria)]


async def _graded(row: Row, sampled: Sampled, criteria: Sequence[graders.Grader], judge: GatewayJudge) -> GradedItem:
    if sampled.graded is None:
        return GradedItem(row.id, row.item, [], sampled.sample, OutputItemStatus.errored)
    outcomes = await asyncio.gather(*(graders.grade(g, row.item, sampled.graded, judge) for g in criteria))
    results = []
    for outcome in outcomes:
        result = outcome.as_dict()
        if outcome.usage:  # the judges' tokens, kept with the row so a resumed run's usage still adds up
            result.setdefault("metadata", {})["usage"] = {m: u.as_dict() for m, u in outcome.usage.items()}
        results.append(result)
    if any(o.errored for o in outcomes):
        status = OutputItemStatus.errored
    elif all(o.passed for o in outcomes):
        status = OutputItemStatus.passed
    else:
        status = OutputItemStatus.failed
    return GradedItem(row.id, row.item, results, sampled.sample, status)
