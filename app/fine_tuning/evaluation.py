"""The eval a job ends with, seen from the job: queued in the transaction that completes the job, its figures told in
the job's events once both its runs have ended, read back side by side (``GET /v1/fine_tuning/jobs/{id}/eval``).

The rows, criterion and runs are the evals package's (``app.evals.validation``). This module decides when a job is
evaluated: it succeeded, it has a validation file, it trained on supervised data (preference data has no single
reference answer: a DPO job says so in an event), and neither the gateway (``FTGW_EVAL_AFTER_FINE_TUNING``) nor the
job (metadata ``"ftgw_eval": "off"``) turned evals off. The figures are reported by :func:`report`, which the evals
service calls in the transaction that ends each run (``app.evals.hooks``); of the two runs, the one that ends last
writes the event.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.datasets.prompt_format import PromptFormat
from app.errors import NotFound
from app.evals import comparisons
from app.evals import validation as validation_evals
from app.evals.comparisons import ComparisonOut, Rate
from app.evals.hooks import on_run_finished
from app.evals.models import ACTIVE, EvalRun, RunStatus
from app.files.repository import FileRepository
from app.files.storage import BlobStore
from app.fine_tuning.models import EventLevel, FineTuningJob
from app.fine_tuning.repository import JobRepository
from app.registry.models import FineTunedModel

SWITCH_KEY = "ftgw_eval"  # job metadata: "off" (or false, no, 0) skips the eval
_OFF = frozenset({"off", "false", "no", "0"})
_NO_EVAL = "No eval after training"


@dataclass(frozen=True, slots=True)
class AfterTraining:
    """How a worker evaluates the jobs it completes."""

    enabled: bool
    # The runs' report_url: a worker has no request to read the gateway's address from, so the configured one.
    api_base: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AfterTraining:
        return cls(enabled=settings.eval_after_fine_tuning, api_base=f"http://{settings.host}:{settings.port}/")


def switched_off(job: FineTuningJob) -> bool:
    return str((job.job_metadata or {}).get(SWITCH_KEY, "")).strip().lower() in _OFF


async def queue(
    session: AsyncSession,
    store: BlobStore,
    job: FineTuningJob,
    model: FineTunedModel,
    options: AfterTraining,
) -> None:
    """Queue the eval of the job's fine-tuned ``model`` against the model the job started from, on its validation
    file, in the transaction that completes the job; or say in an event why it is not evaluated."""
    if job.validation_file is None or not options.enabled or switched_off(job):
        return
    repo = JobRepository(session)
    if job.method["type"] != "supervised":
        await repo.append_event(
            job, f"{_NO_EVAL}: preference (DPO) data has no single reference answer to grade the model's against"
        )
        return
    validation = await FileRepository(session).get(job.project_id, job.validation_file)
    if validation is None:
        message = f"{_NO_EVAL}: the validation file {job.validation_file} was deleted"
        await repo.append_event(job, message, level=EventLevel.warn)
        return
    prompt_format = PromptFormat.from_stored(model.prompt_format)
    try:
        queued = await validation_evals.create(
            session,
            store,
            project_id=job.project_id,
            job_id=job.id,
            validation=validation,
            prompt_format=prompt_format,
            classification=job.classification is not None or bool(prompt_format and prompt_format.labels),
            base_model=job.model,
            fine_tuned_model=model.id,
            api_base=options.api_base,
        )
    except validation_evals.NothingToEvaluate as exc:
        await repo.append_event(job, f"{_NO_EVAL}: {exc}")
        return
    found = queued.job_eval
    rows = f"{queued.rows} rows" if queued.rows == queued.total else f"the first {queued.rows} of {queued.total} rows"
    await repo.append_event(
        job,
        f"Evaluating {model.id} against its base {job.model} on the validation file: eval {found.evaluation.id} "
        f"({rows}, {queued.criterion})",
        data={
            "eval_id": found.evaluation.id,
            "base_run_id": found.base.id,
            "fine_tuned_run_id": found.fine_tuned.id,
            "kind": queued.kind,
            "rows": queued.rows,
        },
    )


@on_run_finished
async def report(session: AsyncSession, run: EvalRun) -> None:
    """Once both runs of a job's eval have ended, tell the figures (or why there are none) in the job's events."""
    job_id = validation_evals.job_of(run)
    if job_id is None:
        return
    repo = JobRepository(session)
    # The job row's lock orders the two runs' ends: the one that takes it second sees the other's final status.
    job = await repo.get(run.project_id, job_id, for_update=True)
    found = await validation_evals.of_job(session, run.project_id, job_id) if job is not None else None
    if job is None or found is None or run.id not in {r.id for r in found.runs}:
        return
    if any(r.status in ACTIVE for r in found.runs):
        return  # the other run is still going: it reports when it ends
    ids = {"eval_id": found.evaluation.id, "base_run_id": found.base.id, "fine_tuned_run_id": found.fine_tuned.id}
    unfinished = [r for r in found.runs if r.status is not RunStatus.completed]
    if unfinished:
        why = ", ".join(f"the {_role(found.runs, r)} run {r.status.value}" for r in unfinished)
        statuses = {f"{_role(found.runs, r)}_status": r.status.value for r in found.runs}
        await repo.append_event(
            job,
            f"The eval on the validation file has no figures: {why} (eval {found.evaluation.id})",
            level=EventLevel.warn,
            data={**ids, **statuses},
        )
        return
    comparison = await comparisons.read(
        session, run.project_id, found.evaluation.id, [found.base.id, found.fine_tuned.id], disagreements_limit=0
    )
    base, fine_tuned = (column.overall for column in comparison.runs)
    difference = (
        fine_tuned.pass_rate - base.pass_rate
        if fine_tuned.pass_rate is not None and base.pass_rate is not None
        else None
    )
    level = comparison.confidence_level
    points = f"{difference * 100:+.1f} points" if difference is not None else "no difference to tell"
    await repo.append_event(
        job,
        f"Eval on the validation file: {found.fine_tuned.model} passed {_figures(fine_tuned, level)}, "
        f"its base {found.base.model} {_figures(base, level)}: {points} (eval {found.evaluation.id})",
        data={
            **ids,
            "confidence_level": comparison.confidence_level,
            "base": {"model": found.base.model, **base.model_dump()},
            "fine_tuned": {"model": found.fine_tuned.model, **fine_tuned.model_dump()},
            "difference": difference,
        },
    )


async def read(session: AsyncSession, job: FineTuningJob, *, disagreements_limit: int) -> ComparisonOut:
    """The job's eval as a comparison: the base run first, then the fine-tuned one."""
    found = await validation_evals.of_job(session, job.project_id, job.id)
    if found is None:
        raise NotFound(
            f"Fine-tuning job {job.id} has no eval: only a supervised job with a validation file is evaluated, once "
            "it has succeeded.",
            param="fine_tuning_job_id",
        )
    run_ids = [found.base.id, found.fine_tuned.id]
    return await comparisons.read(
        session, job.project_id, found.evaluation.id, run_ids, disagreements_limit=disagreements_limit
    )


def _role(runs: tuple[EvalRun, EvalRun], run: EvalRun) -> str:
    return "base" if run is runs[0] else "fine-tuned"


def _figures(rate: Rate, confidence: float) -> str:
    if rate.pass_rate is None or rate.ci_low is None or rate.ci_high is None:
        return f"{rate.passed}/{rate.total}"
    interval = f"{confidence:.0%} CI [{rate.ci_low:.1%}, {rate.ci_high:.1%}]"
    return f"{rate.passed}/{rate.total} ({rate.pass_rate:.1%}, {interval})"
