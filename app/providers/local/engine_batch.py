"""One base model in memory: its LoRA adapters (LRU-bounded) and the running batch's shared KV cache.

The batch is left-padded: every row's cache has the same length, padding columns are masked out, and each row
keeps its own position ids, so a row computes exactly what it would alone. A sequence joins after its own
prefill (its cache is padded to the batch's length, or the batch to its), and leaving rows are dropped with the
all-padding columns they leave behind. Rows with different adapters share each forward pass through PEFT's
mixed-batch LoRA (``adapter_names=``). Only the engine's worker thread touches this.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.providers.local.modeling import load_base, quiet_peft

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class ModelSlot:
    """A base model, its tokenizer, its loaded adapters and its batch cache."""

    def __init__(self, base_path: Path, *, dtype: torch.dtype, device: torch.device, max_adapters: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
        self.tokenizer_lock = threading.Lock()
        self.model: Any = load_base(base_path, dtype, device, packed=False).eval()
        self.device = device
        self.max_adapters = max_adapters
        self.adapters: OrderedDict[Path, str] = OrderedDict()
        self._counter = 0
        generation_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = generation_eos if isinstance(generation_eos, list) else [generation_eos, self.tokenizer.eos_token_id]
        self.eos_ids = frozenset(int(e) for e in eos if e is not None)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._cache: Any = None
        self._mask: torch.Tensor | None = None

    # -- adapters -------------------------------------------------------------------------------------------
    def adapter_name(self, path: Path | None, in_use: set[str]) -> str:
        """The PEFT adapter name serving ``path``, loading it (and evicting unused LRU adapters) if needed."""
        if path is None:
            return BASE_ADAPTER
        key = path.resolve()
        if key in self.adapters:
            self.adapters.move_to_end(key)
            return self.adapters[key]
        from peft import PeftModel

        self._counter += 1
        name = f"a{self._counter}"
        with quiet_peft():
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(key), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(key), adapter_name=name)
        self.model.eval()
        self.adapters[key] = name
        self.evict(in_use | {name})
        return name

    def evict(self, in_use: set[str]) -> None:
        """Unload least recently used adapters beyond ``max_adapters``; one a running row uses stays."""
        for key, name in list(self.adapters.items()):
            if len(self.adapters) <= self.max_adapters:
                return
            if name not in in_use:
                with warnings.catch_warnings():
                    # PEFT warns when the deleted adapter was the active one; ours pass adapter_names instead.
                    warnings.filterwarnings("ignore", message="Adapter .* was active", category=UserWarning)
                    self.model.delete_adapter(name)
                del self.adapters[key]

    # -- forward passes --------------------------------------------------------------------------------------
    def _forward(self, adapter_names: list[str], **kwargs: Any) -> torch.Tensor:
        if self.adapters or not all(n == BASE_ADAPTER for n in adapter_names):
            kwargs["adapter_names"] = adapter_names
        out = self.model(use_cache=True, logits_to_keep=1, **kwargs)
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def prefill(self, prompt_ids: list[int], adapter: str) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
        """The next-token logits after ``prompt_ids`` and the prompt's per-layer (keys, values)."""
        from transformers import DynamicCache

        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        cache: Any = DynamicCache(config=self.model.config)
        logits = self._forward([adapter], input_ids=ids, past_key_values=cache)
        return logits[0], [(layer.keys, layer.values) for layer in cache.layers]

    def join(self, kv: list[tuple[torch.Tensor, ...]]) -> None:
        """Append a prefilled sequence as the batch's last row."""
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
        """Drop every row not in ``rows`` (in order), then the leading columns nobody attends to any more."""
        from transformers import DynamicCache

        if self._cache is None or self._mask is None:
            return
        if not rows:
            self._cache = self._mask = None
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, index)
        first = int(mask.any(dim=0).nonzero()[0])
        self._mask = mask[:, first:]
        self._cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys.index_select(0, index)[:, :, first:], layer.values.index_select(0, index)[:, :, first:])
                for layer in self._cache.layers
            ]
        )

    def step(self, tokens: list[int], positions: list[int], adapters: list[str]) -> torch.Tensor:
        """One decode step for every row: feeds each row's last token, returns next-token logits ``[rows, V]``."""
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


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the sequence dimension on the left up to ``width`` (dim -2 for KV, the last dim for masks)."""
    if t.dim() == 2:
        return F.pad(t, (width - t.shape[-1], 0))
    return F.pad(t, (0, 0, width - t.shape[-2], 0))
