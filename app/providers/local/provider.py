"""The local provider: LoRA fine-tunes of local base models, trained in a child process on this machine."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import time
from pathlib import Path
from typing import Any

from app.config import Settings
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
from app.providers.local.base_models import BaseModelStore, register_local_tokenizers
from app.providers.local.training import (
    ClassificationSettings,
    DeviceKind,
    Hyperparameters,
    ResolvedHyperparameters,
    TrainSpec,
    child_main,
    load_preferences,
    load_supervised,
    resolve_hyperparameters,
)

log = logging.getLogger(__name__)

# How long a pausing trainer may take to save its state before it is killed (it then resumes from its checkpoint).
PAUSE_GRACE_SECONDS = 120.0
POLL_SECONDS = 0.2
PREPARE_POLL_SECONDS = 1.0
# While a base model converts, a job event at least this often says it is still working.
PREPARE_HEARTBEAT_SECONDS = 10.0

_FORMATS = {("supervised", "chat"), ("supervised", "prompt_completion"), ("dpo", "preference")}


class LocalProvider(TrainingProvider):
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.data_dir = settings.data_dir.resolve()
        self.store = BaseModelStore(
            settings.models_cache, settings.local_models_dir, include_test_models=settings.test_models
        )
        register_local_tokenizers(self.store)

    def base_models(self) -> list[BaseModelInfo]:
        return [BaseModelInfo(id=name, owned_by="ftgw-local") for name in self.store.names()]

    def address(self, base_model: str, artifact: str | None) -> ModelAddress:
        return ModelAddress(adapter=self.data_dir / artifact if artifact else None)

    def supports(self, method: str, dataset_format: str) -> bool:
        return (method, dataset_format) in _FORMATS

    def spec(self, job: JobRun, base_path: Path) -> TrainSpec:
        hyper = {k: v for k, v in job.hyperparameters.items() if k in Hyperparameters.model_fields}
        return TrainSpec(
            base_model=job.base_model,
            base_path=base_path,
            training_file=job.training_file,
            validation_file=job.validation_file,
            output_dir=job.work_dir.resolve(),
            parent_adapter=self.data_dir / job.parent_artifact if job.parent_artifact else None,
            method=job.method,
            hyperparameters=Hyperparameters(**hyper),
            classification=ClassificationSettings(
                compute_classification_metrics=job.classification.compute_classification_metrics,
                classification_n_classes=job.classification.classification_n_classes,
                classification_positive_class=job.classification.classification_positive_class,
            ),
            seed=job.seed,
        )

    def _artifact(self, path: str | Path) -> str:
        return str(Path(path).resolve().relative_to(self.data_dir))

    async def _base_path(self, name: str, ctx: JobContext) -> Path | StopReason:
        """The base model's folder; a first use that must convert weights reports its stages as job events.

        A job cancelled, paused or taken away meanwhile stops waiting at once (the reason is returned); the
        conversion itself finishes in the background, so the next job finds the model ready."""
        if self.store.is_ready(name):
            return await asyncio.to_thread(self.store.resolve, name)
        await ctx.event(f"Preparing base model {name} (converting weights, first use only)")
        started = time.monotonic()
        stages: queue.SimpleQueue[str] = queue.SimpleQueue()

        def progress(message: str, done: int, total: int) -> None:
            if done < total:
                stages.put(f"Preparing base model {name}: {message} ({done + 1}/{total})")

        building = asyncio.ensure_future(asyncio.to_thread(self.store.resolve, name, progress))
        last_event = time.monotonic()
        while True:
            finished, _ = await asyncio.wait({building}, timeout=PREPARE_POLL_SECONDS)
            while not stages.empty():
                await ctx.event(stages.get())
                last_event = time.monotonic()
            if finished:
                break
            stop = ctx.stop_requested()
            if stop is not None:
                await ctx.event(f"Stopped waiting for base model {name}; its preparation finishes in the background")
                return stop
            if time.monotonic() - last_event >= PREPARE_HEARTBEAT_SECONDS:
                await ctx.event(f"Preparing base model {name}: still working ({time.monotonic() - started:.0f} s)")
                last_event = time.monotonic()
        path = building.result()
        await ctx.event(f"Base model {name} ready in {time.monotonic() - started:.0f} s")
        return path

    async def _resolve(self, spec: TrainSpec, base_model: str) -> ResolvedHyperparameters:
        """The run's hyperparameters, ``auto`` resolved from the training file's tokenized size on this machine."""

        def measure() -> tuple[int, float | None]:
            try:
                tokenizer = self.store.tokenizer(base_model)
                context = self.store.context_length(base_model)
                if spec.method == "dpo":
                    pairs, _ = load_preferences(spec.training_file, tokenizer, context)
                    lengths = [p.n_tokens for p in pairs]
                else:
                    seqs, _ = load_supervised(spec.training_file, tokenizer, context)
                    lengths = [len(s.input_ids) for s in seqs]
            except Exception:  # the trainer reports what is wrong with the file; resolve something here
                return _count_examples(spec.training_file), None
            return len(lengths), sum(lengths) / max(1, len(lengths))

        n_examples, mean_tokens = await asyncio.to_thread(measure)
        device: DeviceKind = "cuda" if await asyncio.to_thread(_has_cuda) else "cpu"
        return resolve_hyperparameters(spec, n_examples, mean_tokens, device=device)

    async def run(self, job: JobRun, ctx: JobContext) -> RunOutcome:
        base_path = await self._base_path(job.base_model, ctx)
        if isinstance(base_path, StopReason):
            return _stopped_before_training(base_path)
        spec = self.spec(job, base_path)
        resolved = await self._resolve(spec, job.base_model)
        hyperparameters: dict[str, Any] = {
            "n_epochs": resolved.n_epochs,
            "batch_size": resolved.batch_size,
            "learning_rate_multiplier": resolved.learning_rate_multiplier,
        }
        if job.method == "dpo":
            hyperparameters["beta"] = resolved.beta
        await ctx.resolved_hyperparameters(hyperparameters)
        # The child trains with exactly these numbers (no second resolution that could differ).
        spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(update=hyperparameters)})
        job.work_dir.mkdir(parents=True, exist_ok=True)

        mp = multiprocessing.get_context("spawn")
        parent_conn, child_conn = mp.Pipe()
        # Started from the event loop's thread, which lives as long as the worker: PDEATHSIG follows that thread.
        process = mp.Process(
            target=child_main, args=(spec.model_dump_json(), child_conn, os.getpid()), name=f"train-{job.job_id}"
        )
        process.start()
        child_conn.close()
        pause_sent: float | None = None
        try:
            while True:
                stop = ctx.stop_requested()
                if stop in (StopReason.cancel, StopReason.lease_lost, StopReason.shutdown):
                    process.kill()
                    return RunOutcome(status="cancelled" if stop is StopReason.cancel else "interrupted")
                if stop is StopReason.pause and pause_sent is None:
                    parent_conn.send("pause")
                    pause_sent = time.monotonic()
                    await ctx.event("Pausing: saving training state")
                if pause_sent is not None and time.monotonic() - pause_sent > PAUSE_GRACE_SECONDS:
                    process.kill()
                    await ctx.event(
                        "The trainer did not stop in time; it resumes from its last checkpoint", level="warn"
                    )
                    return RunOutcome(status="paused")
                if await asyncio.to_thread(parent_conn.poll, POLL_SECONDS):
                    try:
                        kind, payload = parent_conn.recv()
                    except EOFError:
                        kind, payload = "eof", {}
                    outcome = await self._handle(kind, payload, ctx, hyperparameters)
                    if outcome is not None:
                        return outcome
                elif not process.is_alive():
                    return RunOutcome(
                        status="failed",
                        error_code="training_failed",
                        error_message=f"The training process exited unexpectedly (code {process.exitcode}).",
                    )
        finally:
            if process.is_alive():
                process.kill()
            await asyncio.to_thread(process.join, 10)
            parent_conn.close()

    async def _handle(
        self, kind: str, payload: dict[str, Any], ctx: JobContext, hyperparameters: dict[str, Any]
    ) -> RunOutcome | None:
        if kind == "step":
            await ctx.metrics(
                StepMetrics(
                    step=payload["step"],
                    total_steps=payload["total_steps"],
                    train_loss=payload["train_loss"],
                    train_mean_token_accuracy=payload["train_mean_token_accuracy"],
                    valid_loss=payload.get("valid_loss"),
                    valid_mean_token_accuracy=payload.get("valid_mean_token_accuracy"),
                    elapsed_tokens=payload["elapsed_tokens"],
                    elapsed_examples=payload["elapsed_examples"],
                    estimated_finish_seconds=payload["estimated_finish_seconds"],
                )
            )
        elif kind == "validation":
            data = {
                "step": payload["step"],
                "full_valid_loss": payload["loss"],
                "full_valid_mean_token_accuracy": payload["token_accuracy"],
                **payload.get("classification", {}),
            }
            summary = ", ".join(f"{k}={v:.4f}" for k, v in data.items() if k != "step" and isinstance(v, float))
            await ctx.event(f"Validation at step {payload['step']}: {summary}", data=data)
        elif kind == "checkpoint":
            await ctx.checkpoint(
                CheckpointReport(
                    step=payload["step"], metrics=payload["metrics"], artifact=self._artifact(payload["path"])
                )
            )
        elif kind == "message":
            await ctx.event(payload["message"], level=payload["level"])
        elif kind == "done":
            if payload["status"] == "paused":
                return RunOutcome(status="paused", trained_tokens=payload["trained_tokens"])
            return RunOutcome(
                status="succeeded",
                artifact=self._artifact(payload["adapter_path"]),
                trained_tokens=payload["trained_tokens"],
                results_csv=Path(payload["results_csv"]),
                hyperparameters=hyperparameters,
            )
        elif kind == "error":
            log.error("training failed: %s", payload.get("traceback"))
            return RunOutcome(status="failed", error_code="training_failed", error_message=payload["message"])
        elif kind == "eof":
            return RunOutcome(
                status="failed", error_code="training_failed", error_message="The training process exited unexpectedly."
            )
        return None


def _stopped_before_training(reason: StopReason) -> RunOutcome:
    """How a run that never started its trainer ends: nothing to save, so a pause simply waits to start again."""
    if reason is StopReason.cancel:
        return RunOutcome(status="cancelled")
    if reason is StopReason.pause:
        return RunOutcome(status="paused")
    return RunOutcome(status="interrupted")


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _count_examples(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())
