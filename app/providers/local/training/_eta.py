"""How long a run still takes: the time per optimizer step measured so far, plus the epoch-end work still ahead.

A run's wall time is its steps, a validation pass and a checkpoint at each epoch end, and the final adapter save.
Each part is timed as it happens; until a part has happened once, a prior stands in for it: validation is a
forward pass over the validation tokens (about a quarter of a training step's cost per token: no backward pass,
no optimizer), a checkpoint writes the adapter about four times over (checkpoint adapter, the state's adapter,
optimizer moments x2), timed once at start-up by :meth:`FinishEstimate.time_adapter_save`. The first step is left
out of the step mean once there are others: it pays for lazy allocations and warms the caches. The warm-up lasts
a little longer in a gateway (measured: step 2 ~1.4x the steady step, the parent process busy recording the run's
first events), so the mean weighs later steps more: step k of the samples weighs k. (A mean over only the newer
steps tracks a machine whose load changes sooner, but on shared cores it swung the estimate by more than the 20%
it is meant to hold.)
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

FORWARD_SHARE = 0.25
CHECKPOINT_ADAPTER_WRITES = 4


class FinishEstimate:
    def __init__(self, total_steps: int, steps_per_epoch: int, valid_tokens: int) -> None:
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.valid_tokens = valid_tokens
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self.validation_seconds: list[float] = []
        self.checkpoint_seconds: list[float] = []
        self.adapter_save_seconds = 0.0

    def time_adapter_save(self, model: Any, output_dir: Path) -> None:
        """One throw-away adapter save: the prior for checkpoints and for the final save."""
        folder = output_dir / f".eta-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        try:
            model.save_pretrained(str(folder))
        finally:
            self.adapter_save_seconds = time.monotonic() - started
            shutil.rmtree(folder, ignore_errors=True)

    def step_done(self, seconds: float, n_tokens: int) -> None:
        self.step_seconds.append(seconds)
        self.step_tokens.append(n_tokens)

    def step_bookkeeping(self, seconds: float) -> None:
        """Time the last step spent outside its compute (reporting, results.csv): part of the step's cost."""
        if self.step_seconds:
            self.step_seconds[-1] += seconds

    def validation_done(self, seconds: float) -> None:
        self.validation_seconds.append(seconds)

    def checkpoint_done(self, seconds: float) -> None:
        self.checkpoint_seconds.append(seconds)

    def _per_step(self) -> float:
        samples = self.step_seconds[1:] if len(self.step_seconds) > 1 else self.step_seconds
        # Step k of the samples weighs k: the warm-up fades out of the estimate without a window's swings.
        weights = range(1, len(samples) + 1)
        return sum(w * s for w, s in zip(weights, samples, strict=True)) / max(1, sum(weights))

    def _validation(self) -> float:
        if not self.valid_tokens:
            return 0.0
        if self.validation_seconds:
            return sum(self.validation_seconds) / len(self.validation_seconds)
        tokens_per_step = sum(self.step_tokens) / max(1, len(self.step_tokens))
        return self._per_step() * FORWARD_SHARE * self.valid_tokens / max(1.0, tokens_per_step)

    def _checkpoint(self) -> float:
        if self.checkpoint_seconds:
            return sum(self.checkpoint_seconds) / len(self.checkpoint_seconds)
        return CHECKPOINT_ADAPTER_WRITES * self.adapter_save_seconds

    def remaining_seconds(self, step: int, *, checkpoint_pending: bool) -> float:
        """Seconds until the run ends, reported after step ``step`` (and its validation, if it ended an epoch);
        ``checkpoint_pending``: that step's checkpoint is still to be written."""
        # total_steps is a whole number of epochs, so every epoch end is a multiple of steps_per_epoch.
        epoch_ends_ahead = self.total_steps // self.steps_per_epoch - step // self.steps_per_epoch
        checkpoints = epoch_ends_ahead + (1 if checkpoint_pending else 0)
        return (
            self._per_step() * (self.total_steps - step)
            + self._validation() * epoch_ends_ahead
            + self._checkpoint() * checkpoints
            + self.adapter_save_seconds
        )
