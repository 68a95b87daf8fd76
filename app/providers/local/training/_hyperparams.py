"""Turning ``"auto"`` hyperparameters into numbers for the local trainer: fast on the machine that trains, and
enough learning in the few optimizer steps a small dataset gives.

OpenAI's ``auto`` batch (about 0.2% of the examples) makes every dataset under 750 examples train at batch size 1.
On a CPU that is the slowest way to train: a step over one short example spends most of its time on per-step
overhead (optimizer, thread hand-offs, Python), and on cores shared with other work each of those hand-offs waits
for a busy core. Measured on 2 shared cores (SmolLM2-135M, 48 sentiment examples of ~25 tokens, one epoch):
batch 1 trained 0.14 examples/s, batch 4 0.69, batch 16 0.76, batch 48 0.96. So the local rules are (each applies
only where the spec says ``"auto"``; an explicit value is used exactly as given):

* ``n_epochs``: OpenAI's rule, shared with the dataset report (:func:`app.datasets.hyperparams.auto_epochs`):
  3, raised or lowered so that examples x epochs lands in [100, 25000], within [1, 25].
* ``batch_size``: a **token budget** per optimizer step, which packing (:mod:`._batching`)
  turns into full forward passes without padding: :data:`CPU_TOKENS_PER_CORE` per usable core on a CPU (1024 on
  two cores), :data:`GPU_TOKENS_PER_STEP` on a GPU, divided by the training file's mean example length. Then
  capped so the run still takes at least :data:`MIN_OPTIMIZER_STEPS` optimizer steps: a tiny dataset would
  otherwise train in 2-3 giant steps and learn nothing. Within [1, :data:`MAX_AUTO_BATCH_SIZE`] and never more
  than the examples. (40 examples of ~25 tokens x 2 epochs: batch 2, 40 steps; 250 x 3: batch 25, 30 steps.)
  30, not 20: on the learning-quality benchmark's 5-way triage (100 examples, 3 epochs) 20 steps reached 0.78
  held-out accuracy and 30 steps 0.92, for ~10% more wall time; binary sentiment stayed at 0.97-1.0.
* ``learning_rate_multiplier``: 5.0 on a base rate of 2e-4, i.e. 1e-3. With ~30 optimizer steps, 4e-4 (the old
  rule, a usual rate for LoRA runs of thousands of steps) leaves SmolLM2 half-way to the answer format; 1e-3 with
  the wider adapter below learns a label format in ~10 steps and stays stable at batch 1 to 64 (Adam normalises the
  step size, so the rate need not scale with the batch). OpenAI's multipliers (0.05-0.2) are relative to full
  fine-tuning rates and do not transfer. 2e-3 lifted the triage task to 0.90 but dropped sentiment to 0.92.
  A tiny randomly initialised test model needs far more (tests pass 25-50 explicitly).
* ``beta`` (DPO): 0.1, the value of the DPO paper and OpenAI's default.
* LoRA (:class:`~app.providers.local.training._spec.LoraSettings` defaults): rank 16, alpha 32 on all seven projections,
  attention and MLP. Adapting the MLP too roughly doubles what a few steps can change (the MLP holds most of a
  layer's weights) for ~10% more step time; the engine serves such adapters natively.
* warm-up: 3% of the steps (none on a 20-step run), then a linear decay to 10% of the peak.

The provider resolves these in the worker before the run starts and hands the child trainer the numbers, so the
job reports what was used, and a resumed run (perhaps on another machine) trains with the same values.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from app.datasets.hyperparams import auto_epochs
from app.providers.local.training._spec import LoraSettings, TrainSpec

BASE_LEARNING_RATE = 2e-4
AUTO_LEARNING_RATE_MULTIPLIER = 5.0
AUTO_BETA = 0.1
CPU_TOKENS_PER_CORE = 512
MAX_CPU_TOKENS_PER_STEP = 4096
GPU_TOKENS_PER_STEP = 16384
MIN_OPTIMIZER_STEPS = 30
MAX_AUTO_BATCH_SIZE = 64
# Used when the caller does not know the examples' lengths: a short prompt-completion example.
DEFAULT_MEAN_TOKENS = 64.0

DeviceKind = Literal["cpu", "cuda"]


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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tokens_per_step(device: DeviceKind, cores: int | None = None) -> int:
    """The token budget of one optimizer step on this kind of device."""
    if device == "cuda":
        return GPU_TOKENS_PER_STEP
    return min(MAX_CPU_TOKENS_PER_STEP, CPU_TOKENS_PER_CORE * max(1, cores or usable_cores()))


def auto_batch_size(n_examples: int, n_epochs: int, mean_tokens: float, budget: int) -> int:
    """Examples per step: the token ``budget`` over the mean example length, capped so the run takes at least
    :data:`MIN_OPTIMIZER_STEPS` steps, within [1, :data:`MAX_AUTO_BATCH_SIZE`] and at most ``n_examples``."""
    by_tokens = math.floor(budget / max(1.0, mean_tokens))
    by_steps = math.floor(n_examples * n_epochs / MIN_OPTIMIZER_STEPS)
    return max(1, min(by_tokens, by_steps, n_examples, MAX_AUTO_BATCH_SIZE))


def resolve_hyperparameters(
    spec: TrainSpec,
    n_examples: int,
    mean_tokens: float | None = None,
    *,
    device: DeviceKind = "cpu",
    cores: int | None = None,
) -> ResolvedHyperparameters:
    """The spec's hyperparameters with every ``"auto"`` replaced (see the module docstring for the rules).

    ``mean_tokens`` is the training examples' mean length in tokens (a DPO pair counts both answers)."""
    hp = spec.hyperparameters
    n_epochs = auto_epochs(n_examples) if hp.n_epochs == "auto" else int(hp.n_epochs)
    if hp.batch_size == "auto":
        mean = DEFAULT_MEAN_TOKENS if mean_tokens is None else mean_tokens
        batch_size = auto_batch_size(n_examples, max(1, n_epochs), mean, tokens_per_step(device, cores))
    else:
        batch_size = int(hp.batch_size)
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
