"""The jobs' logic: create (with every check a job needs before it may queue), list, and the state machine.

Every status change, the API's (cancel, pause, resume) and the worker's (queued, started, succeeded, failed), is made
here, as a compare-and-set on the job row: the outcome of a job is recorded, and its webhooks queued, exactly once.
What a run leaves behind (events, metrics, checkpoints and their registry models, results.csv) is written here too;
the worker's task (``app.fine_tuning.tasks``) only claims, runs and reports.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import GatewayError, InvalidRequest, NotFound
from app.files.models import FilePurpose, FileStatus, StoredFile
from app.files.repository import FileRepository
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.fine_tuning import evaluation
from app.fine_tuning.evaluation import AfterTraining
from app.fine_tuning.events import job_finished
from app.fine_tuning.models import ACTIVE, EventLevel, EventType, FineTuningJob, JobCheckpoint, JobEvent, JobStatus
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.schemas import CreateJobRequest, Hyperparameters
from app.kit.ids import new_id
from app.kit.pagination import Page
from app.kit.time import utcnow
from app.providers.base import (
    CheckpointReport,
    Classification,
    JobRun,
    RunOutcome,
    StepMetrics,
    TrainingProvider,
)
from app.providers.registry import ProviderRegistry
from app.registry.models import FineTunedModel
from app.registry.repository import ModelRepository
from app.registry.service import fine_tuned_name, registry_service, slugify

RESULTS_CSV = "results.csv"  # in a run's work_dir: a header row, then one row per step

FORMATS_OF_METHOD = {"supervised": {"chat", "prompt_completion"}, "dpo": {"preference"}}


def _method_and_hyperparameters(body: CreateJobRequest) -> tuple[str, dict[str, Any]]:
    method = body.method.type if body.method else "supervised"
    if method == "reinforcement":
        raise InvalidRequest("Reinforcement fine-tuning is not supported by ftgw.", param="method.type")
    section = getattr(body.method, method, None) if body.method else None
    from_method = section.hyperparameters if section and section.hyperparameters else None
    legacy = body.hyperparameters
    if from_method is not None and legacy is not None and legacy != Hyperparameters():
        raise InvalidRequest(
            "Give hyperparameters either in method or at the top level (deprecated), not both.",
            param="hyperparameters",
        )
    chosen = from_method or legacy or Hyperparameters()
    values = chosen.model_dump()
    if method == "dpo":
        values.setdefault("beta", "auto")
    return method, values


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed, as its ``error`` object reads: OpenAI's code, message and offending param."""

    code: str
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "param": self.param}


