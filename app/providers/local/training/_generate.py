"""Greedy completion from a base model plus an optional adapter: enough to see what a fine-tune learned.

The serving engine (batching, sampling, streaming) is a separate piece; this is the simple reference path, used
by tests and the CLI. Loaded models are cached per (base, adapter) folder for the life of the process.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from app.providers.local.hf import LOADING, quiet_peft, render_prompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@lru_cache(maxsize=4)
def _load(base_path: Path, adapter_path: Path | None) -> tuple[Any, Any]:
    with LOADING:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(base_path), dtype=torch.float32, local_files_only=True, attn_implementation="sdpa"
        )
    if adapter_path is not None:
        from peft import PeftModel

        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def complete(
    base_path: Path,
    adapter_path: Path | None,
    prompt: str,
    *,
    max_new_tokens: int,
    stop: list[str] | None = None,
    chat: bool = False,
) -> str:
    """The greedy continuation of ``prompt``, cut at EOS or at the first ``stop`` string (not included).

    With ``chat=True`` the prompt is one user message, rendered with the model's chat template.
    """
    model, tokenizer = _load(base_path, adapter_path)
    text = render_prompt(tokenizer, [{"role": "user", "content": prompt}]) if chat else prompt
    input_ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], dtype=torch.long)
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    completion = str(tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True))
    for s in stop or []:
        cut = completion.find(s)
        if cut >= 0:
            completion = completion[:cut]
    return completion
