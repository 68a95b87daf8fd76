"""Base models: names, the GGUF conversion cached once, the tiny test model, extra folders, tokenizers."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from app.providers.local.base_models import SMOLLM2, TINY, BaseModelStore, UnknownBaseModel, register_local_tokenizers
from app.tokenizers import context_limit, tokenizer_for_model, unregister_tokenizer


def test_names_and_unknown_models(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "my-model").mkdir(parents=True)
    (extra / "my-model" / "config.json").write_text("{}")
    (extra / "not-a-model").mkdir()
    store = BaseModelStore(tmp_path / "cache", extra, include_test_models=False)
    assert store.names() == [SMOLLM2, "my-model"]
    assert store.resolve("my-model") == extra / "my-model"
    with pytest.raises(UnknownBaseModel):
        store.resolve(TINY)  # test models are off
    with pytest.raises(KeyError):
        store.resolve("nope")
    assert BaseModelStore(tmp_path / "cache", None, include_test_models=True).names() == [SMOLLM2, TINY]


def test_smollm2_is_converted_once_into_a_plain_folder(store: BaseModelStore, smollm2_path: Path) -> None:
    assert smollm2_path == store.cache_dir / SMOLLM2
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30
    stamp = (smollm2_path / "config.json").stat().st_mtime_ns
    assert store.resolve(SMOLLM2) == smollm2_path  # cached: no second conversion
    assert (smollm2_path / "config.json").stat().st_mtime_ns == stamp
    started = time.monotonic()
    AutoModelForCausalLM.from_pretrained(str(smollm2_path))
    assert time.monotonic() - started < 5
    assert store.context_length(SMOLLM2) == 8192


def _resolve_tiny(cache: str) -> str:
    return str(BaseModelStore(Path(cache), None, include_test_models=True).resolve(TINY))


def test_two_processes_racing_build_the_tiny_model_once(tmp_path: Path, tiny_path: Path) -> None:
    cache = tmp_path / "race"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.map(_resolve_tiny, [str(cache), str(cache)])
    assert paths == [str(cache / TINY)] * 2
    assert not list(cache.glob(".tmp-*"))
    config = AutoConfig.from_pretrained(paths[0])
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)
    # Deterministic: the same weights as the session's copy.
    assert (cache / TINY / "model.safetensors").read_bytes() == (tiny_path / "model.safetensors").read_bytes()


def test_local_tokenizers_count_dataset_tokens(store: BaseModelStore, tiny_path: Path) -> None:
    names = register_local_tokenizers(store)
    try:
        assert TINY in names
        tokenizer = tokenizer_for_model(TINY)
        assert tokenizer.name == TINY
        assert tokenizer.count("Hello world") == 2
        assert tokenizer.count_batch(["Hello world", "<|im_end|>"]) == [2, tokenizer.count("<|im_end|>")]
        assert tokenizer.count("<|im_end|>") > 1  # special-token look-alikes count as text
        assert context_limit(f"ft:{TINY}:proj:suffix:abc") == 2048
    finally:
        for name in names:
            unregister_tokenizer(name)
