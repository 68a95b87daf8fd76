"""The jobs' logic: create (with every check a job needs before it may queue), list, and the state machine.

Every status change, the API's (cancel, pause, resume) and the worker's (queued, succeeded, failed), is made here,
as a compare-and-set on the job row: the outcome of a job is recorded, and its webhooks queued, exactly once.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import GatewayError, InvalidRequest, NotFound
from app.files.models import FilePurpose, FileStatus, StoredFile
from app.files.service import file_service
from app.fine_tuning.events import job_finished
from app.fine_tuning.models import ACTIVE, EventLevel, FineTuningJob, JobCheckpoint, JobEvent, JobStatus
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.schemas import CreateJobRequest, Hyperparameters
from app.kit.ids import new_id
from app.kit.pagination import Page
from app.kit.time import utcnow
from app.providers.base import TrainingProvider
from app.providers.registry import ProviderRegistry
from app.registry.service import registry_service, slugify

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
        self, session: AsyncSession, project_id: str, *, metadata: dict[str, str], limit: int, after: str | None
    ) -> Page[FineTuningJob]:
        return await JobRepository(session).page(project_id, metadata=metadata, limit=limit, after=after)

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


def _conflict(job: FineTuningJob, action: str) -> GatewayError:
    # 400 as OpenAI answers it (e.g. cancelling a finished job), not 409.
    return InvalidRequest(
        f"Cannot {action} a job that is {job.status.value}.", param="fine_tuning_job_id", code="invalid_job_state"
    )


job_service = JobService()
