"""Pause, resume, and a worker killed mid-run: the run carries on from its newest complete state."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.providers.local.base_models import TINY
from app.providers.local.training._spec import Hyperparameters, StepMetrics, TrainSpec
from app.providers.local.training._state import CHECKPOINTS_DIR, STATE_DIR
from app.providers.local.training._trainer import train
from tests.providers.local.conftest import Recorder, format_rows, write_jsonl

HP = Hyperparameters(learning_rate_multiplier=10, n_epochs=3, batch_size=3, lora={"dropout": 0.1})


class PauseAt:
    """A Control that asks for a pause once ``step`` steps are done."""

    def __init__(self, recorder: Recorder, step: int) -> None:
        self.recorder = recorder
        self.step = step

    def should_pause(self) -> bool:
        return bool(self.recorder.steps) and self.recorder.steps[-1].step == self.step


def make_spec(tiny_path: Path, tmp_path: Path, name: str, state_interval: float | None = None) -> TrainSpec:
    train_file = tmp_path / "train.jsonl"
    if not train_file.exists():
        write_jsonl(train_file, format_rows(20))
        write_jsonl(tmp_path / "valid.jsonl", format_rows(4, offset=50))
    return TrainSpec(
        base_model=TINY,
        base_path=tiny_path,
        training_file=train_file,
        validation_file=tmp_path / "valid.jsonl",
        output_dir=tmp_path / name,
        hyperparameters=HP,
        seed=3,
        num_threads=1,
        state_interval_seconds=state_interval,
    )


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = adapter_weights(a), adapter_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_pause_then_resume_matches_an_uninterrupted_run(tiny_path: Path, tmp_path: Path) -> None:
    straight = Recorder()
    expected = train(make_spec(tiny_path, tmp_path, "straight"), straight)

    paused = Recorder()
    spec = make_spec(tiny_path, tmp_path, "paused")
    first = train(spec, paused, PauseAt(paused, 9))  # mid-epoch: 7 steps per epoch
    assert first.status == "paused"
    assert first.step == 9
    assert first.adapter_path is None
    assert (spec.output_dir / STATE_DIR / "step-9").is_dir()

    resumed = Recorder()
    second = train(spec, resumed)
    assert second.status == "succeeded"
    assert [s.step for s in resumed.steps] == list(range(10, expected.total_steps + 1))
    assert [s.train_loss for s in paused.steps + resumed.steps] == [s.train_loss for s in straight.steps]
    assert second.adapter_path is not None and expected.adapter_path is not None
    assert_same_weights(second.adapter_path, expected.adapter_path)
    assert second.trained_tokens == expected.trained_tokens
    assert [c.step for c in second.checkpoints] == [7, 14, 21]
    assert second.results_csv.read_text().count("\n") == expected.results_csv.read_text().count("\n")
    assert not (spec.output_dir / STATE_DIR).exists()


class SlowReporter(Recorder):
    """Slows each step so the parent can kill the run mid-epoch."""

    def on_step(self, m: StepMetrics) -> None:
        time.sleep(0.15)


def _child(spec_json: str) -> None:
    train(TrainSpec.model_validate_json(spec_json), SlowReporter())


@pytest.mark.parametrize("state_interval", [None, 1e-6], ids=["epoch-checkpoints-only", "state-every-step"])
def test_killed_worker_resumes_from_its_last_complete_state(
    tiny_path: Path, tmp_path: Path, state_interval: float | None
) -> None:
    spec = make_spec(tiny_path, tmp_path, "killed", state_interval)
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_child, args=(spec.model_dump_json(),))
    child.start()
    try:
        first_checkpoint = spec.output_dir / CHECKPOINTS_DIR / "step-7"
        deadline = time.monotonic() + 120
        while not first_checkpoint.is_dir() and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_checkpoint.is_dir()
        time.sleep(0.4)  # a few steps into epoch 2
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    assert not (spec.output_dir / "adapter").exists()

    resumed = Recorder()
    outcome = train(spec, resumed)
    assert outcome.status == "succeeded"
    if state_interval is None:
        assert resumed.steps[0].step == 8  # the last complete state: epoch 1's checkpoint
        assert ("info", "resumed from step 7") in resumed.messages
    else:
        assert resumed.steps[0].step > 8  # a mid-epoch state saved after a later step
    steps = [line.split(",")[0] for line in outcome.results_csv.read_text().splitlines()[1:]]
    assert steps == [str(i) for i in range(1, 22)]

    straight = train(make_spec(tiny_path, tmp_path, "reference"), Recorder())
    assert outcome.adapter_path is not None and straight.adapter_path is not None
    assert_same_weights(outcome.adapter_path, straight.adapter_path)
