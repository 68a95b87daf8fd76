"""DPO on the tiny model: the preferred answer gains log-probability over the other one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoTokenizer

from app.providers.local.base_models import TINY
from app.providers.local.hf import quiet_peft
from app.providers.local.training._data import encode_preference
from app.providers.local.training._metrics import sequence_logprobs
from app.providers.local.training._modeling import load_base
from app.providers.local.training._spec import Hyperparameters, TrainSpec
from app.providers.local.training._trainer import train
from tests.providers.local.conftest import WORDS, Recorder, write_jsonl


def pair(i: int) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": f"Is {WORDS[i % 10]} {i} fine?"}]},
        "preferred_output": [{"role": "assistant", "content": "yes"}],
        "non_preferred_output": [{"role": "assistant", "content": "no"}],
    }


def margin(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Mean of log p(preferred) - log p(non-preferred)."""
    seqs = [s for row in rows for s in encode_preference(tokenizer, row).sequences()]
    totals, _, _, _ = sequence_logprobs(model, seqs, 4096)
    return float((totals[0::2] - totals[1::2]).mean())


def test_dpo_raises_the_preferred_answers_margin(tiny_path: Path, tmp_path: Path) -> None:
    rows = [pair(i) for i in range(24)]
    valid = [pair(i) for i in range(100, 104)]
    spec = TrainSpec(
        base_model=TINY,
        base_path=tiny_path,
        training_file=write_jsonl(tmp_path / "train.jsonl", rows),
        validation_file=write_jsonl(tmp_path / "valid.jsonl", valid),
        output_dir=tmp_path / "out",
        method="dpo",
        hyperparameters=Hyperparameters(learning_rate_multiplier=10, n_epochs=2, batch_size=4),
        num_threads=1,
    )
    recorder = Recorder()
    outcome = train(spec, recorder)
    assert outcome.status == "succeeded"
    assert outcome.adapter_path is not None

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_path))
    base = load_base(tiny_path, torch.float32, torch.device("cpu"))
    before = margin(base, tokenizer, valid)
    with quiet_peft():
        tuned = PeftModel.from_pretrained(base, str(outcome.adapter_path))
    after = margin(tuned, tokenizer, valid)
    assert after > before + 1.0

    # The first step's policy is the reference: loss log(2), no margin yet; training then opens the margin.
    first, last = recorder.steps[0], recorder.steps[-1]
    assert abs(first.train_loss - 0.6931) < 1e-3
    assert last.train_loss < first.train_loss
    assert last.extra["reward_margin"] > 0
    assert recorder.validations[-1].loss < 0.6931
    assert outcome.trained_tokens == last.elapsed_tokens
