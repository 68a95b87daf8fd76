"""What the serving engine and the trainer share about Hugging Face models: loading them safely, the chat template.

One process-wide lock guards every load through ``transformers``. transformers resolves its classes lazily
(``from transformers import AutoTokenizer`` imports the submodule on first use, and ``from_pretrained`` imports
the model's own tokenizer and modeling modules), and that lazy module is not safe to enter from two threads at
once: the loser of the race gets ``ImportError: cannot import name 'AutoTokenizer' from 'transformers'``. In the
gateway two threads do load at once: the local engine warming a base model while a worker thread reads a
tokenizer to count a job's tokens, or the first requests for two models. So every load (tokenizers, configs, base
models, the default model's conversion) holds :data:`LOADING`; loads are rare and seconds long at most.

torch is imported inside the functions that need it: the API process imports this module at start.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOADING = threading.RLock()


@contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT still reads a transformers attribute deprecated in v5: a warning nobody here can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def default_device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_causal_lm(base_path: Path, dtype: torch.dtype, device: torch.device, *, attention: str = "sdpa") -> Any:
    """A causal LM from a local folder (never the network), without its KV cache switched on."""
    with LOADING:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            str(base_path), dtype=dtype, local_files_only=True, attn_implementation=attention
        )
    model.config.use_cache = False
    return model.to(device)  # type: ignore[arg-type]


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
    """Messages through the tokenizer's chat template, as text."""
    # Only role and content reach the template: weight is ours, and templates may choke on unknown keys.
    plain = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt)
    return str(text)


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    """The conversation so far, ending where the assistant's reply starts."""
    return render_chat(tokenizer, messages, generation_prompt=True)
