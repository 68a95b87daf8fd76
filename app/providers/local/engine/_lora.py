"""LoRA adapter folders (PEFT's ``save_pretrained`` layout) read as plain tensors for the engine's Llama path.

Only plain LoRA on the seven Llama projections is served this way: that is what the local trainer writes. An
adapter using anything else (DoRA, biases, embedding or head adapters, modules to save, trainable tokens, ...)
raises :class:`UnsupportedAdapter` instead of silently computing something different from PEFT.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_KEY = re.compile(r"^(?:.*\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
# Config switches that change what an adapter computes; each must be off for plain LoRA.
_VARIANTS = (
    "use_dora",
    "lora_bias",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
    "modules_to_save",
    "trainable_token_indices",
    "layer_replication",
    "target_parameters",
    "arrow_config",
    "kasa_config",
    "velora_config",
    "monteclora_config",
)


class UnsupportedAdapter(ValueError):
    """The adapter uses a PEFT feature the engine does not implement."""


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted projection: ``delta = (x @ a) @ b * scaling`` with ``a`` ``[in, r]`` and ``b`` ``[r, out]``."""

    a: torch.Tensor
    b: torch.Tensor
    scaling: float


# (layer index, projection name) -> its LoRA weights
LoraWeights = dict[tuple[int, str], LoraModule]


@dataclass(frozen=True, slots=True)
class FusedModule:
    """The LoRA of projections that share their input and whose outputs are concatenated (q|k|v, gate|up), as one
    pair of products: ``delta = (x @ a) @ b`` with the ranks side by side, ``a`` ``[in, r1 + r2 + ...]``, and ``b``
    ``[r1 + r2 + ..., out]`` block-diagonal, each projection's block scaled, zeros where a projection is not adapted."""

    a: torch.Tensor
    b: torch.Tensor


# (layer index, group name) -> the group's LoRA, for the groups the adapter adapts any projection of
FusedLora = dict[tuple[int, str], FusedModule]


def fuse(weights: LoraWeights, groups: dict[str, tuple[tuple[str, int], ...]], layers: int) -> FusedLora:
    """``weights`` by group of projections: ``groups`` maps a group's name to its projections and their output widths,
    in the order of the fused output. Two products per group instead of two per projection: a decode step or a
    prefill of a LoRA row ran ~28 small torch operations per layer, now ~8."""
    fused: FusedLora = {}
    for layer in range(layers):
        for group, parts in groups.items():
            present = [(name, weights[layer, name]) for name, _ in parts if (layer, name) in weights]
            if not present:
                continue
            width_of = dict(parts)
            for name, module in present:
                if module.b.shape[1] != width_of[name] or module.a.shape[0] != present[0][1].a.shape[0]:
                    raise UnsupportedAdapter(
                        f"layer {layer} {name}: the adapter's LoRA ({module.a.shape[0]} -> {module.b.shape[1]}) "
                        "does not fit this base model's projection; was it trained on another base model?"
                    )
            a = torch.cat([module.a for _, module in present], dim=1)
            b = a.new_zeros((a.shape[1], sum(width for _, width in parts)))
            rank_at = column = 0
            for name, width in parts:  # each adapted projection's block: its ranks' rows, its output's columns
                if (adapted := weights.get((layer, name))) is not None:
                    rank = adapted.a.shape[1]
                    b[rank_at : rank_at + rank, column : column + width] = adapted.b * adapted.scaling
                    rank_at += rank
                column += width
            fused[layer, group] = FusedModule(a.contiguous(), b)
    return fused


def load_lora(folder: Path, *, dtype: torch.dtype, device: torch.device) -> LoraWeights:
    """Read ``folder``'s adapter weights and scalings the way PEFT computes them (``rank_pattern``,
    ``alpha_pattern`` and rsLoRA included)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise UnsupportedAdapter(f"{folder.name}: a {config.get('peft_type')} adapter, not LoRA")
    used = [name for name in _VARIANTS if config.get(name)]
    if config.get("bias", "none") != "none":
        used.append("bias")
    if used:
        raise UnsupportedAdapter(f"{folder.name}: the engine serves plain LoRA; this adapter uses {', '.join(used)}")
    tensors = _read_tensors(folder)
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None or match.group(2) not in PROJECTIONS:
            raise UnsupportedAdapter(f"{folder.name}: adapts {key!r}; only the attention and MLP projections")
        pairs.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = tensor
    out: LoraWeights = {}
    for (layer, projection), ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise UnsupportedAdapter(f"{folder.name}: layer {layer} {projection} lacks lora_A or lora_B")
        rank = ab["A"].shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, layer, projection, config.get("lora_alpha", 8))
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        out[layer, projection] = LoraModule(
            a=ab["A"].to(device=device, dtype=dtype).t().contiguous(),
            b=ab["B"].to(device=device, dtype=dtype).t().contiguous(),
            scaling=float(scaling),
        )
    return out


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    safetensors = folder / "adapter_model.safetensors"
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    state = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    return dict(state)


def _pattern_value(patterns: dict[str, float], layer: int, projection: str, default: float) -> float:
    # PEFT matches a pattern against the module's full name, as a suffix on a dot boundary (get_pattern_key).
    name = f"model.layers.{layer}.{'mlp' if projection in PROJECTIONS[4:] else 'self_attn'}.{projection}"
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            return value
    return default
