"""Pieces of the anchors' plain training loops, shared by the benchmarks that run one (the textbook way on purpose)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def right_padded(batch: Sequence[Any], pad: int) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, labels)`` of token sequences right-padded to the longest; labels -100 there."""
    import torch

    from app.providers.local.training._data import IGNORE

    width = max(len(s.input_ids) for s in batch)
    ids = torch.full((len(batch), width), pad)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE)
    for row, s in enumerate(batch):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(s.labels)
    return ids, mask, labels
