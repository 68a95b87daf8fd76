"""The data layer: which tokens are trained, and packing that is exact (no example sees another's tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from app.providers.local.hf import load_causal_lm
from app.providers.local.training._batching import chunk_by_tokens, epoch_batches, pack
from app.providers.local.training._data import (
    IGNORE,
    TrainingDataError,
    encode_chat,
    encode_preference,
    encode_prompt_completion,
    load_supervised,
)
from app.providers.local.training._modeling import load_base, score_tokens
from tests.providers.local.conftest import write_jsonl


@pytest.fixture(scope="module")
def tokenizer(tiny_path: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_path))


def trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return str(tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE]))


def test_prompt_completion_trains_completion_and_eos_only(tokenizer: Any) -> None:
    seq = encode_prompt_completion(tokenizer, "Q: apple\n\n###\n\n", " yes END")
    assert trained_text(tokenizer, seq.input_ids, seq.labels) == " yes END<|im_end|>"
    assert all(label == IGNORE for label in seq.labels[: seq.prompt_length])
    assert tokenizer.decode(seq.input_ids[: seq.prompt_length]) == "Q: apple\n\n###\n\n"


def test_chat_trains_assistant_turns_but_not_weight_zero(tokenizer: Any) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Skip this answer", "weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Learn this answer"},
    ]
    seq = encode_chat(tokenizer, messages)
    assert trained_text(tokenizer, seq.input_ids, seq.labels) == "Learn this answer<|im_end|>"
    assert seq.label == "Learn this answer"
    # The prompt used for classification ends where the last trained answer starts.
    assert tokenizer.decode(seq.input_ids[: seq.prompt_length]).endswith("<|im_start|>assistant\n")

    unweighted = encode_chat(tokenizer, [{**m, "weight": 1} if m.get("weight") == 0 else m for m in messages])
    assert trained_text(tokenizer, unweighted.input_ids, unweighted.labels) == (
        "Skip this answer<|im_end|>Learn this answer<|im_end|>"
    )


def test_preference_pair_shares_the_prompt(tokenizer: Any) -> None:
    pair = encode_preference(
        tokenizer,
        {
            "input": {"messages": [{"role": "user", "content": "Colour?"}]},
            "preferred_output": [{"role": "assistant", "content": "Blue"}],
            "non_preferred_output": [{"role": "assistant", "content": "I cannot say"}],
        },
    )
    assert tokenizer.decode(pair.prompt_ids).endswith("<|im_start|>user\nColour?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(pair.chosen_ids) == "Blue<|im_end|>"
    assert tokenizer.decode(pair.rejected_ids) == "I cannot say<|im_end|>"


def test_a_chat_example_without_trained_turns_is_refused(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]}],
    )
    with pytest.raises(TrainingDataError, match="line 1"):
        load_supervised(path, tokenizer, 512)


def test_long_examples_are_truncated(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "a", "completion": " word" * 50}])
    seqs, truncated = load_supervised(path, tokenizer, 16)
    assert truncated == 1
    assert len(seqs[0].input_ids) == 16


def test_packed_scores_equal_separate_unpadded_passes(tiny_path: Path, tokenizer: Any) -> None:
    seqs = [
        encode_prompt_completion(tokenizer, "Q: a longer prompt about apples\n\n###\n\n", " yes END"),
        encode_prompt_completion(tokenizer, "Q: x\n\n###\n\n", " no, not at all END"),
        encode_prompt_completion(tokenizer, "short", " one"),
    ]
    packed_model = load_base(tiny_path, torch.float32, torch.device("cpu"))
    plain_model = load_causal_lm(tiny_path, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        packed = score_tokens(packed_model, pack(seqs)).logprobs
        expected = []
        for seq in seqs:
            logits = plain_model(input_ids=torch.tensor([seq.input_ids])).logits[0].float()
            logprobs = torch.log_softmax(logits[:-1], dim=-1)
            for i, label in enumerate(seq.labels[1:]):
                if label != IGNORE:
                    expected.append(logprobs[i, label])
    torch.testing.assert_close(packed, torch.stack(expected), rtol=1e-4, atol=1e-4)


def test_data_order_depends_on_seed_and_epoch_only() -> None:
    assert epoch_batches(10, 4, seed=1, epoch=2) == epoch_batches(10, 4, seed=1, epoch=2)
    assert epoch_batches(10, 4, seed=1, epoch=2) != epoch_batches(10, 4, seed=1, epoch=3)
    batches = epoch_batches(10, 4, seed=1, epoch=1)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert chunk_by_tokens([5, 5, 5, 20, 1], 10) == [[0, 1], [2], [3], [4]]
