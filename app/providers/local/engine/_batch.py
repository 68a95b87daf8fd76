"""One base model in memory for the engine: its tokenizer, its loaded adapters (LRU-bounded), its running batch.

Two kinds, behind the same methods (:class:`Slot`):

* :class:`LlamaSlot`, for Llama-family models: the engine's own forward (:mod:`._llama`) over a
  preallocated KV cache, with plain LoRA adapters read from their folders (:mod:`._lora`);
* :class:`ModelSlot`, for any other causal LM: transformers' forward with a left-padded ``DynamicCache`` and
  PEFT's mixed-batch LoRA (``adapter_names=``). Padding columns are masked out and each row keeps its own
  position ids, so a row computes exactly what it would alone.

Prefill stages a row per new sequence; :meth:`Slot.join` adds those that go on to the batch (a sequence that ends
on its first token never joins). Only the engine's worker thread touches a slot.
"""

from __future__ import annotations

import logging
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.observability import metrics
from app.providers.local.engine._llama import LlamaRunner, LoraGroups, supports
from app.providers.local.engine._lora import FusedLora, load_lora
from app.providers.local.hf import LOADING, load_causal_lm, quiet_peft

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch
# Shorter common prefixes are not worth a forward pass of their own.
MIN_SHARED_PREFIX = 16


def load_slot(
    base_path: Path, *, dtype: torch.dtype, device: torch.device, max_adapters: int, int8: bool = False
) -> Slot:
    """The fastest slot that serves this model exactly; ``int8``: on int8 weights (Llama-family models on CPU in
    float32 only, see :class:`LlamaRunner`)."""
    with LOADING:
        from transformers import AutoTokenizer, DynamicCache  # DynamicCache: resolved here, used by decode steps

        del DynamicCache
        tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
        model = load_causal_lm(base_path, dtype, device).eval()
    if supports(model.config):
        fits = device.type == "cpu" and dtype == torch.float32
        if int8 and not fits:
            log.warning("%s: int8 weights are served on CPU in float32 only; serving it as %s", base_path.name, dtype)
        return LlamaSlot(model, tokenizer, max_adapters=max_adapters, int8=int8 and fits)
    if int8:
        log.warning("%s: int8 weights are served for Llama-family models only; serving it as loaded", base_path.name)
    return ModelSlot(model, tokenizer, max_adapters=max_adapters)


def context_length(config: Any) -> int:
    """How many tokens (prompt and completion) a model with this config attends to."""
    return int(getattr(config, "max_position_embeddings", 2048))


class Slot(ABC):
    """A base model, its tokenizer, its loaded adapters and its batch."""

    def __init__(self, model: Any, tokenizer: Any, *, max_adapters: int) -> None:
        self.tokenizer = tokenizer
        self.tokenizer_lock = threading.Lock()
        self.max_adapters = max_adapters
        self.adapters: OrderedDict[Path, str] = OrderedDict()
        self._counter = 0
        generation_eos = getattr(model.generation_config, "eos_token_id", None)
        eos = generation_eos if isinstance(generation_eos, list) else [generation_eos, tokenizer.eos_token_id]
        self.eos_ids = frozenset(int(e) for e in eos if e is not None)
        self.context_length = context_length(model.config)

    # -- adapters -------------------------------------------------------------------------------------------
    def adapter_name(self, path: Path | None, in_use: set[str]) -> str:
        """The name serving adapter ``path``, loading it (and evicting unused LRU adapters) if needed."""
        if path is None:
            return BASE_ADAPTER
        key = path.resolve()
        if key in self.adapters:
            self.adapters.move_to_end(key)
            return self.adapters[key]
        self._counter += 1
        name = f"a{self._counter}"
        self._load_adapter(key, name)
        self.adapters[key] = name
        metrics.adapter_loaded("local")
        self.evict(in_use | {name})
        return name

    def evict(self, in_use: set[str]) -> None:
        """Unload least recently used adapters beyond ``max_adapters``; one a running row uses stays."""
        for key, name in list(self.adapters.items()):
            if len(self.adapters) <= self.max_adapters:
                return
            if name not in in_use:
                self._unload_adapter(name)
                del self.adapters[key]
                metrics.adapter_evicted("local")

    @abstractmethod
    def _load_adapter(self, path: Path, name: str) -> None: ...

    @abstractmethod
    def _unload_adapter(self, name: str) -> None: ...

    # -- the batch ------------------------------------------------------------------------------------------
    @abstractmethod
    def prefill(self, prompts: list[list[int]], adapters: list[str]) -> torch.Tensor:
        """Next-token float logits ``[len(prompts), V]``; stages a row per prompt for :meth:`join`."""

    @abstractmethod
    def join(self, staged: list[int]) -> None:
        """Append these rows of the last :meth:`prefill` (indices into its prompts) to the batch, in order."""

    @abstractmethod
    def keep_rows(self, rows: list[int]) -> None:
        """Drop every row not in ``rows``, keeping these in this order."""

    @abstractmethod
    def step(self, tokens: list[int], positions: list[int], adapters: list[str]) -> torch.Tensor:
        """One decode step for every row: feeds each row's last token, returns float logits ``[rows, V]``."""


