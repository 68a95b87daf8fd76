"""The engine's own forward pass for Llama-family models (SmolLM2 is one), built for continuous batching.

Same arithmetic as transformers' ``LlamaForCausalLM`` (RMSNorm, rotary embeddings, grouped-query attention,
SiLU MLP, LoRA added after each adapted projection as PEFT does), arranged for decode steps of a few rows:

* the weights are fused (q|k|v, gate|up), ``[out, in]``: one matrix product per group. On CPU in float32 the
  products go through oneDNN on weights packed once at load (:class:`_Linear`; torch's ``mm`` took 1.4-1.9x as
  long at every row count on the 2-core AMD EPYC we measured); they are most of a pass;
* on CPU in float32 the rest of a layer (norms with the residual add, rotary embedding, cache writes, attention)
  is one kernel call each, for decode steps and for the prefill of short prompts alike; longer prompts attend
  through torch, several of similar lengths in one padded product per layer;
* one preallocated KV cache, ``[layers, rows, kv_heads, columns, head_dim]``: row r's token at position p lives
  in column p, so a step writes one column per row in place, rows never shift when others join or grow, and
  nothing is padded on the left;
* LoRA per group of rows sharing an adapter (two thin products each); rows on the bare base model skip it.

Models this does not cover (other architectures, biases, dynamic RoPE) are served by transformers' own forward
(:class:`app.providers.local.engine._batch.ModelSlot`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.providers.local.engine import _kernels as engine_kernels
from app.providers.local.engine._kernels import matmul_wt_int8, quantize_rows
from app.providers.local.engine._lora import FusedLora, LoraWeights, fuse

log = logging.getLogger(__name__)

# (an adapter's weights, by group of projections, and the batch rows using it or None for all of them)
LoraGroups = Sequence[tuple[FusedLora, torch.Tensor | None]]
_Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# On CPU in float32, prompts that end within this many positions are prefilled through the fused kernels, as
# decode steps are: their attention, a loop over each token's columns, costs less than the dozen small torch
# operations per layer it saves (measured, same session: 14-token prompts 5% faster alone and 3-6% at 8; 30 tokens
# 5% / 1%), but grows with the square of the length (60 tokens: 1-3% slower).
FUSED_PREFILL_COLUMNS = 40
_MIN_COLUMNS = 128
# oneDNN lays packed weights out for products of about this many rows; any count runs on them, and 88 to 512
# measured alike from 1 row to 500 (8 was 25% slower at 88 rows and more).
_PACKED_FOR_ROWS = 128
# int8 products for at most this many rows; oneDNN's float32 ones for more (see _Linear).
INT8_ROWS = 4
_MIN_ROWS = 4


def supports(config: Any) -> bool:
    """Whether :class:`LlamaRunner` computes exactly what transformers computes for this model config."""
    rope = (getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}).get(
        "rope_type", "default"
    )
    return (
        getattr(config, "model_type", None) == "llama"
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", None) == "silu"
        and getattr(config, "pretraining_tp", 1) == 1
        and "dynamic" not in rope
        and rope != "longrope"
    )


class _Linear:
    """``x @ W.T`` for the weights ``W`` (``[out, in]`` each, concatenated along ``out``).

    On CPU in float32 the weights are packed once, at load, into oneDNN's blocked layout and multiplied by its
    JIT-compiled kernels (``torch.ops.mkldnn``, what torch's compiler uses for frozen linear layers); the plain copy
    is dropped. MKL's ``torch.mm`` packs the weights again on every call: on the 2-core AMD EPYC we measured it took
    1.4-1.9x as long at every row count from 1 to 500 (SmolLM2's layers, all 30 in memory: 88 rows 190 -> 102 ms,
    8 rows 50 -> 22 ms, 1 row 35 -> 22 ms). The numba kernels the engine used for decode steps took 42-56 ms at 8
    rows and ~21 ms at 1: a whole decode step of 8 rows went from 56-65 to 32-39 ms, of one row from 25-26 to
    29-31 ms (the one case that got slower). The products release the GIL and run on torch's threads. Elsewhere
    (other devices and dtypes, a torch without oneDNN): torch's ``linear``.

    ``int8`` (CPU, float32 models): products of up to :data:`INT8_ROWS` rows (decode steps of a few streams) read
    the weights as int8, one scale per output row (:func:`matmul_wt_int8`): a quarter of the memory traffic that
    bounds them (SmolLM2's layers, same machine: 1 row 6-7 ms, 4 rows 14-15 ms against oneDNN's 18-25 ms in
    float32). From 6 rows on oneDNN's float32 product is the faster one (8 rows: 21 against 27 ms), so the mode
    keeps the packed float32 weights beside the int8 copy: it trades memory for the speed of small batches.
    """

    def __init__(self, *weights: torch.Tensor, int8: bool = False) -> None:
        w = torch.cat([w.detach() for w in weights]).contiguous()
        self.on_cpu_in_float32 = _on_cpu_in_float32(w)
        self._int8: tuple[np.ndarray, np.ndarray] | None = None
        if int8:
            if not self.on_cpu_in_float32:
                raise ValueError("int8 weights are served on CPU from float32 models only")
            self._int8 = quantize_rows(w.numpy())
        self._packed: torch.Tensor | None = None
        self._w: torch.Tensor | None = w
        if self.on_cpu_in_float32 and onednn_packs():
            self._packed, self._w = torch.ops.mkldnn._reorder_linear_weight(w, _PACKED_FOR_ROWS), None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._int8 is not None and x.shape[0] <= INT8_ROWS:
            return torch.from_numpy(matmul_wt_int8(x.numpy(), *self._int8))
        if self._packed is not None:
            product: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self._packed, None, "none", [], "")
            return product
        assert self._w is not None
        return F.linear(x, self._w)

    def np(self, x: np.ndarray) -> np.ndarray:
        """The same product on numpy arrays (CPU float32 weights only)."""
        product: np.ndarray = self(torch.from_numpy(x)).numpy()
        return product


@functools.cache
def onednn_packs() -> bool:
    """Whether this torch build and CPU multiply float32 on oneDNN's packed weights (x86 builds do); where not, the
    engine's products are torch's ``linear``, as on other devices."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        log.warning("torch has no oneDNN here: the engine's float32 products use torch's linear")
        return False
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), _PACKED_FOR_ROWS)
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "")
    except RuntimeError:
        log.warning("oneDNN cannot pack float32 weights on this CPU: the engine's products use torch's linear")
        return False
    return True


