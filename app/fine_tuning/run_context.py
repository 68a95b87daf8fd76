"""A running job's context: what its provider reports goes to the fine-tuning service, stop requests come back.

Every write happens only while this worker still holds the job's lease; a write that finds the lease gone marks the
run as stopped (``lease_lost``), so a job that moved to another worker is never written to by two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import commit
from app.fine_tuning.models import FineTuningJob, JobStatus
from app.fine_tuning.service import RunRecord, job_service
from app.providers.base import CheckpointReport, StepMetrics, StopReason

_STOP_OF_STATUS = {JobStatus.paused: StopReason.pause, JobStatus.cancelled: StopReason.cancel}


class RunContext:
    """The ``JobContext`` a provider gets (see ``app.providers.base``)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        job: FineTuningJob,
        worker_id: str,
        lease: timedelta,
        record: RunRecord,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.job_id = job.id
        self.worker_id = worker_id
        self.lease = lease
        self.record = record
        self._stop: StopReason | None = None

    def stop_requested(self) -> StopReason | None:
        return self._stop

    def request_stop(self, reason: StopReason) -> None:
        if self._stop is None:
            self._stop = reason

    async def renew(self) -> bool:
        """Extend the lease (see ``app.worker.lease``); a pause or a cancel becomes a stop request."""
        async with self.sessionmaker() as session:
            status = await job_service.renew(session, self.job_id, self.worker_id, self.lease)
            await commit(session)
        if status in _STOP_OF_STATUS:
            self.request_stop(_STOP_OF_STATUS[status])
        return status is not None

    async def _write(self, apply: Callable[[AsyncSession, FineTuningJob], Awaitable[None]]) -> None:
        async with self.sessionmaker() as session:
            job = await job_service.held(session, self.job_id, self.worker_id)
            if job is None:
                self.request_stop(StopReason.lease_lost)
                return
            await apply(session, job)
            await commit(session)

    async def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        async def apply(session: AsyncSession, job: FineTuningJob) -> None:
            await job_service.record_event(session, job, message, level=level, data=data)

        await self._write(apply)

    async def metrics(self, metrics: StepMetrics) -> None:
        async def apply(session: AsyncSession, job: FineTuningJob) -> None:
            await job_service.record_metrics(session, job, metrics)

        await self._write(apply)

    async def checkpoint(self, checkpoint: CheckpointReport) -> None:
        async def apply(session: AsyncSession, job: FineTuningJob) -> None:
            await job_service.record_checkpoint(session, job, checkpoint, self.record)

        await self._write(apply)

    async def save_state(self, state: dict[str, Any]) -> None:
        async def apply(session: AsyncSession, job: FineTuningJob) -> None:
            await job_service.record_state(session, job, state)

        await self._write(apply)

    async def resolved_hyperparameters(self, values: dict[str, Any]) -> None:
        async def apply(session: AsyncSession, job: FineTuningJob) -> None:
            await job_service.record_hyperparameters(session, job, values)

        await self._write(apply)