class LlamaSlot(Slot):
    """A Llama-family model served by :class:`LlamaRunner`."""

    def __init__(self, model: Any, tokenizer: Any, *, max_adapters: int, int8: bool = False) -> None:
        super().__init__(model, tokenizer, max_adapters=max_adapters)
        self._runner = LlamaRunner(model, int8=int8)  # holds what it needs: the transformers model is dropped
        self._dtype, self._device = model.dtype, model.device
        self._loras: dict[str, FusedLora] = {}
        self._rows = 0
        self._groups: tuple[tuple[str, ...], LoraGroups] = ((), [])

    def _load_adapter(self, path: Path, name: str) -> None:
        self._loras[name] = self._runner.fuse_lora(load_lora(path, dtype=self._dtype, device=self._device))

    def _unload_adapter(self, name: str) -> None:
        del self._loras[name]

    def prefill(self, prompts: list[list[int]], adapters: list[str]) -> torch.Tensor:
        rows = [self._rows + j for j in range(len(prompts))]  # staged after the batch's rows
        cached = [0] * len(prompts)
        self._runner.cache.reserve(rows[-1] + 1, max(len(p) for p in prompts))
        # Prompts on the same adapter often start alike (a chat template's system prompt): run that prefix once.
        for adapter in dict.fromkeys(adapters):
            same = [j for j, a in enumerate(adapters) if a == adapter]
            shared = _shared_prefix([prompts[j] for j in same]) if len(same) > 1 else 0
            if shared >= MIN_SHARED_PREFIX:
                prefix = [prompts[same[0]][:shared]]
                self._runner.prefill(prefix, [rows[same[0]]], [0], self._lora_groups([adapter] * shared, cache=False))
                self._runner.cache.copy_prefix(rows[same[0]], [rows[j] for j in same[1:]], shared)
                for j in same:
                    cached[j] = shared
        rest = [p[c:] for p, c in zip(prompts, cached, strict=True)]
        token_adapters = [a for p, a in zip(rest, adapters, strict=True) for _ in p]
        return self._runner.prefill(rest, rows, cached, self._lora_groups(token_adapters, cache=False)).float()

    def join(self, staged: list[int]) -> None:
        if staged != list(range(len(staged))):
            self._runner.cache.keep(list(range(self._rows)) + [self._rows + i for i in staged])
        self._rows += len(staged)

    def keep_rows(self, rows: list[int]) -> None:
        self._runner.cache.keep(rows)
        self._rows = len(rows)

    def step(self, tokens: list[int], positions: list[int], adapters: list[str]) -> torch.Tensor:
        assert len(tokens) == self._rows
        return self._runner.decode(tokens, positions, self._lora_groups(adapters, cache=True)).float()

    def _lora_groups(self, adapters: list[str], *, cache: bool) -> LoraGroups:
        """Rows grouped by adapter (base rows in none); decode steps reuse them while the batch stays the same."""
        key = tuple(adapters)
        if cache and key == self._groups[0]:
            return self._groups[1]
        names = [n for n in dict.fromkeys(adapters) if n != BASE_ADAPTER]
        if len(names) == 1 and BASE_ADAPTER not in adapters:
            groups: LoraGroups = [(self._loras[names[0]], None)]
        else:
            groups = [
                (self._loras[n], torch.tensor([i for i, a in enumerate(adapters) if a == n], device=self._device))
                for n in names
            ]
        if cache:
            self._groups = (key, groups)
        return groups


