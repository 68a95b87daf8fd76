"""Fine-tuning jobs as leased background work: the worker's loop for jobs (see ``app.worker``).

The task claims a job, keeps its lease while the provider trains, and hands every report and the outcome to the
fine-tuning service, which alone changes the job's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.datasets.prompt_format import detect_prompt_format
from app.db import commit
from app.files.storage import BlobStore
from app.fine_tuning.evaluation import AfterTraining
from app.fine_tuning.models import FineTuningJob
from app.fine_tuning.run_context import RunContext
from app.fine_tuning.service import JobFailure, RunImpossible, job_service
from app.providers.base import JobRun, RunOutcome, StopReason
from app.providers.registry import ProviderRegistry
from app.worker.lease import Lease

log = logging.getLogger(__name__)

# (provider, base model, the fine-tuned model's artifact and id, or None and None): see TrainingTask.__init__.
Warm = Callable[[str, str, str | None, str | None], None]


class TrainingTask:
    name = "fine_tuning"

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        providers: ProviderRegistry,
        *,
        warm: Warm | None = None,
    ) -> None:
        """``warm`` hears of the models this task's jobs are about to make worth serving: a job's base model as
        it starts, the fine-tuned model once it is committed (the embedded worker warms the local engine with
        them, so the new model's first answer does not wait seconds for weights to load)."""
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.store = store
        self.providers = providers
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.warm = warm
        self.evaluate = AfterTraining.from_settings(settings)

    async def run_next(self, worker_id: str) -> bool:
        """Settle the jobs whose files were being validated, then run at most one job."""
        async with self.sessionmaker() as session:
            for job in await job_service.validating(session):
                await job_service.settle_validation(session, job, self.providers)
            await commit(session)
        async with self.sessionmaker() as session:
            claimed = await job_service.claim(session, worker_id, self.providers.names(), self.lease)
            await commit(session)
        if claimed is None:
            return False
        await self.run(claimed, worker_id)
        return True

    async def run(self, job: FineTuningJob, worker_id: str) -> None:
        provider = self.providers.get(job.provider)
        work_dir = self.settings.jobs_dir / job.id
        async with self.sessionmaker() as session:
            held = await job_service.held(session, job.id, worker_id)
            if held is None:
                return
            try:
                if provider is None:
                    why = f"No worker here serves the provider '{held.provider}'."
                    raise RunImpossible(JobFailure("training_failed", why))
                if held.attempts > self.settings.worker_max_attempts:
                    why = f"Gave up after {held.attempts - 1} attempts: the training process kept dying."
                    raise RunImpossible(JobFailure("training_failed", why))
                run = await job_service.prepare_run(session, held, self.store, work_dir)
            except RunImpossible as impossible:
                await job_service.fail(session, held, impossible.failure, worker_id=worker_id)
                await job_service.release(session, held, worker_id)
                await commit(session)
                return
            record = await job_service.start(session, held)
            await commit(session)
        assert provider is not None  # refused above
        self._warm(job.provider, job.base_model, None, None)
        ctx = RunContext(self.sessionmaker, job, worker_id, self.lease, record)
        lease = Lease(
            ctx.renew,
            duration=self.lease,
            interval=self.settings.worker_heartbeat_seconds,
            on_lost=lambda: ctx.request_stop(StopReason.lease_lost),
            name=job.id,
        )
        keeping = asyncio.create_task(lease.keep())
        outcome: RunOutcome | None = None  # None: this worker is shutting down; the job resumes elsewhere
        try:
            # Under the lease: reading a large training file may take longer than the lease lasts.
            record.prompt_format = await self._prompt_format(run)
            outcome = await provider.run(run, ctx)
        except asyncio.CancelledError:
            ctx.request_stop(StopReason.shutdown)
            raise
        except Exception as exc:
            # The provider's own failure (its process died, its upstream refused): the job fails, saying why.
            log.exception("job %s: provider %s failed", job.id, job.provider)
            outcome = RunOutcome(status="failed", error_code="training_failed", error_message=f"Training failed: {exc}")
        finally:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping
            await asyncio.shield(self.finish(job, outcome, worker_id, ctx, work_dir))

    async def finish(
        self, job: FineTuningJob, outcome: RunOutcome | None, worker_id: str, ctx: RunContext, work_dir: Path
    ) -> None:
        """Hand the outcome to the service, in one transaction, and give the lease back."""
        model = None
        async with self.sessionmaker() as session:
            held = await job_service.held(session, job.id, worker_id)
            if held is None:
                return  # another worker has it now: nothing of ours to record
            if outcome is not None and outcome.status != "interrupted":
                model = await job_service.record_outcome(
                    session,
                    held,
                    outcome,
                    worker_id=worker_id,
                    record=ctx.record,
                    store=self.store,
                    work_dir=work_dir,
                    evaluate=self.evaluate,
                )
            await job_service.release(session, held, worker_id)
            await commit(session)
        if model is not None:
            self._warm(model.provider, model.base_model, model.artifact, model.id)

    def _warm(self, provider: str, base_model: str, artifact: str | None, model: str | None) -> None:
        if self.warm is None:
            return
        try:
            self.warm(provider, base_model, artifact, model)
        except Exception:  # only an optimisation: the job runs (or is done) either way
            log.exception("warming %s failed", base_model)

    @staticmethod
    async def _prompt_format(run: JobRun) -> dict[str, Any] | None:
        """The separator/stop of prompt-completion training data, stored on every model the run creates."""
        if run.method != "supervised":
            return None  # preference data: chat messages, no prompt format
        try:
            fmt = await asyncio.to_thread(detect_prompt_format, run.training_file)
        except Exception:  # a nicety for inference: never worth failing the training over
            log.exception("job %s: detecting the prompt format of %s failed", run.job_id, run.training_file_id)
            return None
        return fmt.model_dump() if fmt else None
