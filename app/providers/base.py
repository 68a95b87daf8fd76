"""The typed interface every training provider implements, and what the worker hands it.

A provider trains one job at a time inside :meth:`TrainingProvider.run`, reporting through the
:class:`JobContext` the worker gives it (events, metrics, checkpoints, resumable state) and watching that context
for a stop request (cancel, pause, or a lost lease). The worker owns the database; providers never touch it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol


class StopReason(StrEnum):
    cancel = "cancel"
    pause = "pause"
    lease_lost = "lease_lost"  # another worker may take the job over: stop computing at once
    shutdown = "shutdown"  # this worker is stopping; the job is resumed elsewhere


@dataclass(frozen=True)
class Classification:
    compute_classification_metrics: bool = False
    classification_n_classes: int | None = None
    classification_positive_class: str | None = None


@dataclass(frozen=True)
class JobRun:
    """Everything a provider needs to (re)start a job."""

    job_id: str
    project_id: str
    model: str  # as the caller named it
    base_model: str
    parent_artifact: str | None  # the adapter (local) or model id (upstream) a ft: model continues from
    training_file: Path
    training_file_id: str
    training_filename: str
    validation_file: Path | None
    validation_file_id: str | None
    validation_filename: str | None
    method: Literal["supervised", "dpo"]
    hyperparameters: dict[str, Any]  # n_epochs / batch_size / learning_rate_multiplier / beta: int|float|"auto"
    seed: int
    suffix: str | None
    work_dir: Path  # on the shared data folder: survives this worker
    classification: Classification = field(default_factory=Classification)
    provider_state: dict[str, Any] | None = None  # what run() saved last time, for a resumed job


@dataclass(frozen=True)
class StepMetrics:
    step: int
    total_steps: int | None
    train_loss: float
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    elapsed_tokens: int | None = None
    elapsed_examples: int | None = None
    estimated_finish_seconds: float | None = None

    def data(self) -> dict[str, Any]:
        """The event's ``data``: OpenAI's metric names, unset ones left out."""
        keys = (
            "step",
            "total_steps",
            "train_loss",
            "train_mean_token_accuracy",
            "valid_loss",
            "valid_mean_token_accuracy",
            "full_valid_loss",
            "full_valid_mean_token_accuracy",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class CheckpointReport:
    step: int
    metrics: dict[str, float]
    artifact: str  # local: adapter folder relative to the data dir; upstream: the provider's checkpoint model


@dataclass(frozen=True)
class RunOutcome:
    status: Literal["succeeded", "failed", "paused", "cancelled", "interrupted"]
    artifact: str | None = None  # the fine-tuned adapter / upstream model on success
    trained_tokens: int | None = None
    results_csv: Path | None = None
    hyperparameters: dict[str, Any] | None = None  # resolved values ("auto" replaced)
    error_code: str | None = None
    error_message: str | None = None
    error_param: str | None = None


class JobContext(Protocol):
    """The worker's side of a running job."""

    async def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None: ...

    async def metrics(self, metrics: StepMetrics) -> None: ...

    async def checkpoint(self, checkpoint: CheckpointReport) -> None: ...

    async def save_state(self, state: dict[str, Any]) -> None:
        """Persist provider state (an upstream job id …) so a resumed run can pick it up."""
        ...

    async def resolved_hyperparameters(self, values: dict[str, Any]) -> None: ...

    def stop_requested(self) -> StopReason | None: ...


@dataclass(frozen=True)
class ModelAddress:
    """Where a model's weights are, for whichever backend serves it."""

    adapter: Path | None = None  # a LoRA adapter folder on the data folder (models trained here)
    remote_id: str | None = None  # the provider's own model id (models that live upstream)


@dataclass(frozen=True)
class BaseModelInfo:
    id: str
    owned_by: str
    context_length: int | None = None


class TrainingProvider(ABC):
    """A place where fine-tunes run: this machine's CPU/GPU (local) or an OpenAI-compatible service (upstream)."""

    name: str

    @abstractmethod
    def base_models(self) -> list[BaseModelInfo]:
        """The base models this provider can fine-tune."""

    @abstractmethod
    def supports(self, method: str, dataset_format: str) -> bool:
        """Whether a file of ``dataset_format`` (chat, prompt_completion, preference) trains with ``method``."""

    @abstractmethod
    def address(self, base_model: str, artifact: str | None) -> ModelAddress:
        """Where ``base_model`` (``artifact`` None) or a model trained from it (its run's artifact) is served from."""

    @abstractmethod
    async def run(self, job: JobRun, ctx: JobContext) -> RunOutcome:
        """Train (or resume) ``job`` until it ends, pauses, or ``ctx.stop_requested()`` says to stop."""
