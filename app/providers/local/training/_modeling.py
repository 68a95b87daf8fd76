"""The model side of training: loading base + LoRA, packed attention, and scoring trained tokens.

Packed rows hold several sequences; ``packed_attention`` (registered with transformers as ``ftgw_packed``) runs
causal attention on each sequence's slice separately. A block-diagonal mask over the whole row would be exact
too, but costs attention over the whole row squared (measured: a fifth of a step for 8 examples of ~70
tokens), while per-slice attention costs only the sequences' own squares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.providers.local.hf import LOADING, load_causal_lm, quiet_peft
from app.providers.local.training._batching import PackedBatch
from app.providers.local.training._spec import LoraSettings, Precision

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PACKED_ATTENTION = "ftgw_packed"


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per packed sequence (``cu_seq_lens_q`` bounds); one plain causal sequence without them.

    Shapes follow transformers: query ``[1, heads, T, d]``, key/value ``[1, kv_heads, T, d]``; returns
    ``[1, T, heads, d]``. Padding masks are not supported: this model only ever sees packed, unpadded rows.
    """
    if attention_mask is not None:
        raise ValueError("packed attention takes unpadded rows; pass cu_seq_lens_q instead of an attention mask")
    gqa = query.shape[1] != key.shape[1]
    bounds = kwargs.get("cu_seq_lens_q")
    edges: list[int] = [0, query.shape[2]] if bounds is None else [int(b) for b in bounds.tolist()]
    if query.shape[0] != 1 and len(edges) > 2:
        raise ValueError("packed rows have batch size 1")
    outputs = [
        F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout if module.training else 0.0,
            is_causal=end - start > 1,
            scale=scaling,
            enable_gqa=gqa,
        )
        for start, end in pairwise(edges)
        if end > start
    ]
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return out.transpose(1, 2).contiguous(), None


@cache
def register_packed_attention() -> None:
    """Make ``attn_implementation="ftgw_packed"`` known to transformers (once per process)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """The frozen base weights' dtype. ``auto`` is bfloat16 where the hardware multiplies it natively (CUDA with
    bf16, CPUs with AVX512-BF16/AMX: ~2.5x the float32 matmul rate), else float32. Adapters stay float32."""
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


def load_base(base_path: Path, dtype: torch.dtype, device: torch.device) -> Any:
    """The base causal LM from a local folder (never the network), with packed attention for training."""
    with LOADING:  # transformers' lazy module is not thread-safe: see app.providers.local.hf
        register_packed_attention()
    return load_causal_lm(base_path, dtype, device, attention=PACKED_ATTENTION)


def load_for_training(
    base_path: Path,
    *,
    lora: LoraSettings,
    parent_adapter: Path | None,
    dtype: torch.dtype,
    device: torch.device,
    seed: int,
) -> Any:
    """Base + a trainable LoRA adapter: the parent's (continuing a fine-tuned model) or a new one."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_base(base_path, dtype, device)
    for param in base.parameters():
        param.requires_grad_(False)
    if parent_adapter is not None:
        with quiet_peft():
            model = PeftModel.from_pretrained(base, str(parent_adapter), is_trainable=True)
        # PEFT keeps adapter weights in float32 when created, but loads them in the base's dtype.
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        return model
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    # The adapter's random init (lora_A) comes from the seed, so a run is reproducible from its first step.
    torch.manual_seed(seed)
    with quiet_peft():
        return get_peft_model(model=base, peft_config=config)


@dataclass(frozen=True, slots=True)
class TokenScores:
    """Per trained token of a packed batch: its log-probability and whether it was the argmax."""

    logprobs: torch.Tensor
    correct: torch.Tensor


def score_tokens(model: Any, batch: PackedBatch) -> TokenScores:
    """One forward pass over a packed row; logits only at the trained positions (the LM head is a fifth of a
    small model's FLOPs, and most positions of a prompt-completion example are prompt)."""
    outputs = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        cu_seq_lens_q=batch.cu_seqlens,
        cu_seq_lens_k=batch.cu_seqlens,
        max_length_q=batch.max_length,
        max_length_k=batch.max_length,
        logits_to_keep=batch.keep,
        use_cache=False,
    )
    logits = outputs.logits[0].float()
    logprobs = -F.cross_entropy(logits, batch.targets, reduction="none")
    correct = logits.argmax(dim=-1) == batch.targets
    return TokenScores(logprobs, correct)


def per_sequence(values: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """Sum ``values`` (one per trained token) over each sequence of the batch."""
    out = torch.zeros(batch.n_sequences, dtype=values.dtype, device=values.device)
    return out.index_add(0, batch.owner, values)
