"""Data order and packing: which examples form each step, and how they become one padding-free forward pass.

A batch's sequences are laid end to end in a single row. Positions restart at 0 for each sequence and the
attention (see :mod:`._modeling`) runs per sequence, so an example never sees another's tokens
and no compute is spent on padding. Only the positions whose next token is trained go through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.providers.local.training._data import IGNORE, TokenSequence


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """Several sequences as one row. ``keep[j]`` is a position whose logits predict ``targets[j]``, a trained
    token of sequence ``owner[j]``."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_length: int
    keep: torch.Tensor
    targets: torch.Tensor
    owner: torch.Tensor
    n_sequences: int
    n_tokens: int

    def to(self, device: torch.device) -> PackedBatch:
        if device.type == "cpu":
            return self
        return PackedBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.cu_seqlens.to(device),
            self.max_length,
            self.keep.to(device),
            self.targets.to(device),
            self.owner.to(device),
            self.n_sequences,
            self.n_tokens,
        )


def pack(sequences: Sequence[TokenSequence]) -> PackedBatch:
    """Lay ``sequences`` end to end; targets are shifted by one (position ``i`` predicts token ``i + 1``)."""
    ids: list[int] = []
    positions: list[int] = []
    bounds = [0]
    keep: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for index, seq in enumerate(sequences):
        offset = len(ids)
        ids.extend(seq.input_ids)
        positions.extend(range(len(seq.input_ids)))
        bounds.append(len(ids))
        for i in range(1, len(seq.labels)):
            label = seq.labels[i]
            if label != IGNORE:
                keep.append(offset + i - 1)
                targets.append(label)
                owner.append(index)
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        cu_seqlens=torch.tensor(bounds, dtype=torch.int32),
        max_length=max((len(s.input_ids) for s in sequences), default=0),
        keep=torch.tensor(keep, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        owner=torch.tensor(owner, dtype=torch.long),
        n_sequences=len(sequences),
        n_tokens=len(ids),
    )


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of ``epoch`` (1-based): a function of seed and epoch only, so a resumed run
    replays exactly the batches the interrupted one would have seen."""
    rng = np.random.default_rng([seed, epoch])
    return [int(i) for i in rng.permutation(n_examples)]


def epoch_batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The example indices of each step of ``epoch``; the last batch may be short."""
    order = epoch_order(n_examples, seed, epoch)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def chunk_by_tokens(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Split item indices, in order, into runs of at most ``budget`` tokens (an item longer than that runs alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, length in enumerate(lengths):
        if current and used + length > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        chunks.append(current)
    return chunks