def _on_cpu_in_float32(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


@dataclass(frozen=True, slots=True)
class _Layer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: _Linear
    o: _Linear
    gate_up: _Linear
    down: _Linear


KEEP_BYTES = 32 * 2**20  # per tensor (keys, values): an empty batch keeps a cache this small for the next one


class KVCache:
    """Keys and values of the batch rows, grown by doubling (rows and columns), and freed when the batch empties
    unless they are small (``KEEP_BYTES``): zeroing a new cache cost a short prompt's prefill 6%. What a kept cache
    still holds beyond a row's positions is finite (earlier keys and values, or zeros), so masked columns stay 0."""

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, max_columns: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self._shape = (layers, kv_heads, head_dim)
        self._max_columns = max_columns
        self.k = self.v = torch.zeros((layers, 0, kv_heads, 0, head_dim), dtype=dtype, device=device)

    @property
    def columns(self) -> int:
        return self.k.shape[3]

    def reserve(self, rows: int, columns: int) -> None:
        """Room for ``rows`` rows of ``columns`` positions; existing content is kept."""
        have_rows, have_columns = self.k.shape[1], self.k.shape[3]
        if rows <= have_rows and columns <= have_columns:
            return
        new_rows = max(have_rows, _grow(rows, _MIN_ROWS))
        new_columns = max(have_columns, min(_grow(columns, _MIN_COLUMNS), self._max_columns))
        layers, kv_heads, head_dim = self._shape
        # Zeros, not empty: masked columns still enter the attention products, and 0 * NaN would be NaN.
        k = self.k.new_zeros((layers, new_rows, kv_heads, new_columns, head_dim))
        v = torch.zeros_like(k)
        k[:, :have_rows, :, :have_columns] = self.k
        v[:, :have_rows, :, :have_columns] = self.v
        self.k, self.v = k, v

    def copy_prefix(self, source: int, targets: list[int], length: int) -> None:
        """Give rows ``targets`` the first ``length`` positions of row ``source`` (a prompt prefix they share)."""
        for target in targets:
            self.k[:, target, :, :length] = self.k[:, source, :, :length]
            self.v[:, target, :, :length] = self.v[:, source, :, :length]

    def keep(self, rows: list[int]) -> None:
        """Move rows ``rows`` (in this order) to the front; with none left, give a large cache's memory back."""
        if not rows:
            if self.k.numel() * self.k.element_size() > KEEP_BYTES:
                self.k = self.v = self.k.new_zeros((self.k.shape[0], 0, self.k.shape[2], 0, self.k.shape[4]))
            return
        if rows == list(range(len(rows))):
            return
        index = torch.tensor(rows, device=self.k.device)
        self.k[:, : len(rows)] = self.k.index_select(1, index)
        self.v[:, : len(rows)] = self.v.index_select(1, index)


def _padding_pays(lengths: list[int], cached: list[int]) -> bool:
    """Whether one padded attention product beats one per prompt: several prompts, and padding at most doubles
    the attention's work (prompts of similar lengths, as a batch of classifier calls is)."""
    if len(lengths) < 2:
        return False
    columns = max(c + n for c, n in zip(cached, lengths, strict=True))
    needed = sum(n * (c + n) for c, n in zip(cached, lengths, strict=True))
    return len(lengths) * max(lengths) * columns <= 2 * needed


def _grow(needed: int, minimum: int) -> int:
    size = minimum
    while size < needed:
        size *= 2
    return size


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.dtype != torch.float32:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype) * weight
    # transformers' LlamaRMSNorm, the same numbers bit for bit, with in-place steps (fewer allocations).
    scale = torch.mean(x * x, dim=-1, keepdim=True).add_(eps).rsqrt_()
    return (x * scale).mul_(weight)


