"""The worker's side of a running job: what a provider reports lands in the database, stop requests come back.

Every write happens only while this worker still holds the job's lease; a write that finds the lease gone marks
the run as stopped (``lease_lost``), so a job that moved to another worker is never written to by two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import commit
from app.fine_tuning.models import EventLevel, EventType, FineTuningJob, JobCheckpoint, JobStatus
from app.fine_tuning.repository import JobRepository
from app.kit.ids import new_id
from app.kit.time import utcnow
from app.providers.base import CheckpointReport, StepMetrics, StopReason
from app.registry.models import FineTunedModel
from app.registry.repository import ModelRepository

log = logging.getLogger(__name__)

_STOP_OF_STATUS = {JobStatus.paused: StopReason.pause, JobStatus.cancelled: StopReason.cancel}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class WorkerJobContext:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        job: FineTuningJob,
        worker_id: str,
        lease: timedelta,
        model_name: str,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.job_id = job.id
        self.project_id = job.project_id
        self.base_model = job.base_model
        self.provider = job.provider
        self.worker_id = worker_id
        self.lease = lease
        self.model_name = model_name
        # Stored on every model the run creates, checkpoints included (see app.datasets.prompt_format).
        self.prompt_format: dict[str, Any] | None = None
        self._stop: StopReason | None = None
        self._renewed_at = time.monotonic()

    def stop_requested(self) -> StopReason | None:
        return self._stop

    def request_stop(self, reason: StopReason) -> None:
        if self._stop is None:
            self._stop = reason

    async def _write(self, apply: Callable[[JobRepository, FineTuningJob], Awaitable[None]]) -> None:
        async with self.sessionmaker() as session:
            repo = JobRepository(session)
            job = await repo.held(self.job_id, self.worker_id)
            if job is None:
                self.request_stop(StopReason.lease_lost)
                return
            await apply(repo, job)
            await commit(session)

    async def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        async def apply(repo: JobRepository, job: FineTuningJob) -> None:
            await repo.append_event(job, message, level=EventLevel(level), data=data)

        await self._write(apply)

    async def metrics(self, metrics: StepMetrics) -> None:
        total = f"/{metrics.total_steps}" if metrics.total_steps else ""
        message = f"Step {metrics.step}{total}: training loss={_fmt(metrics.train_loss)}"
        if metrics.valid_loss is not None:
            message += f", validation loss={_fmt(metrics.valid_loss)}"

        async def apply(repo: JobRepository, job: FineTuningJob) -> None:
            await repo.append_event(job, message, type_=EventType.metrics, data=metrics.data())
            if metrics.estimated_finish_seconds is not None and job.status is JobStatus.running:
                # To the nearest second: the API gives whole Unix seconds, and truncating would make it early.
                finish = utcnow() + timedelta(seconds=metrics.estimated_finish_seconds + 0.5)
                job.estimated_finish = finish.replace(microsecond=0)
            if metrics.elapsed_tokens is not None:
                job.trained_tokens = metrics.elapsed_tokens

        await self._write(apply)

    def model_row(self, job: FineTuningJob, artifact: str, checkpoint_step: int | None = None) -> FineTunedModel:
        """The registry row of the job's model, or of one of its checkpoints, with the data's prompt format."""
        name = self.model_name if checkpoint_step is None else f"{self.model_name}:ckpt-step-{checkpoint_step}"
        return FineTunedModel(
            id=name,
            project_id=job.project_id,
            job_id=job.id,
            base_model=job.base_model,
            parent_model=job.parent_model,
            provider=job.provider,
            checkpoint_step=checkpoint_step,
            artifact=artifact,
            prompt_format=self.prompt_format,
        )

    async def checkpoint(self, checkpoint: CheckpointReport) -> None:
        async def apply(repo: JobRepository, job: FineTuningJob) -> None:
            if await repo.checkpoint_at(job.id, checkpoint.step) is not None:
                return  # reported again by a resumed run
            model = self.model_row(job, checkpoint.artifact, checkpoint.step)
            await repo.add_checkpoint(
                JobCheckpoint(
                    id=new_id("ftckpt"),
                    project_id=job.project_id,
                    job_id=job.id,
                    step_number=checkpoint.step,
                    metrics={"step": float(checkpoint.step), **checkpoint.metrics},
                    fine_tuned_model_checkpoint=model.id,
                )
            )
            await ModelRepository(repo.session).add(model)
            await repo.append_event(job, f"Checkpoint created at step {checkpoint.step}")

        await self._write(apply)

    async def save_state(self, state: dict[str, Any]) -> None:
        async def apply(repo: JobRepository, job: FineTuningJob) -> None:
            job.provider_state = state

        await self._write(apply)

    async def resolved_hyperparameters(self, values: dict[str, Any]) -> None:
        async def apply(repo: JobRepository, job: FineTuningJob) -> None:
            job.hyperparameters = {**job.hyperparameters, **values}

        await self._write(apply)

    async def heartbeat_forever(self, interval: float) -> None:
        """Renew the lease; turn a pause, a cancel or a lost lease into a stop request."""
        while self._stop is None:
            try:
                async with self.sessionmaker() as session:
                    status = await JobRepository(session).renew(self.job_id, self.worker_id, self.lease)
                    await commit(session)
                self._renewed_at = time.monotonic()
                if status is None:
                    self.request_stop(StopReason.lease_lost)
                elif status in _STOP_OF_STATUS:
                    self.request_stop(_STOP_OF_STATUS[status])
            except Exception as exc:
                log.warning("heartbeat for %s failed: %s", self.job_id, exc)
                # Fencing: past our own lease we must assume another worker has the job.
                if time.monotonic() - self._renewed_at > self.lease.total_seconds() - interval:
                    self.request_stop(StopReason.lease_lost)
            await asyncio.sleep(interval)
