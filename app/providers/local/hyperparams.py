"""Turning ``"auto"`` hyperparameters into numbers, from the training file's size, the way OpenAI describes it.

The rules (each applies only where the spec says ``"auto"``):

* ``n_epochs``: OpenAI's rule, shared with the dataset report (:func:`app.datasets.hyperparams.auto_epochs`):
  3, raised or lowered so that examples x epochs lands in [100, 25000], within [1, 25].
* ``batch_size``: about 0.2% of the examples, as OpenAI does, but clamped to [1, 8] because the local trainer
  runs on CPU cores where a larger batch only makes each step slower without using more hardware.
* ``learning_rate_multiplier``: 2.0 on a base learning rate of 2e-4, i.e. 4e-4, a usual LoRA rate for models of
  SmolLM2's size. OpenAI's multipliers (0.05-0.2) are relative to full fine-tuning rates and do not transfer.
  A tiny randomly initialised test model needs far more (tests pass a multiplier of 25-50 explicitly).
* ``beta`` (DPO): 0.1, the value of the DPO paper and OpenAI's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.datasets.hyperparams import auto_epochs
from app.providers.local.spec import LoraSettings, TrainSpec

BASE_LEARNING_RATE = 2e-4
AUTO_LEARNING_RATE_MULTIPLIER = 2.0
AUTO_BETA = 0.1
BATCH_FRACTION = 0.002
MAX_AUTO_BATCH_SIZE = 8


@dataclass(frozen=True, slots=True)
class ResolvedHyperparameters:
    """Numbers only: what the run actually uses, and what the job reports back as its hyperparameters."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    beta: float
    lora: LoraSettings
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float | None


def auto_batch_size(n_examples: int) -> int:
    """About 0.2% of the examples, within [1, 8]."""
    return max(1, min(MAX_AUTO_BATCH_SIZE, round(n_examples * BATCH_FRACTION)))


def resolve_hyperparameters(spec: TrainSpec, n_examples: int) -> ResolvedHyperparameters:
    """The spec's hyperparameters with every ``"auto"`` replaced (see the module docstring for the rules)."""
    hp = spec.hyperparameters
    n_epochs = auto_epochs(n_examples) if hp.n_epochs == "auto" else int(hp.n_epochs)
    batch_size = auto_batch_size(n_examples) if hp.batch_size == "auto" else int(hp.batch_size)
    multiplier = (
        AUTO_LEARNING_RATE_MULTIPLIER if hp.learning_rate_multiplier == "auto" else float(hp.learning_rate_multiplier)
    )
    beta = AUTO_BETA if hp.beta == "auto" else float(hp.beta)
    if n_epochs < 1 or batch_size < 1 or multiplier <= 0 or not math.isfinite(multiplier) or beta <= 0:
        raise ValueError("n_epochs and batch_size must be >= 1, learning_rate_multiplier and beta > 0")
    return ResolvedHyperparameters(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=multiplier,
        learning_rate=BASE_LEARNING_RATE * multiplier,
        beta=beta,
        lora=hp.lora,
        warmup_ratio=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
    )


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the last batch may be short, never dropped."""
    return max(1, math.ceil(n_examples / batch_size))


def lr_factor(step_index: int, total_steps: int, warmup_ratio: float) -> float:
    """The learning rate's multiplier before optimizer step ``step_index`` (0-based): linear warm-up, then a
    linear decay to 10% of the peak, so the last steps of a short run still learn."""
    warmup = int(total_steps * warmup_ratio)
    if step_index < warmup:
        return (step_index + 1) / (warmup + 1)
    remaining = (total_steps - step_index) / max(1, total_steps - warmup)
    return max(0.1, remaining)
