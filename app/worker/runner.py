"""The worker loop: move validated jobs to the queue, claim one under a lease, run it, record how it ended.

How a job ends is the fine-tuning service's to record (``job_service.succeed``/``fail``): the worker reports, the
service's compare-and-set decides, so a job cancelled or taken over meanwhile is never finished twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.datasets.prompt_format import detect_prompt_format
from app.db import commit
from app.files.models import FilePurpose, FileStatus, StoredFile
from app.files.repository import FileRepository
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.fine_tuning.models import EventLevel, FineTuningJob, JobStatus
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.service import JobFailure, job_service
from app.providers.base import Classification, JobRun, RunOutcome, StopReason
from app.providers.registry import ProviderRegistry
from app.registry.models import FineTunedModel
from app.registry.repository import ModelRepository
from app.registry.service import fine_tuned_name, registry_service
from app.worker.context import WorkerJobContext

RESULTS_CSV = "results.csv"  # in a run's work_dir: a header row, then one row per step

log = logging.getLogger(__name__)

# (provider, base model, the fine-tuned model's artifact or None): see Worker.__init__.
Warm = Callable[[str, str, str | None], None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        providers: ProviderRegistry,
        *,
        worker_id: str | None = None,
        wakeup: asyncio.Event | None = None,
        warm: Warm | None = None,
    ) -> None:
        """``warm`` hears of the models this worker's jobs are about to make worth serving: a job's base model as
        it starts, the fine-tuned model once it is committed (the embedded worker warms the local engine with
        them, so the new model's first answer does not wait seconds for weights to load)."""
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.store = store
        self.providers = providers
        self.id = worker_id or new_worker_id()
        self.wakeup = wakeup or asyncio.Event()
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.current: WorkerJobContext | None = None
        self.warm = warm

    async def run_forever(self) -> None:
        log.info("worker %s started (providers: %s)", self.id, ", ".join(self.providers.names()))
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: iteration failed", self.id)
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), self.settings.worker_poll_seconds)
                self.wakeup.clear()

    async def run_once(self) -> bool:
        """One round: promote validated jobs, then run at most one job. Whether there was a job."""
        await self.promote_validated()
        async with self.sessionmaker() as session:
            job = await JobRepository(session).claim(self.id, self.providers.names(), self.lease)
            await commit(session)
        if job is None:
            return False
        await self.run_job(job)
        return True

    async def promote_validated(self) -> None:
        """``validating_files`` → ``queued`` once every file is processed, → ``failed`` if one is not usable."""
        async with self.sessionmaker() as session:
            repo = JobRepository(session)
            for job in await repo.validating():
                files = [(job.training_file, "training_file"), (job.validation_file, "validation_file")]
                provider = self.providers.get(job.provider)
                error: JobFailure | None = None
                waiting = False
                for file_id, param in files:
                    if file_id is None:
                        continue
                    record = await FileRepository(session).get(job.project_id, file_id)
                    if record is None:
                        error = JobFailure(
                            "invalid_file", f"File {file_id} was deleted before training started.", param
                        )
                    elif record.status is FileStatus.error:
                        error = JobFailure(
                            "invalid_file", f"File {file_id} failed validation: {record.status_details}", param
                        )
                    elif record.status is FileStatus.uploaded:
                        waiting = True
                    elif provider is not None:
                        try:
                            job_service.check_format(record, job.method["type"], provider, param)
                        except Exception as exc:
                            error = JobFailure("invalid_file_format", str(exc), param)
                    if error:
                        break
                # Both are compare-and-sets: a job cancelled or paused since the read above stays so.
                if error:
                    await job_service.fail(session, job, error)
                elif not waiting:
                    await job_service.queue_validated(session, job)
            await commit(session)

    async def _job_run(self, session: AsyncSession, job: FineTuningJob) -> JobRun:
        async def file_of(file_id: str | None) -> StoredFile | None:
            if file_id is None:
                return None
            record = await FileRepository(session).get(job.project_id, file_id)
            if record is None:
                raise FileNotFoundError(f"File {file_id} was deleted before training finished.")
            return record

        training = await file_of(job.training_file)
        validation = await file_of(job.validation_file)
        assert training is not None
        parent_artifact = None
        if job.parent_model:
            parent = await ModelRepository(session).get(job.project_id, job.parent_model)
            if parent is None:
                raise FileNotFoundError(f"The model {job.parent_model} was deleted before training finished.")
            parent_artifact = parent.artifact
        classification = Classification(**job.classification) if job.classification else Classification()
        return JobRun(
            job_id=job.id,
            project_id=job.project_id,
            model=job.model,
            base_model=job.base_model,
            parent_artifact=parent_artifact,
            training_file=self.store.path(training.storage_key),
            training_file_id=training.id,
            training_filename=training.filename,
            validation_file=self.store.path(validation.storage_key) if validation else None,
            validation_file_id=validation.id if validation else None,
            validation_filename=validation.filename if validation else None,
            method=job.method["type"],
            hyperparameters=dict(job.hyperparameters),
            seed=job.seed,
            suffix=job.suffix,
            work_dir=self.settings.jobs_dir / job.id,
            classification=classification,
            provider_state=job.provider_state,
        )

    async def run_job(self, job: FineTuningJob) -> None:
        provider = self.providers.get(job.provider)
        async with self.sessionmaker() as session:
            repo = JobRepository(session)
            held = await repo.held(job.id, self.id)
            if held is None:
                return
            if provider is None or held.attempts > self.settings.worker_max_attempts:
                why = (
                    f"Gave up after {held.attempts - 1} attempts: the training process kept dying."
                    if provider is not None
                    else f"No worker here serves the provider '{held.provider}'."
                )
                await job_service.fail(session, held, JobFailure("training_failed", why), worker_id=self.id)
                await repo.release(held.id, self.id)
                await commit(session)
                return
            self._warm(held.provider, held.base_model, None)
            try:
                run = await self._job_run(session, held)
            except FileNotFoundError as exc:
                failure = JobFailure("invalid_file", str(exc), "training_file")
                await job_service.fail(session, held, failure, worker_id=self.id)
                await repo.release(held.id, self.id)
                await commit(session)
                return
            project_name = await registry_service.project_name(session, held.project_id)
            resumed = held.attempts > 1 or held.provider_state is not None
            await repo.append_event(held, "Fine-tuning job resumed" if resumed else "Fine-tuning job started")
            await commit(session)
        model_name = fine_tuned_name(job.base_model, project_name, job.suffix, job.id)
        ctx = WorkerJobContext(self.sessionmaker, job, self.id, self.lease, model_name)
        self.current = ctx
        heartbeat = asyncio.create_task(ctx.heartbeat_forever(self.settings.worker_heartbeat_seconds))
        outcome: RunOutcome | None = None  # None: this worker is shutting down; the job resumes elsewhere
        try:
            # Under the heartbeat: reading a large training file may take longer than the lease.
            ctx.prompt_format = await self._prompt_format(run)
            outcome = await provider.run(run, ctx)
        except asyncio.CancelledError:
            ctx.request_stop(StopReason.shutdown)
            raise
        except Exception as exc:
            log.exception("job %s: provider %s failed", job.id, job.provider)
            outcome = RunOutcome(status="failed", error_code="training_failed", error_message=f"Training failed: {exc}")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self.current = None
            await asyncio.shield(self.finish(job, outcome, ctx))

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

    async def finish(self, job: FineTuningJob, outcome: RunOutcome | None, ctx: WorkerJobContext) -> None:
        """Record how the run ended, in one transaction, and give the lease back."""
        async with self.sessionmaker() as session:
            repo = JobRepository(session)
            held = await repo.held(job.id, self.id)
            if held is None:
                return  # another worker has it now: nothing of ours to record
            if outcome is None or outcome.status == "interrupted":
                await repo.release(held.id, self.id)
                await commit(session)
                return
            if outcome.hyperparameters:
                held.hyperparameters = {**held.hyperparameters, **outcome.hyperparameters}
            finished = False
            model: FineTunedModel | None = None
            if outcome.status == "succeeded":
                model = await self._succeed(session, held, outcome, ctx)
                finished = model is not None
            elif outcome.status == "failed":
                failure = JobFailure(
                    outcome.error_code or "training_failed",
                    outcome.error_message or "Training failed.",
                    outcome.error_param,
                )
                finished = await job_service.fail(session, held, failure, worker_id=self.id)
            if not finished:
                # The API paused or cancelled the job under this run: its own event (and webhook) told that already.
                if outcome.status == "paused" or held.status is JobStatus.paused:
                    await repo.append_event(held, "Training stopped; progress is saved and resumes from there")
                elif held.status is JobStatus.cancelled:
                    await repo.append_event(held, "Training process stopped", level=EventLevel.warn)
                    # The steps it ran are still worth reading: keep their results, as a finished job's.
                    await self._attach_results(session, held, outcome.results_csv or self._work_results(held))
            await repo.release(held.id, self.id)
            await commit(session)
        if model is not None:
            self._warm(model.provider, model.base_model, model.artifact)

    def _warm(self, provider: str, base_model: str, artifact: str | None) -> None:
        if self.warm is None:
            return
        try:
            self.warm(provider, base_model, artifact)
        except Exception:  # only an optimisation: the job runs (or is done) either way
            log.exception("worker %s: warming %s failed", self.id, base_model)

    async def _succeed(
        self, session: AsyncSession, job: FineTuningJob, outcome: RunOutcome, ctx: WorkerJobContext
    ) -> FineTunedModel | None:
        """Complete the job with this run's model and results, if it is still this worker's running job."""
        done = await job_service.succeed(
            session, job, worker_id=self.id, fine_tuned_model=ctx.model_name, trained_tokens=outcome.trained_tokens
        )
        if not done:
            return None
        await self._attach_results(session, job, outcome.results_csv)
        model = ctx.model_row(job, outcome.artifact or "")
        await ModelRepository(session).add(model)
        return model

    def _work_results(self, job: FineTuningJob) -> Path:
        """Where a run keeps its results.csv while it trains (a stopped run reports no outcome file)."""
        return self.settings.jobs_dir / job.id / RESULTS_CSV

    async def _attach_results(self, session: AsyncSession, job: FineTuningJob, results_csv: Path | None) -> None:
        """Store a run's results.csv as the job's result file (a copy: the run's folder may be reused)."""
        if results_csv is None:
            return
        temp = self.store.temp_path()
        if not await asyncio.to_thread(_copy_if_rows, results_csv, temp):
            return  # no run, or stopped before its first step: a header, no results
        size, sha256 = digest(temp)
        results = await file_service.store_blob(
            session,
            self.store,
            job.project_id,
            temp_path=temp,
            filename=RESULTS_CSV,
            purpose=FilePurpose.fine_tune_results,
            size=size,
            sha256=sha256,
        )
        job.result_files = [results.id]


def _copy_if_rows(results_csv: Path, target: Path) -> bool:
    """Copy a results.csv that holds at least one step's row to ``target``."""
    if not results_csv.is_file():
        return False
    with results_csv.open("rb") as f:
        if sum(1 for line in f if line.strip()) < 2:
            return False
    shutil.copyfile(results_csv, target)
    return True
