"""Validation numbers: loss and accuracies over a whole file, and OpenAI's legacy classification metrics.

Classification treats the distinct answers (completions, or last trained assistant messages) of the training
and validation files as the classes. Each validation prompt is scored against every class by the summed
log-probability of the class's tokens after the prompt; the prediction is the argmax, and class probabilities
are the softmax of those scores (the binary metrics' ROC/PR curves use the positive class's probability).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.providers.local.training._batching import chunk_by_tokens, pack
from app.providers.local.training._data import IGNORE, TokenSequence
from app.providers.local.training._modeling import per_sequence, score_tokens


@dataclass(frozen=True, slots=True)
class LossSummary:
    """Mean loss per trained token, the share of trained tokens predicted exactly, and of whole answers."""

    loss: float
    token_accuracy: float
    sequence_accuracy: float


def sequence_logprobs(
    model: Any, sequences: Sequence[TokenSequence], budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Without gradients: per sequence, the summed log-prob of its trained tokens, their count, how many were
    the argmax, and whether all were."""
    totals: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    hits: list[torch.Tensor] = []
    exact: list[torch.Tensor] = []
    with torch.no_grad():
        for chunk in chunk_by_tokens([len(s.input_ids) for s in sequences], budget):
            batch = pack([sequences[i] for i in chunk])
            scores = score_tokens(model, batch)
            ones = torch.ones_like(scores.logprobs)
            right = scores.correct.to(scores.logprobs.dtype)
            n = per_sequence(ones, batch)
            h = per_sequence(right, batch)
            totals.append(per_sequence(scores.logprobs, batch).cpu())
            counts.append(n.cpu())
            hits.append(h.cpu())
            exact.append((h == n).cpu())
    return torch.cat(totals), torch.cat(counts), torch.cat(hits), torch.cat(exact)


def summarize(model: Any, sequences: Sequence[TokenSequence], budget: int) -> LossSummary:
    """Loss and accuracies over every trained token of ``sequences``."""
    totals, counts, hits, exact = sequence_logprobs(model, sequences, budget)
    n = float(counts.sum())
    return LossSummary(
        loss=float(-totals.sum() / n),
        token_accuracy=float(hits.sum() / n),
        sequence_accuracy=float(exact.float().mean()),
    )


def classification_mode(positive_class: str | None) -> str:
    """``binary`` when a positive class is named (as OpenAI's legacy API did), else ``multiclass``."""
    return "binary" if positive_class is not None else "multiclass"


def classify(
    model: Any,
    examples: Sequence[TokenSequence],
    classes: Sequence[str],
    encode: Callable[[str], list[int]],
    budget: int,
) -> tuple[list[int], np.ndarray[Any, np.dtype[np.float64]]]:
    """Predicted class index and class probabilities (rows sum to 1) for each example's prompt."""
    class_ids = [encode(c) for c in classes]
    candidates: list[TokenSequence] = []
    for example in examples:
        prompt = example.input_ids[: example.prompt_length]
        for ids in class_ids:
            candidates.append(TokenSequence(prompt + ids, [IGNORE] * len(prompt) + ids))
    totals, _, _, _ = sequence_logprobs(model, candidates, budget)
    scores = totals.double().view(len(examples), len(classes))
    probs = torch.softmax(scores, dim=1).numpy()
    return [int(i) for i in scores.argmax(dim=1)], probs


def binary_metrics(
    truth: Sequence[bool], predicted: Sequence[bool], positive_prob: Sequence[float]
) -> dict[str, float]:
    """OpenAI's binary columns; AUROC/AUPRC are NaN when the validation file has a single class."""
    from sklearn.metrics import (  # type: ignore[import-untyped]
        accuracy_score,
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    both = len(set(truth)) == 2
    return {
        "classification/accuracy": float(accuracy_score(truth, predicted)),
        "classification/precision": float(precision_score(truth, predicted, zero_division=0)),
        "classification/recall": float(recall_score(truth, predicted, zero_division=0)),
        "classification/auroc": float(roc_auc_score(truth, positive_prob)) if both else math.nan,
        "classification/auprc": float(average_precision_score(truth, positive_prob)) if both else math.nan,
        "classification/f1.0": float(f1_score(truth, predicted, zero_division=0)),
    }


def multiclass_metrics(truth: Sequence[int], predicted: Sequence[int]) -> dict[str, float]:
    """OpenAI's multiclass columns: accuracy and support-weighted F1."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "classification/accuracy": float(accuracy_score(truth, predicted)),
        "classification/weighted_f1_score": float(f1_score(truth, predicted, average="weighted", zero_division=0)),
    }


def classification_metrics(
    model: Any,
    examples: Sequence[TokenSequence],
    classes: Sequence[str],
    positive_class: str | None,
    encode: Callable[[str], list[int]],
    budget: int,
) -> dict[str, float]:
    """The classification columns for ``examples`` (validation sequences that carry a ``label``)."""
    labelled = [e for e in examples if e.label is not None]
    index = {c: i for i, c in enumerate(classes)}
    predicted, probs = classify(model, labelled, classes, encode, budget)
    truth = [index[str(e.label)] for e in labelled]
    if positive_class is None:
        return multiclass_metrics(truth, predicted)
    positive = index.get(positive_class, -1)
    positive_prob = [float(p[positive]) if positive >= 0 else 0.0 for p in probs]
    return binary_metrics([t == positive for t in truth], [p == positive for p in predicted], positive_prob)
