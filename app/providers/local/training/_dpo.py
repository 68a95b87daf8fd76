"""Direct Preference Optimization: the loss on preference pairs against a frozen reference model.

``loss = -log sigmoid(beta * ((log p(chosen) - log ref(chosen)) - (log p(rejected) - log ref(rejected))))``,
with log-probabilities summed over each answer's tokens (Rafailov et al., 2023).

The reference never changes during a run, so its log-probabilities are computed once, before the first step,
and stored in ``output_dir`` (a resumed run reads them back). The reference is the model being fine-tuned as
it starts: the base with the adapter disabled, or base + parent adapter when continuing a fine-tuned model.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.providers.local.training._batching import chunk_by_tokens, pack
from app.providers.local.training._data import PreferencePair, TokenSequence
from app.providers.local.training._metrics import sequence_logprobs
from app.providers.local.training._modeling import per_sequence, score_tokens
from app.providers.local.training._state import atomic_dir


@dataclass(frozen=True, slots=True)
class DpoStats:
    """A batch's DPO loss and what explains it; token accuracy is over the preferred answers' tokens."""

    loss: float
    token_accuracy: float
    sequence_accuracy: float
    reward_accuracy: float
    reward_margin: float
    n_tokens: int


def _interleave(pairs: Sequence[PreferencePair]) -> list[TokenSequence]:
    return [seq for pair in pairs for seq in pair.sequences()]


def reference_logprobs(
    model: Any, pairs: Sequence[PreferencePair], budget: int, *, adapter_is_reference: bool
) -> torch.Tensor:
    """``[n, 2]``: the reference's summed log-prob of each pair's preferred and non-preferred answer."""
    model.eval()
    context = nullcontext() if adapter_is_reference else model.disable_adapter()
    with context:
        totals, _, _, _ = sequence_logprobs(model, _interleave(pairs), budget)
    return totals.view(len(pairs), 2)


def cached_reference(
    path: Path, model: Any, pairs: Sequence[PreferencePair], budget: int, *, adapter_is_reference: bool
) -> torch.Tensor:
    """The reference log-probs stored at ``path`` (a folder), computing and storing them the first time."""
    stored = path / "logprobs.pt"
    if stored.is_file():
        loaded: torch.Tensor = torch.load(stored, weights_only=True)
        if loaded.shape == (len(pairs), 2):
            return loaded
    values = reference_logprobs(model, pairs, budget, adapter_is_reference=adapter_is_reference)
    with atomic_dir(path) as tmp:
        torch.save(values, tmp / "logprobs.pt")
    return values


def _losses(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    ratios = policy - reference
    margins = beta * (ratios[:, 0] - ratios[:, 1])
    return -F.logsigmoid(margins), margins


def dpo_step(
    model: Any, pairs: Sequence[PreferencePair], reference: torch.Tensor, beta: float, budget: int
) -> DpoStats:
    """Forward and backward over a batch of pairs (split into passes of at most ``budget`` tokens); the
    gradients add up to those of the batch's mean loss."""
    n_pairs = len(pairs)
    losses: list[float] = []
    margins: list[float] = []
    hits = 0.0
    chosen_tokens = 0.0
    exact = 0.0
    n_tokens = 0
    for chunk in chunk_by_tokens([p.n_tokens for p in pairs], budget):
        batch = pack(_interleave([pairs[i] for i in chunk]))
        scores = score_tokens(model, batch)
        policy = per_sequence(scores.logprobs, batch).view(len(chunk), 2)
        loss, margin = _losses(policy, reference[chunk].to(policy.device), beta)
        (loss.sum() / n_pairs).backward()  # type: ignore[no-untyped-call]
        right = per_sequence(scores.correct.float(), batch).view(len(chunk), 2)[:, 0]
        count = per_sequence(torch.ones_like(scores.logprobs), batch).view(len(chunk), 2)[:, 0]
        hits += float(right.sum())
        chosen_tokens += float(count.sum())
        exact += float((right == count).float().sum())
        losses.extend(loss.detach().cpu().tolist())
        margins.extend(margin.detach().cpu().tolist())
        n_tokens += batch.n_tokens
    return DpoStats(
        loss=sum(losses) / n_pairs,
        token_accuracy=hits / max(1.0, chosen_tokens),
        sequence_accuracy=exact / n_pairs,
        reward_accuracy=sum(1.0 for m in margins if m > 0) / n_pairs,
        reward_margin=sum(margins) / n_pairs,
        n_tokens=n_tokens,
    )


def dpo_validation(
    model: Any, pairs: Sequence[PreferencePair], reference: torch.Tensor, beta: float, budget: int
) -> DpoStats:
    """The DPO loss and accuracies over a whole validation file, without gradients."""
    totals, counts, hits, exact = sequence_logprobs(model, _interleave(pairs), budget)
    policy = totals.view(len(pairs), 2)
    loss, margin = _losses(policy, reference, beta)
    chosen = slice(0, None, 2)
    return DpoStats(
        loss=float(loss.mean()),
        token_accuracy=float(hits[chosen].sum() / counts[chosen].sum()),
        sequence_accuracy=float(exact[chosen].float().mean()),
        reward_accuracy=float((margin > 0).float().mean()),
        reward_margin=float(margin.mean()),
        n_tokens=sum(p.n_tokens for p in pairs),
    )
