"""What a local training run is told (:class:`TrainSpec`) and what it tells back: metrics, checkpoints, outcome.

:class:`TrainSpec` is a frozen pydantic model so the worker can hand it to a child process as JSON
(``spec.model_dump_json()`` / ``TrainSpec.model_validate_json``). :class:`Reporter` and :class:`Control` are the
two seams between the training loop and whoever runs it (the worker's child process, a test, the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]
Method = Literal["supervised", "dpo"]
Precision = Literal["auto", "float32", "bfloat16"]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoraSettings(_Frozen):
    """The adapter's shape (defaults: the ``auto`` choice, see :mod:`._hyperparams`). Ignored when
    continuing from a parent adapter: its own config is kept."""

    rank: int = Field(default=16, ge=1, le=256)
    alpha: int = Field(default=32, ge=1)
    # 0 by default: dropout costs a copy of every adapted activation and rarely helps on small LoRA runs.
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS


class Hyperparameters(_Frozen):
    """OpenAI's hyperparameters (each may be ``"auto"``) plus the local trainer's own knobs."""

    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"
    beta: float | Auto = "auto"
    lora: LoraSettings = LoraSettings()
    warmup_ratio: float = Field(default=0.03, ge=0.0, le=0.5)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float | None = 1.0


class ClassificationSettings(_Frozen):
    """OpenAI's legacy classification options: metrics on the validation file after each epoch."""

    compute_classification_metrics: bool = False
    classification_n_classes: int | None = Field(default=None, ge=2)
    classification_positive_class: str | None = None


class TrainSpec(_Frozen):
    """Everything one run needs; ``output_dir`` is its only state, so the same spec resumes the same run."""

    base_model: str
    base_path: Path
    training_file: Path
    output_dir: Path
    validation_file: Path | None = None
    parent_adapter: Path | None = None
    method: Method = "supervised"
    hyperparameters: Hyperparameters = Hyperparameters()
    classification: ClassificationSettings = ClassificationSettings()
    seed: int = 42
    max_tokens_per_example: int | None = Field(
        default=None, ge=8, description="Longer examples are truncated; None means the model's context length."
    )
    # Tokens per forward pass; a larger batch is split into several passes with the same summed loss.
    max_tokens_per_forward: int = Field(default=4096, ge=64)
    # A kill loses at most this much work: the state is also saved mid-epoch this often (None: only at pauses).
    state_interval_seconds: float | None = Field(default=600.0, gt=0)
    precision: Precision = "auto"
    num_threads: int | None = Field(default=None, ge=1, description="torch threads; None means the usable cores.")


@dataclass(frozen=True, slots=True)
class StepMetrics:
    """One optimizer step. ``valid_*`` are set on the steps validation ran (each epoch end)."""

    step: int
    total_steps: int
    epoch: int
    train_loss: float
    train_mean_token_accuracy: float
    train_sequence_accuracy: float
    elapsed_tokens: int
    elapsed_examples: int
    learning_rate: float
    estimated_finish_seconds: float
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    valid_sequence_accuracy: float | None = None
    # Method-specific numbers, e.g. DPO's reward margin and preference accuracy.
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValidationMetrics:
    """The whole validation file scored at ``step``; ``classification`` keys are results.csv column names."""

    step: int
    loss: float
    token_accuracy: float
    sequence_accuracy: float
    classification: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """An epoch's checkpoint: ``path`` is a PEFT adapter folder (load it on the base model to use it)."""

    step: int
    epoch: int
    path: Path
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """How :func:`~app.providers.local.training._trainer.train` returned.

    ``trained_tokens`` counts every token of every example once per epoch trained so far (prompt and completion,
    both sides of a DPO pair), which is how OpenAI bills ``trained_tokens``.
    """

    status: Literal["succeeded", "paused"]
    step: int
    total_steps: int
    trained_tokens: int
    results_csv: Path
    adapter_path: Path | None
    checkpoints: list[CheckpointInfo]
    final_metrics: dict[str, float]


class Reporter(Protocol):
    """Receives progress from the training loop, in the loop's thread; keep the calls quick.

    Message levels are OpenAI's event levels: ``info``, ``warn``, ``error``.
    """

    def on_step(self, m: StepMetrics) -> None: ...

    def on_validation(self, m: ValidationMetrics) -> None: ...

    def on_checkpoint(self, c: CheckpointInfo) -> None: ...

    def on_message(self, level: str, message: str) -> None: ...


class Control(Protocol):
    """Asked between optimizer steps; cancelling needs no cooperation (the caller kills the process)."""

    def should_pause(self) -> bool: ...


class NullReporter:
    """A :class:`Reporter` that drops everything (scripts, the benchmark)."""

    def on_step(self, m: StepMetrics) -> None:
        pass

    def on_validation(self, m: ValidationMetrics) -> None:
        pass

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        pass

    def on_message(self, level: str, message: str) -> None:
        pass
