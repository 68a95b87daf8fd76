"""Upstream provider: fine-tunes run on an OpenAI-compatible service, driven and mirrored through the openai SDK.

The job's files are uploaded there, the upstream job is created, and then its status, events and checkpoints
are mirrored into ours until it ends. Cancel, pause and resume are passed on. What the upstream side has already
done (uploaded files, the upstream job id, the last mirrored event) is saved as provider state after each step,
so a worker that takes over a job carries on with the same upstream job instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.fine_tuning import FineTuningJob as UpstreamJob

from app.config import Settings, UpstreamProviderConfig
from app.providers.base import (
    BaseModelInfo,
    CheckpointReport,
    JobContext,
    JobRun,
    ModelAddress,
    RunOutcome,
    StepMetrics,
    StopReason,
    TrainingProvider,
)

log = logging.getLogger(__name__)

# Errors worth waiting out while an upstream job runs on: the SDK has already retried these with backoff.
TRANSIENT = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)


def _metrics(data: dict[str, Any]) -> StepMetrics | None:
    if "step" not in data or "train_loss" not in data:
        return None

    def number(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) else None

    return StepMetrics(
        step=int(data["step"]),
        total_steps=int(data["total_steps"]) if isinstance(data.get("total_steps"), int) else None,
        train_loss=float(data["train_loss"]),
        train_mean_token_accuracy=number("train_mean_token_accuracy"),
        valid_loss=number("valid_loss"),
        valid_mean_token_accuracy=number("valid_mean_token_accuracy"),
        full_valid_loss=number("full_valid_loss"),
        full_valid_mean_token_accuracy=number("full_valid_mean_token_accuracy"),
    )


class UpstreamProvider(TrainingProvider):
    def __init__(self, config: UpstreamProviderConfig, settings: Settings) -> None:
        self.config = config
        self.name = config.name
        self.data_dir = settings.data_dir

    def base_models(self) -> list[BaseModelInfo]:
        return [BaseModelInfo(id=ours, owned_by=self.name) for ours in self.config.models]

    def address(self, base_model: str, artifact: str | None) -> ModelAddress:
        return ModelAddress(remote_id=artifact or self.config.models.get(base_model, base_model))

    def supports(self, method: str, dataset_format: str) -> bool:
        return (method, dataset_format) in {
            ("supervised", "chat"),
            ("supervised", "prompt_completion"),
            ("dpo", "preference"),
        }

    def client(self) -> AsyncOpenAI:
        key = os.environ.get(self.config.api_key_env)
        if not key:
            raise RuntimeError(f"provider {self.name}: ${self.config.api_key_env} is not set")
        return AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=key,
            timeout=self.config.timeout_seconds,
            max_retries=self.config.max_retries,
        )

    async def run(self, job: JobRun, ctx: JobContext) -> RunOutcome:
        state = dict(job.provider_state or {})
        try:
            async with self.client() as client:
                if "upstream_job_id" not in state:
                    await self._start(client, job, ctx, state)
                return await self._mirror(client, job, ctx, state)
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                raise
            return RunOutcome(
                status="failed",
                error_code="upstream_error",
                error_message=f"The provider {self.name} refused the job: {_message(exc)}",
                error_param=_param(exc),
            )

    async def _start(self, client: AsyncOpenAI, job: JobRun, ctx: JobContext, state: dict[str, Any]) -> None:
        for key, path, filename in (
            ("training_file", job.training_file, job.training_filename),
            ("validation_file", job.validation_file, job.validation_filename),
        ):
            if path is None or key in state:
                continue
            with path.open("rb") as f:
                uploaded = await client.files.create(file=(filename or path.name, f), purpose="fine-tune")
            state[key] = uploaded.id
            await ctx.save_state(state)
            await ctx.event(f"Uploaded {filename} to {self.name} as {uploaded.id}")
        hyper = {k: v for k, v in job.hyperparameters.items() if v != "auto"}
        upstream = await client.fine_tuning.jobs.create(
            model=job.parent_artifact or self.config.models[job.base_model],
            training_file=state["training_file"],
            validation_file=state.get("validation_file"),
            seed=job.seed,
            suffix=job.suffix,
            method={"type": job.method, job.method: {"hyperparameters": hyper}},  # type: ignore[arg-type]
            metadata={"ftgw_job": job.job_id},
        )
        state["upstream_job_id"] = upstream.id
        await ctx.save_state(state)
        await ctx.event(f"Created job {upstream.id} on {self.name}")

    async def _mirror(self, client: AsyncOpenAI, job: JobRun, ctx: JobContext, state: dict[str, Any]) -> RunOutcome:
        upstream_id: str = state["upstream_job_id"]
        jobs = client.fine_tuning.jobs
        while True:
            stop = ctx.stop_requested()
            if stop is StopReason.cancel:
                await _quietly(jobs.cancel(upstream_id))
                return RunOutcome(status="cancelled")
            if stop is StopReason.pause:
                await _quietly(jobs.pause(upstream_id))
                return RunOutcome(status="paused")
            if stop is not None:
                return RunOutcome(status="interrupted")  # the upstream job runs on; the next worker mirrors it
            try:
                upstream = await jobs.retrieve(upstream_id)
                if str(upstream.status) == "paused":
                    # Paused there while ours runs: it was resumed here (or paused behind our back).
                    upstream = await jobs.resume(upstream_id)
                await self._mirror_events(client, upstream_id, ctx, state)
                await self._mirror_checkpoints(client, upstream_id, ctx, state)
            except TRANSIENT as exc:
                await ctx.event(f"{self.name} is not answering ({type(exc).__name__}); retrying", level="warn")
                await asyncio.sleep(self.config.poll_seconds)
                continue
            outcome = await self._outcome(client, upstream, job)
            if outcome is not None:
                return outcome
            await asyncio.sleep(self.config.poll_seconds)

    async def _mirror_events(
        self, client: AsyncOpenAI, upstream_id: str, ctx: JobContext, state: dict[str, Any]
    ) -> None:
        last = state.get("last_event_id")
        fresh = []
        async for event in client.fine_tuning.jobs.list_events(upstream_id, limit=100):
            if event.id == last:
                break
            fresh.append(event)
        for event in reversed(fresh):
            data = dict(event.data or {}) if isinstance(event.data, dict) else {}
            metrics = _metrics(data) if event.type == "metrics" else None
            if metrics is not None:
                await ctx.metrics(metrics)
            else:
                await ctx.event(f"[{self.name}] {event.message}", level=event.level, data=data or None)
        if fresh:
            state["last_event_id"] = fresh[0].id
            await ctx.save_state(state)

    async def _mirror_checkpoints(
        self, client: AsyncOpenAI, upstream_id: str, ctx: JobContext, state: dict[str, Any]
    ) -> None:
        seen = set(state.get("checkpoints", []))
        fresh = [c async for c in client.fine_tuning.jobs.checkpoints.list(upstream_id, limit=100) if c.id not in seen]
        for checkpoint in sorted(fresh, key=lambda c: c.step_number):
            metrics = {k: float(v) for k, v in checkpoint.metrics.model_dump().items() if isinstance(v, int | float)}
            await ctx.checkpoint(
                CheckpointReport(
                    step=checkpoint.step_number, metrics=metrics, artifact=checkpoint.fine_tuned_model_checkpoint
                )
            )
            seen.add(checkpoint.id)
        if fresh:
            state["checkpoints"] = sorted(seen)
            await ctx.save_state(state)

    async def _outcome(self, client: AsyncOpenAI, upstream: UpstreamJob, job: JobRun) -> RunOutcome | None:
        hyper = upstream.hyperparameters.model_dump() if upstream.hyperparameters else None
        if upstream.status == "succeeded":
            results = await self._download_results(client, upstream, job.work_dir)
            return RunOutcome(
                status="succeeded",
                artifact=upstream.fine_tuned_model,
                trained_tokens=upstream.trained_tokens,
                results_csv=results,
                hyperparameters=hyper,
            )
        if upstream.status == "failed":
            error = upstream.error
            return RunOutcome(
                status="failed",
                error_code=(error.code if error and error.code else "upstream_failed"),
                error_message=f"The job failed on {self.name}: {error.message if error else 'no reason given'}",
                error_param=error.param if error else None,
                hyperparameters=hyper,
            )
        if upstream.status == "cancelled":
            return RunOutcome(
                status="failed",
                error_code="upstream_cancelled",
                error_message=f"The job was cancelled on {self.name}.",
            )
        return None

    async def _download_results(self, client: AsyncOpenAI, upstream: UpstreamJob, work_dir: Path) -> Path | None:
        if not upstream.result_files:
            return None
        content = await client.files.content(upstream.result_files[0])
        target = work_dir / "results.csv"
        await asyncio.to_thread(_write, target, content.content)
        return target


async def _quietly(call: Any) -> None:
    """Pass a cancel/pause on; if the upstream job already ended, there is nothing to stop."""
    try:
        await call
    except openai.APIStatusError as exc:
        log.info("upstream refused a stop request: %s", _message(exc))


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("message") or exc.message)


def _param(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    param = body.get("param")
    return str(param) if param else None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
