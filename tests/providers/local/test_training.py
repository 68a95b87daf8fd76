"""End-to-end training on the tiny SmolLM2-shaped model: it learns, reports, and reproduces itself."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.providers.local.base_models import TINY
from app.providers.local.training._generate import complete
from app.providers.local.training._results import BASE_COLUMNS, BINARY_COLUMNS, MULTICLASS_COLUMNS, VALIDATION_COLUMNS
from app.providers.local.training._spec import ClassificationSettings, Hyperparameters, TrainSpec
from app.providers.local.training._trainer import train
from tests.providers.local.conftest import WORDS, Recorder, format_rows, write_jsonl

# A random tiny model needs a much larger rate than LoRA on a pretrained one (auto: 1e-3); see hyperparams.py.
# Batch 1 explicitly: the tests count steps, and the auto batch depends on the machine's cores.
FAST = Hyperparameters(learning_rate_multiplier=10, batch_size=1)
PROMPT = "Q: banana 7\n\n###\n\n"


def spec_for(tiny_path: Path, tmp_path: Path, train_file: Path, **kwargs: object) -> TrainSpec:
    # One thread: the tiny model's ops are too small to split, and tests may share the cores with other runs.
    fields: dict[str, object] = {"hyperparameters": FAST, "output_dir": tmp_path / "out", "num_threads": 1}
    fields.update(kwargs)
    return TrainSpec(base_model=TINY, base_path=tiny_path, training_file=train_file, **fields)


def header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_model_learns_a_prompt_completion_format(tiny_path: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", format_rows(40))
    assert complete(tiny_path, None, PROMPT, max_new_tokens=6) != " yes END"

    recorder = Recorder()
    outcome = train(spec_for(tiny_path, tmp_path, data), recorder)

    assert outcome.status == "succeeded"
    assert outcome.adapter_path is not None
    assert complete(tiny_path, outcome.adapter_path, PROMPT, max_new_tokens=6) == " yes END"
    # auto epochs: 40 examples -> 3 epochs; batch 1 -> 120 steps, a checkpoint per epoch that is itself a model.
    assert outcome.total_steps == 120
    assert [c.step for c in outcome.checkpoints] == [40, 80, 120]
    assert complete(tiny_path, outcome.checkpoints[-1].path, PROMPT, max_new_tokens=6) == " yes END"
    assert (outcome.checkpoints[0].path / "adapter_model.safetensors").is_file()
    assert [s.step for s in recorder.steps] == list(range(1, 121))
    assert recorder.steps[-1].train_loss < recorder.steps[0].train_loss / 5
    # What is left after the last step: its checkpoint and the final adapter, a small fraction of the run.
    assert 0 <= recorder.steps[-1].estimated_finish_seconds < recorder.steps[10].estimated_finish_seconds / 5
    # trained_tokens: every token of every example, once per epoch (OpenAI's billing count).
    assert outcome.trained_tokens == recorder.steps[-1].elapsed_tokens
    assert recorder.steps[-1].elapsed_examples == 120
    assert header(outcome.results_csv) == BASE_COLUMNS
    assert len(rows(outcome.results_csv)) == 120


def test_same_seed_same_losses_other_seed_other_losses(tiny_path: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", format_rows(12))
    fast = Hyperparameters(learning_rate_multiplier=10, n_epochs=2, batch_size=3, lora={"dropout": 0.1})
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        recorder = Recorder()
        train(
            spec_for(tiny_path, tmp_path, data, output_dir=tmp_path / name, seed=seed, hyperparameters=fast), recorder
        )
        runs.append([s.train_loss for s in recorder.steps])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_results_csv_with_validation_columns(tiny_path: Path, tmp_path: Path) -> None:
    train_file = write_jsonl(tmp_path / "train.jsonl", format_rows(8))
    valid_file = write_jsonl(tmp_path / "valid.jsonl", format_rows(4, offset=100))
    recorder = Recorder()
    hp = Hyperparameters(learning_rate_multiplier=10, n_epochs=2, batch_size=2)
    outcome = train(spec_for(tiny_path, tmp_path, train_file, validation_file=valid_file, hyperparameters=hp), recorder)

    assert header(outcome.results_csv) == BASE_COLUMNS + VALIDATION_COLUMNS
    table = rows(outcome.results_csv)
    assert [r["step"] for r in table] == [str(i) for i in range(1, 9)]
    # Validation runs at each epoch end.
    assert [r["step"] for r in table if r["validation_loss"]] == ["4", "8"]
    assert [v.step for v in recorder.validations] == [4, 8]
    assert recorder.steps[3].valid_loss == recorder.validations[0].loss
    assert recorder.validations[1].loss < recorder.validations[0].loss
    assert set(outcome.checkpoints[-1].metrics) >= {"train_loss", "valid_loss", "full_valid_mean_token_accuracy"}


def test_chat_training_with_validation(tiny_path: Path, tmp_path: Path) -> None:
    def chat(i: int) -> dict[str, object]:
        return {
            "messages": [
                {"role": "user", "content": f"Say ok to {WORDS[i % 10]}"},
                {"role": "assistant", "content": "ok"},
            ]
        }

    train_file = write_jsonl(tmp_path / "train.jsonl", [chat(i) for i in range(30)])
    valid_file = write_jsonl(tmp_path / "valid.jsonl", [chat(i) for i in range(3)])
    outcome = train(spec_for(tiny_path, tmp_path, train_file, validation_file=valid_file), Recorder())
    assert outcome.final_metrics["valid_mean_token_accuracy"] == 1.0
    assert outcome.adapter_path is not None
    assert complete(tiny_path, outcome.adapter_path, "Say ok to cloud", max_new_tokens=4, chat=True) == "ok"


def classify_rows(n: int, labels: list[str], offset: int = 0) -> list[dict[str, str]]:
    # The answer follows from the word, so validation examples (new numbers) are learnable.
    return [
        {"prompt": f"{WORDS[i % 10]} {i + offset} ->", "completion": labels[(i % 10) % len(labels)]} for i in range(n)
    ]


@pytest.mark.parametrize(
    ("labels", "positive", "expected"),
    [([" yes", " no"], " yes", BINARY_COLUMNS), ([" red", " green", " blue"], None, MULTICLASS_COLUMNS)],
)
def test_classification_metrics(
    tiny_path: Path, tmp_path: Path, labels: list[str], positive: str | None, expected: list[str]
) -> None:
    train_file = write_jsonl(tmp_path / "train.jsonl", classify_rows(40, labels))
    valid_file = write_jsonl(tmp_path / "valid.jsonl", classify_rows(20, labels, offset=500))
    settings = ClassificationSettings(
        compute_classification_metrics=True,
        classification_n_classes=len(labels),
        classification_positive_class=positive,
    )
    recorder = Recorder()
    hp = Hyperparameters(learning_rate_multiplier=10, n_epochs=2)
    outcome = train(
        spec_for(
            tiny_path, tmp_path, train_file, validation_file=valid_file, classification=settings, hyperparameters=hp
        ),
        recorder,
    )
    assert header(outcome.results_csv) == BASE_COLUMNS + VALIDATION_COLUMNS + expected
    final = rows(outcome.results_csv)[-1]
    for column in expected:
        value = float(final[column])
        assert 0.0 <= value <= 1.0 or math.isnan(value)
    assert rows(outcome.results_csv)[0]["classification/accuracy"] == ""
    assert set(expected) <= set(outcome.checkpoints[-1].metrics)
    assert not [m for m in recorder.messages if m[0] == "warn"]


def test_continuing_from_a_parent_adapter_starts_from_its_weights(tiny_path: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", format_rows(40))
    first = Recorder()
    parent = train(spec_for(tiny_path, tmp_path, data, output_dir=tmp_path / "parent"), first)
    assert parent.adapter_path is not None

    second = Recorder()
    hp = Hyperparameters(learning_rate_multiplier=10, n_epochs=1)
    child = train(
        spec_for(
            tiny_path,
            tmp_path,
            data,
            output_dir=tmp_path / "child",
            parent_adapter=parent.adapter_path,
            hyperparameters=hp,
        ),
        second,
    )
    assert second.steps[0].train_loss < first.steps[0].train_loss / 5
    assert second.steps[0].train_loss == pytest.approx(first.steps[-1].train_loss, rel=1.0)
    assert child.adapter_path is not None
    assert complete(tiny_path, child.adapter_path, PROMPT, max_new_tokens=6) == " yes END"
    parent_weights = load_file(str(parent.adapter_path / "adapter_model.safetensors"))
    child_weights = load_file(str(child.adapter_path / "adapter_model.safetensors"))
    assert parent_weights.keys() == child_weights.keys()
    assert all(v.dtype == torch.float32 for v in child_weights.values())


def test_a_real_run_reports_a_finish_estimate_that_counts_down(tiny_path: Path, tmp_path: Path) -> None:
    # How close the estimate is to the clock is measured by bench/time_to_model.py (a timed test would measure the
    # machine); here: the trainer feeds the estimate, which stays positive and ends at the final adapter save.
    data = write_jsonl(tmp_path / "train.jsonl", format_rows(20))
    valid = write_jsonl(tmp_path / "valid.jsonl", format_rows(10, offset=1000))
    hp = Hyperparameters(learning_rate_multiplier=10, n_epochs=2, batch_size=2)
    recorder = Recorder()
    outcome = train(spec_for(tiny_path, tmp_path, data, validation_file=valid, hyperparameters=hp), recorder)

    estimates = [m.estimated_finish_seconds for m in recorder.steps]
    assert len(estimates) == outcome.total_steps == 20
    assert all(e > 0 for e in estimates)
    assert estimates[-1] < estimates[0]
    assert estimates[-1] <= min(estimates[:-1])