class LlamaRunner:
    """Prefill and batched decode for one Llama model's weights (taken from a loaded transformers model)."""

    def __init__(self, model: Any, *, fused: bool | None = None, int8: bool = False) -> None:
        """``fused``: decode with :mod:`._kernels`' fused layer steps (the default on CPU in float32, the only
        place they run); ``False`` keeps decode steps on torch operations, as on other devices and dtypes.
        ``int8``: the products of decode steps (and of short prefills) on int8 copies of the weights
        (:class:`_Linear`); the rest of the arithmetic (norms, attention, LoRA) stays float32."""
        config = model.config
        inner = model.model
        self.hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or self.hidden // self.heads)
        self.intermediate = int(config.intermediate_size)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.context_length = int(getattr(config, "max_position_embeddings", 2048))
        self.layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight.detach(),
                post_norm=layer.post_attention_layernorm.weight.detach(),
                qkv=_Linear(
                    layer.self_attn.q_proj.weight,
                    layer.self_attn.k_proj.weight,
                    layer.self_attn.v_proj.weight,
                    int8=int8,
                ),
                o=_Linear(layer.self_attn.o_proj.weight, int8=int8),
                gate_up=_Linear(layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, int8=int8),
                down=_Linear(layer.mlp.down_proj.weight, int8=int8),
            )
            for layer in inner.layers
        ]
        self.final_norm = inner.norm.weight.detach()
        embed = inner.embed_tokens.weight.detach()
        self.lm_head = _Linear(model.lm_head.weight, int8=int8)
        # Kept even when tied to the head (SmolLM2): the head's packed copy cannot be indexed (+0.1 GB for SmolLM2).
        self._embed: torch.Tensor = embed
        positions = torch.arange(self.context_length, device=embed.device).unsqueeze(0)
        cos, sin = inner.rotary_emb(embed[:1].unsqueeze(0), positions)
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated), exactly: one op fewer.
        self._cos, self._sin = cos[0].to(embed.dtype), torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)
        self._sin = self._sin.to(embed.dtype)
        self.fused = self.lm_head.on_cpu_in_float32 if fused is None else fused
        if self.fused:
            if not self.lm_head.on_cpu_in_float32:
                raise ValueError("fused decode steps run on CPU in float32 only")
            engine_kernels.warm_up()
            self._np_cos, self._np_sin = self._cos.numpy(), self._sin.numpy()
        self.cache = KVCache(
            len(self.layers), self.kv_heads, self.head_dim, self.context_length, embed.dtype, embed.device
        )

    def fuse_lora(self, weights: LoraWeights) -> FusedLora:
        """An adapter's weights by this model's groups of projections (q|k|v, o, gate|up, down): what
        :meth:`prefill` and :meth:`decode` take in their LoRA groups."""
        q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        groups = {
            "qkv": (("q_proj", q_width), ("k_proj", kv_width), ("v_proj", kv_width)),
            "o": (("o_proj", self.hidden),),
            "gate_up": (("gate_proj", self.intermediate), ("up_proj", self.intermediate)),
            "down": (("down_proj", self.hidden),),
        }
        return fuse(weights, groups, len(self.layers))

    # -- the two entry points ----------------------------------------------------------------------------------
    def prefill(self, prompts: list[list[int]], rows: list[int], cached: list[int], groups: LoraGroups) -> torch.Tensor:
        """Run several prompts in one pass: prompt j's tokens go to cache row ``rows[j]`` after the ``cached[j]``
        positions that row already holds (a shared prefix, see :meth:`KVCache.copy_prefix`). Returns the logits
        after each prompt's last token, ``[len(prompts), V]``. ``groups`` index token rows (concatenated)."""
        lengths = [len(p) for p in prompts]
        offsets = [sum(lengths[:j]) for j in range(len(lengths))]
        self.cache.reserve(max(rows) + 1, max(c + n for c, n in zip(cached, lengths, strict=True)))
        device = self._cos.device
        tokens = torch.tensor([t for p in prompts for t in p], device=device)
        positions = torch.cat([torch.arange(c, c + n, device=device) for c, n in zip(cached, lengths, strict=True)])

        last = torch.tensor([start + n - 1 for start, n in zip(offsets, lengths, strict=True)], device=device)
        if self.fused and max(c + n for c, n in zip(cached, lengths, strict=True)) <= FUSED_PREFILL_COLUMNS:
            token_rows = [r for r, n in zip(rows, lengths, strict=True) for _ in range(n)]
            x = torch.from_numpy(self._fused(tokens, token_rows, positions.tolist(), groups))
            return self.lm_head(x.index_select(0, last))
        if _padding_pays(lengths, cached):
            attend = self._attend_padded(rows, lengths, cached)
        else:
            attend = self._attend_each(rows, offsets, lengths, cached)
        x = self._layers(self._embedding(tokens), self._cos[positions], self._sin[positions], attend, groups)
        return self.lm_head(x.index_select(0, last))

    def _attend_each(self, rows: list[int], offsets: list[int], lengths: list[int], cached: list[int]) -> _Attend:
        """Prefill attention prompt by prompt: each writes its keys and values to its cache row, then attends to
        that row's columns (its cached prefix and itself)."""
        device = self._cos.device

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            outs = []
            for row, start, n, c in zip(rows, offsets, lengths, cached, strict=True):
                self.cache.k[i, row, :, c : c + n] = k[start : start + n].transpose(0, 1)
                self.cache.v[i, row, :, c : c + n] = v[start : start + n].transpose(0, 1)
                # With a cached prefix the causal mask is aligned bottom-right: query t sees columns <= c + t.
                mask = None if c == 0 else torch.ones(n, c + n, dtype=torch.bool, device=device).tril(c)
                out = F.scaled_dot_product_attention(
                    q[start : start + n].transpose(0, 1).unsqueeze(0),
                    self.cache.k[i, row, :, : c + n].unsqueeze(0),
                    self.cache.v[i, row, :, : c + n].unsqueeze(0),
                    attn_mask=mask,
                    is_causal=mask is None,
                    scale=self.scale,
                    enable_gqa=self.heads != self.kv_heads,
                )
                outs.append(out[0].transpose(0, 1).reshape(n, -1))
            return outs[0] if len(outs) == 1 else torch.cat(outs)

        return attend

    def _attend_padded(self, rows: list[int], lengths: list[int], cached: list[int]) -> _Attend:
        """Prefill attention of every prompt in one product per layer: the prompts' tokens scattered to their
        cache rows in one copy, their queries padded to the longest prompt, and one masked attention over the
        rows' columns. Prompt j's query t sees columns ``<= cached[j] + t`` (its prefix and itself, causally) and
        none past its own end; a padding query sees a prompt's columns too (no row is wholly masked), and its
        output is dropped. Per-prompt attention costs ~25 small operations per prompt per layer: for a batch of
        short prompts (classifier calls) they were a tenth of the pass."""
        device = self._cos.device
        width, columns = max(lengths), max(c + n for c, n in zip(cached, lengths, strict=True))
        kv_heads, stride = self.kv_heads, self.cache.columns
        row_of = torch.tensor([r for r, n in zip(rows, lengths, strict=True) for _ in range(n)], device=device)
        at = torch.cat([torch.arange(c, c + n, device=device) for c, n in zip(cached, lengths, strict=True)])
        heads = torch.arange(kv_heads, device=device)
        # Each (token, kv head)'s place in one layer's cache seen as [rows * kv_heads * columns, head_dim].
        slots = ((row_of[:, None] * kv_heads + heads) * stride + at[:, None]).view(-1)
        # Each token's place among the padded queries, [prompts * width].
        padded = torch.cat([torch.arange(n, device=device) + j * width for j, n in enumerate(lengths)])
        column = torch.arange(columns, device=device)
        start = torch.tensor(cached, device=device)[:, None, None]
        end = start + torch.tensor(lengths, device=device)[:, None, None]
        query = torch.arange(width, device=device)[None, :, None]
        mask = ((column <= start + query) & (column < end)).unsqueeze(1)  # [prompts, 1, width, columns]
        first, count = rows[0], len(rows)
        index = None if rows == list(range(first, first + count)) else torch.tensor(rows, device=device)

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            d = self.head_dim
            self.cache.k[i].view(-1, d).index_copy_(0, slots, k.reshape(-1, d))
            self.cache.v[i].view(-1, d).index_copy_(0, slots, v.reshape(-1, d))
            if index is None:
                keys, values = self.cache.k[i, first : first + count], self.cache.v[i, first : first + count]
            else:
                keys, values = self.cache.k[i].index_select(0, index), self.cache.v[i].index_select(0, index)
            queries = q.new_zeros((count * width, self.heads, d)).index_copy_(0, padded, q)
            out = F.scaled_dot_product_attention(
                queries.view(count, width, self.heads, d).transpose(1, 2),
                keys[:, :, :columns],
                values[:, :, :columns],
                attn_mask=mask,
                scale=self.scale,
                enable_gqa=self.heads != self.kv_heads,
            )
            return out.transpose(1, 2).reshape(count * width, -1).index_select(0, padded)

        return attend

    def decode(self, tokens: list[int], positions: list[int], groups: LoraGroups) -> torch.Tensor:
        """One step for rows ``0..len(tokens)-1``: row r feeds ``tokens[r]`` at ``positions[r]``; logits ``[B, V]``."""
        rows = len(tokens)
        columns = max(positions) + 1
        self.cache.reserve(rows, columns)
        if self.fused:
            normed = self._fused(torch.tensor(tokens), list(range(rows)), positions, groups)
            return torch.from_numpy(self.lm_head.np(normed))
        device = self._cos.device
        pos = torch.tensor(positions, device=device)
        stride = self.cache.columns
        heads = torch.arange(self.kv_heads, device=device)
        # Flat row index, in one layer's [rows*kv_heads*columns, d] view, of each (row, kv head)'s new column.
        slots = ((torch.arange(rows, device=device)[:, None] * self.kv_heads + heads) * stride + pos[:, None]).view(-1)
        hidden = torch.arange(columns, device=device)[None, :] > pos[:, None]
        bias = torch.zeros(hidden.shape, dtype=self._cos.dtype, device=device).masked_fill_(hidden, float("-inf"))
        bias = bias[:, None, None, :].expand(rows, self.kv_heads, 1, columns).reshape(-1, 1, columns)
        groups_per_kv = self.heads // self.kv_heads

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            layer_k = self.cache.k[i].view(-1, self.head_dim)
            layer_v = self.cache.v[i].view(-1, self.head_dim)
            layer_k.index_copy_(0, slots, k.reshape(-1, self.head_dim))
            layer_v.index_copy_(0, slots, v.reshape(-1, self.head_dim))
            keys = self.cache.k[i, :rows, :, :columns].reshape(rows * self.kv_heads, columns, self.head_dim)
            values = self.cache.v[i, :rows, :, :columns].reshape(rows * self.kv_heads, columns, self.head_dim)
            # Each kv head's query heads as rows of one small product (transformers' "pack_gqa").
            grouped = q.reshape(rows * self.kv_heads, groups_per_kv, self.head_dim)
            scores = torch.baddbmm(bias, grouped, keys.transpose(1, 2), alpha=self.scale)
            return torch.bmm(torch.softmax(scores, dim=-1), values).view(rows, -1)

        x = self._layers(self._embedding(pos.new_tensor(tokens)), self._cos[pos], self._sin[pos], attend, groups)
        return self.lm_head(x)

    def _fused(self, tokens: torch.Tensor, rows: list[int], positions: list[int], groups: LoraGroups) -> np.ndarray:
        """Every layer on CPU in float32 for ``tokens``, token i in cache row ``rows[i]`` at ``positions[i]`` (a
        decode step, or a prefill of short prompts, each prompt's tokens in order): the products through
        :class:`_Linear`, norms, residual adds and attention (rotary embedding and cache writes included) each one
        kernel call, SiLU and LoRA on torch views of the same memory. Returns the final norm's output."""
        keys, values = self.cache.k.numpy(), self.cache.v.numpy()
        at = np.asarray(positions, dtype=np.int64)
        token_rows = np.asarray(rows, dtype=np.int64)
        h = self._embedding(tokens).numpy().copy()  # the residual stream, updated in place
        x = np.empty_like(h)
        attn = np.empty((len(tokens), self.heads * self.head_dim), dtype=np.float32)
        act = torch.empty((len(tokens), self.intermediate), dtype=torch.float32)
        engine_kernels.rms_norm(h, self.layers[0].input_norm.numpy(), self.eps, x)
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv.np(x)
            if groups:
                _add_lora(torch.from_numpy(qkv), torch.from_numpy(x), i, groups, "qkv")
            engine_kernels.attend(
                qkv, self._np_cos, self._np_sin, keys, values, i, token_rows, at, self.heads, self.scale, attn
            )
            out = layer.o.np(attn)
            if groups:
                _add_lora(torch.from_numpy(out), torch.from_numpy(attn), i, groups, "o")
            engine_kernels.add_rms_norm(h, out, layer.post_norm.numpy(), self.eps, x)
            gate_up = torch.from_numpy(layer.gate_up.np(x))
            if groups:
                _add_lora(gate_up, torch.from_numpy(x), i, groups, "gate_up")
            torch.mul(F.silu(gate_up[:, : self.intermediate]), gate_up[:, self.intermediate :], out=act)
            out = layer.down.np(act.numpy())
            if groups:
                _add_lora(torch.from_numpy(out), act, i, groups, "down")
            norm = self.layers[i + 1].input_norm if i + 1 < len(self.layers) else self.final_norm
            engine_kernels.add_rms_norm(h, out, norm.numpy(), self.eps, x)
        return x

    # -- the layers --------------------------------------------------------------------------------------------
    def _embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._embed.index_select(0, tokens)

    def _layers(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attend: _Attend,
        groups: LoraGroups,
    ) -> torch.Tensor:
        """Every layer over the hidden states ``h`` (``[n, hidden]``); the last one's output through the final
        norm. On CPU in float32 each residual add and the norm after it are one kernel call (:mod:`._kernels`)
        instead of six torch operations, with ``h`` updated in place."""
        n, d, heads, kv_heads = h.shape[0], self.head_dim, self.heads, self.kv_heads
        q_width, kv_width, half = heads * d, kv_heads * d, d // 2
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [n, 1, d]: the same angles for every head
        norms = [layer.input_norm for layer in self.layers[1:]] + [self.final_norm]
        if self.fused:
            x = torch.empty_like(h)
            engine_kernels.rms_norm(h.numpy(), self.layers[0].input_norm.numpy(), self.eps, x.numpy())
        else:
            x = _rms_norm(h, self.layers[0].input_norm, self.eps)
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(x)
            if groups:
                _add_lora(qkv, x, i, groups, "qkv")
            # Rotary embedding of queries and keys at once: x * cos + rotate_half(x) * sin.
            qk = qkv[:, : q_width + kv_width].view(n, heads + kv_heads, d)
            qk = qk * cos + torch.roll(qk, half, dims=-1) * sin
            v = qkv[:, q_width + kv_width :].view(n, kv_heads, d)
            attn = attend(i, qk[:, :heads], qk[:, heads:], v)
            out = layer.o(attn)
            if groups:
                _add_lora(out, attn, i, groups, "o")
            h, x = self._add_norm(h, out, layer.post_norm, x)
            gate_up = layer.gate_up(x)
            if groups:
                _add_lora(gate_up, x, i, groups, "gate_up")
            act = F.silu(gate_up[:, : self.intermediate], inplace=True).mul_(gate_up[:, self.intermediate :])
            out = layer.down(act)
            if groups:
                _add_lora(out, act, i, groups, "down")
            h, x = self._add_norm(h, out, norms[i], x)
        return x

    def _add_norm(
        self, h: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual add ``h + delta`` and its norm: in place, one kernel call, on CPU in float32."""
        if self.fused:
            engine_kernels.add_rms_norm(h.numpy(), delta.numpy(), weight.numpy(), self.eps, out.numpy())
            return h, out
        h = h + delta
        return h, _rms_norm(h, weight, self.eps)


def _add_lora(out: torch.Tensor, x: torch.Tensor, layer: int, groups: LoraGroups, group: str) -> None:
    """``out[rows] += (x[rows] @ a) @ b`` for each adapter's LoRA of ``layer``'s ``group`` of projections."""
    for lora, rows in groups:
        module = lora.get((layer, group))
        if module is None:
            continue
        if rows is None:
            out.addmm_(torch.mm(x, module.a), module.b)
        else:
            out.index_add_(0, rows, torch.mm(torch.mm(x.index_select(0, rows), module.a), module.b))