class RunImpossible(Exception):
    """A claimed job cannot run (a file or its parent model is gone, no provider serves it): it fails with this."""

    def __init__(self, failure: JobFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class RunRecord:
    """What a running job's reports are written with: its fine-tuned model's name and the data's prompt format,
    stored on every model the run creates (see app.datasets.prompt_format)."""

    model_name: str
    prompt_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobTimeline:
    """A job's events as its page shows them (see :meth:`JobService.timeline`)."""

    metrics: list[dict[str, Any]]  # each metrics event's data, oldest first
    messages: list[JobEvent]  # the latest other events, newest first
    last_event_id: str | None  # where a live stream of the job's events picks up


def step_progress(data: Mapping[str, Any]) -> float | None:
    """Steps done / total steps (0 to 1) from a metrics event's data; None when it names no total."""
    step, total = data.get("step"), data.get("total_steps")
    if isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
        return min(1.0, step / total)
    return None


class JobService:
    async def _usable_file(
        self, session: AsyncSession, project_id: str, file_id: str, param: str, method: str, provider: TrainingProvider
    ) -> StoredFile:
        try:
            record = await file_service.get(session, project_id, file_id)
        except NotFound:
            raise InvalidRequest(
                f"Invalid file id '{file_id}': no such file.", param=param, code="invalid_file"
            ) from None
        if record.purpose is not FilePurpose.fine_tune:
            raise InvalidRequest(
                f"File {file_id} has purpose '{record.purpose.value}'; fine-tuning needs purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )
        if record.status is FileStatus.error:
            raise InvalidRequest(
                f"File {file_id} failed validation and cannot be used: {record.status_details}",
                param=param,
                code="invalid_file",
            )
        if record.status is FileStatus.processed:
            self.check_format(record, method, provider, param)
        return record

    @staticmethod
    def check_format(record: StoredFile, method: str, provider: TrainingProvider, param: str) -> None:
        """A processed file's format must be one the method trains on, and the provider takes."""
        fmt = (record.validation or {}).get("format")
        if fmt not in FORMATS_OF_METHOD[method] or not provider.supports(method, fmt):
            wanted = " or ".join(sorted(FORMATS_OF_METHOD[method]))
            raise InvalidRequest(
                f"File {record.id} is in {fmt or 'an unknown'} format; {method} fine-tuning of this model needs "
                f"{wanted} data.",
                param=param,
                code="invalid_file_format",
            )

    async def create(
        self, session: AsyncSession, providers: ProviderRegistry, project_id: str, body: CreateJobRequest
    ) -> FineTuningJob:
        trainable = await registry_service.resolve_trainable(session, providers, project_id, body.model)
        method, hyperparameters = _method_and_hyperparameters(body)
        training = await self._usable_file(
            session, project_id, body.training_file, "training_file", method, trainable.provider
        )
        validation = None
        if body.validation_file is not None:
            validation = await self._usable_file(
                session, project_id, body.validation_file, "validation_file", method, trainable.provider
            )
            formats = {(f.validation or {}).get("format") for f in (training, validation) if f.validation}
            if len(formats) > 1:
                raise InvalidRequest(
                    "The validation file's format differs from the training file's.",
                    param="validation_file",
                    code="invalid_file_format",
                )
        if body.classification_positive_class is not None and not body.compute_classification_metrics:
            raise InvalidRequest(
                "classification_positive_class needs compute_classification_metrics.",
                param="classification_positive_class",
            )
        if body.compute_classification_metrics and validation is None:
            raise InvalidRequest(
                "Classification metrics are computed on a validation file: give validation_file.",
                param="validation_file",
            )
        suffix = slugify(body.suffix) if body.suffix else None
        if body.suffix is not None and not suffix:
            raise InvalidRequest("The suffix has no letters or digits.", param="suffix")
        ready = all(f.status is FileStatus.processed for f in (training, validation) if f is not None)
        job = FineTuningJob(
            id=new_id("ftjob"),
            project_id=project_id,
            model=body.model,
            base_model=trainable.base_model,
            parent_model=trainable.parent.id if trainable.parent else None,
            provider=trainable.provider.name,
            training_file=training.id,
            validation_file=validation.id if validation else None,
            method={"type": method},
            hyperparameters=hyperparameters,
            classification=(
                {
                    "compute_classification_metrics": True,
                    "classification_n_classes": body.classification_n_classes,
                    "classification_positive_class": body.classification_positive_class,
                }
                if body.compute_classification_metrics
                else None
            ),
            seed=body.seed if body.seed is not None else secrets.randbelow(2_147_483_648),
            suffix=suffix,
            job_metadata=body.metadata,
            status=JobStatus.queued if ready else JobStatus.validating_files,
            result_files=[],
            event_seq=0,
            attempts=0,
        )
        repo = JobRepository(session)
        await repo.add(job)
        await repo.append_event(job, f"Created fine-tuning job: {job.id}")
        if ready:
            await repo.append_event(job, "Files validated, moving job to queued state")
        else:
            await repo.append_event(job, f"Validating training file: {training.id}")
        return job

    async def get(
        self, session: AsyncSession, project_id: str, job_id: str, *, for_update: bool = False
    ) -> FineTuningJob:
        job = await JobRepository(session).get(project_id, job_id, for_update=for_update)
        if job is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return job

    async def list(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        metadata: dict[str, str],
        limit: int,
        after: str | None,
        status: JobStatus | None = None,
    ) -> Page[FineTuningJob]:
        return await JobRepository(session).page(project_id, metadata=metadata, limit=limit, after=after, status=status)

    async def progress(self, session: AsyncSession, project_id: str, job_ids: Collection[str]) -> dict[str, float]:
        """How far each running job is (steps done / total steps, 0 to 1), for the jobs that reported a step."""
        found = await JobRepository(session).latest_metrics(project_id, job_ids)
        return {job_id: done for job_id, data in found.items() if (done := step_progress(data)) is not None}

    async def events(
        self, session: AsyncSession, project_id: str, job_id: str, *, limit: int, after: str | None
    ) -> Page[JobEvent]:
        job = await self.get(session, project_id, job_id)
        return await JobRepository(session).events_page(project_id, job.id, limit=limit, after=after)

    async def stream_cursor(self, session: AsyncSession, project_id: str, job_id: str, after: str | None) -> int:
        """The sequence number a stream resumes after: 0 from the start, else the given event's."""
        job = await self.get(session, project_id, job_id)
        if after is None:
            return 0
        seq = await JobRepository(session).event_seq(project_id, job.id, after)
        if seq is None:
            raise InvalidRequest(f"No event with id '{after}' in this job to resume after.", param="after")
        return seq

    async def checkpoints(
        self, session: AsyncSession, project_id: str, job_id: str, *, limit: int, after: str | None
    ) -> Page[JobCheckpoint]:
        job = await self.get(session, project_id, job_id)
        return await JobRepository(session).checkpoints_page(project_id, job.id, limit=limit, after=after)

    async def timeline(self, session: AsyncSession, job: FineTuningJob, *, messages: int) -> JobTimeline:
        """The job's events as its page first shows them: every metrics point, the latest ``messages`` other events,
        and the id of the event a live stream resumes after. Both reads stop at the job's event sequence as it was
        read with ``job``, so the stream neither repeats nor misses an event."""
        repo = JobRepository(session)
        cut = job.event_seq
        points = await repo.metrics_data(job.project_id, job.id, up_to_seq=cut)
        latest = await repo.latest_messages(job.project_id, job.id, up_to_seq=cut, limit=messages)
        ends = [(seq, id_) for seq, id_, _ in points[-1:]] + [(e.seq, e.id) for e in latest[:1]]
        return JobTimeline(
            metrics=[data or {} for _, _, data in points],
            messages=latest,
            last_event_id=max(ends)[1] if ends else None,
        )

    # --- the worker's side: leases, and what a run reports ---------------------------------------------------------

    async def claim(
        self, session: AsyncSession, worker_id: str, providers: Sequence[str], lease: timedelta
    ) -> FineTuningJob | None:
        return await JobRepository(session).claim(worker_id, providers, lease)

    async def renew(self, session: AsyncSession, job_id: str, worker_id: str, lease: timedelta) -> JobStatus | None:
        """Extend the lease; the job's status, or None when the lease is no longer ``worker_id``'s."""
        return await JobRepository(session).renew(job_id, worker_id, lease)

    async def held(self, session: AsyncSession, job_id: str, worker_id: str) -> FineTuningJob | None:
        return await JobRepository(session).held(job_id, worker_id)

    async def release(self, session: AsyncSession, job: FineTuningJob, worker_id: str) -> None:
        await JobRepository(session).release(job.id, worker_id)

    async def validating(self, session: AsyncSession) -> Sequence[FineTuningJob]:
        return await JobRepository(session).validating()

    async def settle_validation(self, session: AsyncSession, job: FineTuningJob, providers: ProviderRegistry) -> None:
        """``validating_files`` → ``queued`` once every file is processed and usable, → ``failed`` when one is not;
        nothing while a file is still being validated."""
        provider = providers.get(job.provider)
        files = [(job.training_file, "training_file"), (job.validation_file, "validation_file")]
        for file_id, param in files:
            if file_id is None:
                continue
            record = await FileRepository(session).get(job.project_id, file_id)
            failure = None
            if record is None:
                failure = JobFailure("invalid_file", f"File {file_id} was deleted before training started.", param)
            elif record.status is FileStatus.error:
                failure = JobFailure(
                    "invalid_file", f"File {file_id} failed validation: {record.status_details}", param
                )
            elif record.status is FileStatus.uploaded:
                return  # still validating: look again next round
            elif provider is not None:
                try:
                    self.check_format(record, job.method["type"], provider, param)
                except InvalidRequest as exc:
                    failure = JobFailure("invalid_file_format", exc.message, param)
            if failure is not None:
                await self.fail(session, job, failure)  # a compare-and-set: a job cancelled meanwhile stays so
                return
        await self.queue_validated(session, job)

    async def prepare_run(self, session: AsyncSession, job: FineTuningJob, store: BlobStore, work_dir: Path) -> JobRun:
        """Everything the provider needs to (re)start the job; ``RunImpossible`` when a file or parent is gone."""

        async def file_of(file_id: str | None, param: str) -> StoredFile | None:
            if file_id is None:
                return None
            record = await FileRepository(session).get(job.project_id, file_id)
            if record is None:
                failure = JobFailure("invalid_file", f"File {file_id} was deleted before training finished.", param)
                raise RunImpossible(failure)
            return record

        training = await file_of(job.training_file, "training_file")
        validation = await file_of(job.validation_file, "validation_file")
        assert training is not None
        parent_artifact = None
        if job.parent_model:
            parent = await ModelRepository(session).get(job.project_id, job.parent_model)
            if parent is None:
                message = f"The model {job.parent_model} was deleted before training finished."
                raise RunImpossible(JobFailure("invalid_model", message, "model"))
            parent_artifact = parent.artifact
        classification = Classification(**job.classification) if job.classification else Classification()
        return JobRun(
            job_id=job.id,
            project_id=job.project_id,
            model=job.model,
            base_model=job.base_model,
            parent_artifact=parent_artifact,
            training_file=store.path(training.storage_key),
            training_file_id=training.id,
            training_filename=training.filename,
            validation_file=store.path(validation.storage_key) if validation else None,
            validation_file_id=validation.id if validation else None,
            validation_filename=validation.filename if validation else None,
            method=job.method["type"],
            hyperparameters=dict(job.hyperparameters),
            seed=job.seed,
            suffix=job.suffix,
            work_dir=work_dir,
            classification=classification,
            provider_state=job.provider_state,
        )

    async def start(self, session: AsyncSession, job: FineTuningJob) -> RunRecord:
        """A worker has claimed ``job`` and is about to run it: say so, and name the model it will make."""
        resumed = job.attempts > 1 or job.provider_state is not None
        await JobRepository(session).append_event(
            job, "Fine-tuning job resumed" if resumed else "Fine-tuning job started"
        )
        project_name = await registry_service.project_name(session, job.project_id)
        return RunRecord(model_name=fine_tuned_name(job.base_model, project_name, job.suffix, job.id))

    async def record_event(
        self, session: AsyncSession, job: FineTuningJob, message: str, *, level: str, data: dict[str, Any] | None
    ) -> None:
        await JobRepository(session).append_event(job, message, level=EventLevel(level), data=data)

    async def record_metrics(self, session: AsyncSession, job: FineTuningJob, metrics: StepMetrics) -> None:
        total = f"/{metrics.total_steps}" if metrics.total_steps else ""
        message = f"Step {metrics.step}{total}: training loss={_fmt(metrics.train_loss)}"
        if metrics.valid_loss is not None:
            message += f", validation loss={_fmt(metrics.valid_loss)}"
        await JobRepository(session).append_event(job, message, type_=EventType.metrics, data=metrics.data())
        if metrics.estimated_finish_seconds is not None and job.status is JobStatus.running:
            # To the nearest second: the API gives whole Unix seconds, and truncating would make it early.
            finish = utcnow() + timedelta(seconds=metrics.estimated_finish_seconds + 0.5)
            job.estimated_finish = finish.replace(microsecond=0)
        if metrics.elapsed_tokens is not None:
            job.trained_tokens = metrics.elapsed_tokens

    async def record_checkpoint(
        self, session: AsyncSession, job: FineTuningJob, checkpoint: CheckpointReport, record: RunRecord
    ) -> None:
        """The checkpoint and its registry model (once: a resumed run reports its checkpoints again)."""
        repo = JobRepository(session)
        if await repo.checkpoint_at(job.id, checkpoint.step) is not None:
            return
        model = _model_row(job, record, checkpoint.artifact, checkpoint.step)
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
        await ModelRepository(session).add(model)
        await repo.append_event(job, f"Checkpoint created at step {checkpoint.step}")

    async def record_state(self, session: AsyncSession, job: FineTuningJob, state: dict[str, Any]) -> None:
        job.provider_state = state

    async def record_hyperparameters(self, session: AsyncSession, job: FineTuningJob, values: dict[str, Any]) -> None:
        job.hyperparameters = {**job.hyperparameters, **values}

    async def record_outcome(
        self,
        session: AsyncSession,
        job: FineTuningJob,
        outcome: RunOutcome,
        *,
        worker_id: str,
        record: RunRecord,
        store: BlobStore,
        work_dir: Path,
        evaluate: AfterTraining | None = None,
    ) -> FineTunedModel | None:
        """How ``worker_id``'s run of ``job`` ended, in the caller's one transaction. The fine-tuned model when
        this call completed the job (and, as ``evaluate`` says, the eval of it on the validation file is queued);
        None when it failed, or was paused or cancelled under the run (whose own event told that already: here
        only what the run left is added)."""
        if outcome.hyperparameters:
            job.hyperparameters = {**job.hyperparameters, **outcome.hyperparameters}
        if outcome.status == "succeeded":
            done = await self.succeed(
                session,
                job,
                worker_id=worker_id,
                fine_tuned_model=record.model_name,
                trained_tokens=outcome.trained_tokens,
            )
            if done:
                await self._attach_results(session, store, job, outcome.results_csv)
                model = _model_row(job, record, outcome.artifact or "")
                await ModelRepository(session).add(model)
                if evaluate is not None:
                    await evaluation.queue(session, store, job, model, evaluate)
                return model
        elif outcome.status == "failed":
            failure = JobFailure(
                outcome.error_code or "training_failed",
                outcome.error_message or "Training failed.",
                outcome.error_param,
            )
            if await self.fail(session, job, failure, worker_id=worker_id):
                return None
        repo = JobRepository(session)
        if outcome.status == "paused" or job.status is JobStatus.paused:
            await repo.append_event(job, "Training stopped; progress is saved and resumes from there")
        elif job.status is JobStatus.cancelled:
            await repo.append_event(job, "Training process stopped", level=EventLevel.warn)
            # The steps it ran are still worth reading: keep their results, as a finished job's.
            await self._attach_results(session, store, job, outcome.results_csv or work_dir / RESULTS_CSV)
        return None

    @staticmethod
    async def _attach_results(
        session: AsyncSession, store: BlobStore, job: FineTuningJob, results_csv: Path | None
    ) -> None:
        """Store a run's results.csv as the job's result file (a copy: the run's folder may be reused)."""
        if results_csv is None:
            return
        temp = store.temp_path()
        if not await asyncio.to_thread(_copy_if_rows, results_csv, temp):
            return  # no run, or stopped before its first step: a header, no results
        size, sha256 = digest(temp)
        results = await file_service.store_blob(
            session,
            store,
            job.project_id,
            temp_path=temp,
            filename=RESULTS_CSV,
            purpose=FilePurpose.fine_tune_results,
            size=size,
            sha256=sha256,
        )
        job.result_files = [results.id]

    # --- the state machine: every status change is a compare-and-set (JobRepository.transition) -------------------

    async def cancel(self, session: AsyncSession, project_id: str, job_id: str) -> FineTuningJob:
        job = await self.get(session, project_id, job_id, for_update=True)
        # A running job's worker sees this at its next heartbeat and kills the training process.
        events = [("Fine-tuning job cancelled", EventLevel.warn)]
        if not await self._finish(session, job, JobStatus.cancelled, from_=ACTIVE, events=events):
            raise _conflict(job, "cancel")
        return job

    async def pause(self, session: AsyncSession, project_id: str, job_id: str) -> FineTuningJob:
        job = await self.get(session, project_id, job_id, for_update=True)
        # A running job's worker saves a resumable state, then stops computing.
        pausable = (JobStatus.queued, JobStatus.running, JobStatus.validating_files)
        repo = JobRepository(session)
        if not await repo.transition(job, JobStatus.paused, from_=pausable, values={"estimated_finish": None}):
            raise _conflict(job, "pause")
        await repo.append_event(job, "Fine-tuning job paused")
        return job

    async def resume(self, session: AsyncSession, project_id: str, job_id: str) -> FineTuningJob:
        job = await self.get(session, project_id, job_id, for_update=True)
        repo = JobRepository(session)
        if not await repo.transition(job, JobStatus.queued, from_=(JobStatus.paused,)):
            raise _conflict(job, "resume")
        await repo.append_event(job, "Fine-tuning job resumed, moving job to queued state")
        return job

    async def queue_validated(self, session: AsyncSession, job: FineTuningJob) -> bool:
        """``validating_files`` → ``queued`` once its files are processed (unless it was cancelled or paused)."""
        repo = JobRepository(session)
        if not await repo.transition(job, JobStatus.queued, from_=(JobStatus.validating_files,)):
            return False
        await repo.append_event(job, "Files validated, moving job to queued state")
        return True

    async def fail(
        self,
        session: AsyncSession,
        job: FineTuningJob,
        error: JobFailure,
        *,
        worker_id: str | None = None,
    ) -> bool:
        """Fail a job: the running job of ``worker_id`` (while its lease is still that worker's), or without one a
        job still validating its files. Whether this call failed it (False: it had already moved on)."""
        from_ = (JobStatus.running,) if worker_id is not None else (JobStatus.validating_files,)
        return await self._finish(
            session,
            job,
            JobStatus.failed,
            from_=from_,
            lease_owner=worker_id,
            values={"error": error.as_dict()},
            events=[(f"Fine-tuning job failed: {error.message}", EventLevel.error)],
        )

    async def succeed(
        self,
        session: AsyncSession,
        job: FineTuningJob,
        *,
        worker_id: str,
        fine_tuned_model: str,
        trained_tokens: int | None,
    ) -> bool:
        """The running job of ``worker_id`` has trained ``fine_tuned_model``. Whether this call completed it (False:
        it was cancelled or paused meanwhile, or another worker holds it now); only then may the caller record the
        run's model and results, in the same transaction."""
        return await self._finish(
            session,
            job,
            JobStatus.succeeded,
            from_=(JobStatus.running,),
            lease_owner=worker_id,
            values={"fine_tuned_model": fine_tuned_model, "trained_tokens": trained_tokens},
            events=[
                (f"New fine-tuned model created: {fine_tuned_model}", EventLevel.info),
                ("The job has successfully completed", EventLevel.info),
            ],
        )

    @staticmethod
    async def _finish(
        session: AsyncSession,
        job: FineTuningJob,
        status: JobStatus,
        *,
        from_: Collection[JobStatus],
        events: Sequence[tuple[str, EventLevel]],
        lease_owner: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """The one way into a final status: only the transaction that moves the job appends the final events and
        queues the outcome's webhooks, so an outcome is told once however many parties race to end the job."""
        repo = JobRepository(session)
        final = {"finished_at": utcnow(), "estimated_finish": None, **(values or {})}
        if not await repo.transition(job, status, from_=from_, lease_owner=lease_owner, values=final):
            return False
        for message, level in events:
            await repo.append_event(job, message, level=level)
        await job_finished(session, job)
        return True


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _model_row(
    job: FineTuningJob, record: RunRecord, artifact: str, checkpoint_step: int | None = None
) -> FineTunedModel:
    """The registry row of the job's model, or of one of its checkpoints, with the data's prompt format."""
    name = record.model_name if checkpoint_step is None else f"{record.model_name}:ckpt-step-{checkpoint_step}"
    return FineTunedModel(
        id=name,
        project_id=job.project_id,
        job_id=job.id,
        base_model=job.base_model,
        parent_model=job.parent_model,
        provider=job.provider,
        checkpoint_step=checkpoint_step,
        artifact=artifact,
        prompt_format=record.prompt_format,
    )


def _copy_if_rows(results_csv: Path, target: Path) -> bool:
    """Copy a results.csv that holds at least one step's row to ``target``."""
    if not results_csv.is_file():
        return False
    with results_csv.open("rb") as f:
        if sum(1 for line in f if line.strip()) < 2:
            return False
    shutil.copyfile(results_csv, target)
    return True


def _conflict(job: FineTuningJob, action: str) -> GatewayError:
    # 400 as OpenAI answers it (e.g. cancelling a finished job), not 409.
    return InvalidRequest(
        f"Cannot {action} a job that is {job.status.value}.", param="fine_tuning_job_id", code="invalid_job_state"
    )


job_service = JobService()