class ModelSlot(Slot):
    """Any causal LM, through transformers' forward and PEFT."""

    def __init__(self, model: Any, tokenizer: Any, *, max_adapters: int) -> None:
        super().__init__(model, tokenizer, max_adapters=max_adapters)
        self.model = model
        self.device = model.device
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._staged: list[list[tuple[torch.Tensor, ...]]] = []

    def _load_adapter(self, path: Path, name: str) -> None:
        from peft import PeftModel

        with quiet_peft():
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        self.model.eval()

    def _unload_adapter(self, name: str) -> None:
        with warnings.catch_warnings():
            # PEFT warns when the deleted adapter was the active one; ours pass adapter_names instead.
            warnings.filterwarnings("ignore", message="Adapter .* was active", category=UserWarning)
            self.model.delete_adapter(name)

    def _forward(self, adapter_names: list[str], **kwargs: Any) -> torch.Tensor:
        if self.adapters or not all(n == BASE_ADAPTER for n in adapter_names):
            kwargs["adapter_names"] = adapter_names
        out = self.model(use_cache=True, logits_to_keep=1, **kwargs)
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def prefill(self, prompts: list[list[int]], adapters: list[str]) -> torch.Tensor:
        from transformers import DynamicCache

        self._staged = []
        logits = []
        for prompt, adapter in zip(prompts, adapters, strict=True):  # one at a time: no padding to mask
            ids = torch.tensor([prompt], dtype=torch.long, device=self.device)
            cache: Any = DynamicCache(config=self.model.config)
            logits.append(self._forward([adapter], input_ids=ids, past_key_values=cache)[0])
            self._staged.append([(layer.keys, layer.values) for layer in cache.layers])
        return torch.stack(logits)

    def join(self, staged: list[int]) -> None:
        kvs, self._staged = self._staged, []
        for i in staged:
            self._join_one(kvs[i])

    def _join_one(self, kv: list[tuple[torch.Tensor, ...]]) -> None:
        from transformers import DynamicCache

        new_len = kv[0][0].shape[-2]
        new_mask = torch.ones((1, new_len), dtype=torch.long, device=self.device)
        if self._cache is None or self._mask is None:
            self._cache, self._mask = DynamicCache(ddp_cache_data=kv), new_mask
            return
        old = [(layer.keys, layer.values) for layer in self._cache.layers]
        width = max(new_len, self._mask.shape[1])
        merged = [
            tuple(torch.cat([_left_pad(a, width), _left_pad(b, width)], dim=0) for a, b in zip(o, n, strict=True))
            for o, n in zip(old, kv, strict=True)
        ]
        self._cache = DynamicCache(ddp_cache_data=merged)
        self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(new_mask, width)], dim=0)

    def keep_rows(self, rows: list[int]) -> None:
        from transformers import DynamicCache

        if self._cache is None or self._mask is None:
            return
        if not rows:
            self._cache = self._mask = None
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, index)
        # Then drop the leading columns nobody attends to any more.
        first = int(mask.any(dim=0).nonzero()[0])
        self._mask = mask[:, first:]
        self._cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys.index_select(0, index)[:, :, first:], layer.values.index_select(0, index)[:, :, first:])
                for layer in self._cache.layers
            ]
        )

    def step(self, tokens: list[int], positions: list[int], adapters: list[str]) -> torch.Tensor:
        assert self._cache is not None and self._mask is not None
        ones = torch.ones((len(tokens), 1), dtype=torch.long, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        return self._forward(
            adapters,
            input_ids=torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(1),
            position_ids=torch.tensor(positions, dtype=torch.long, device=self.device).unsqueeze(1),
            attention_mask=self._mask,
            past_key_values=self._cache,
        )


def _shared_prefix(prompts: list[list[int]]) -> int:
    """How many leading tokens all ``prompts`` share, leaving each at least its last token to run."""
    shared = min(len(p) for p in prompts) - 1
    for i in range(shared):
        if any(p[i] != prompts[0][i] for p in prompts):
            return i
    return shared


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the sequence dimension on the left up to ``width`` (dim -2 for KV, the last dim for masks)."""
    if t.dim() == 2:
        return F.pad(t, (width - t.shape[-1], 0))
    return F.pad(t, (0, 0, width - t.shape[-2], 0))
