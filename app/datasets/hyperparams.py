"""OpenAI's ``auto`` epoch rule and the trained-token estimate, as in its chat data-prep cookbook."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.datasets.schemas import Hyperparameters

# The cookbook's default cap when the model's own example limit is unknown.
DEFAULT_MAX_TOKENS_PER_EXAMPLE = 16_385
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def auto_epochs(n_examples: int) -> int:
    """Epochs ``auto`` picks: 3, raised or lowered so examples x epochs lands in [100, 25000], within [1, 25]."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def estimate(
    token_counts: Sequence[int] | npt.NDArray[np.uint32], *, max_tokens_per_example: int | None
) -> Hyperparameters:
    """Epochs and trained tokens for examples of these lengths (each one capped at the example limit)."""
    cap = max_tokens_per_example or DEFAULT_MAX_TOKENS_PER_EXAMPLE
    counts = np.asarray(token_counts, dtype=np.uint64)
    billing = int(np.minimum(counts, cap).sum())
    epochs = auto_epochs(len(counts))
    return Hyperparameters(
        n_epochs=epochs,
        billing_tokens_per_epoch=billing,
        estimated_trained_tokens=billing * epochs,
        max_tokens_per_example=cap,
    )
