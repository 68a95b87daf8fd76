"""One real run: LoRA on SmolLM2-135M-Instruct for a few steps."""

from __future__ import annotations

from pathlib import Path

from app.providers.local.base_models import SMOLLM2
from app.providers.local.training._spec import Hyperparameters, TrainSpec
from app.providers.local.training._trainer import train
from tests.providers.local.conftest import Recorder, format_rows, write_jsonl


def test_smollm2_lora_learns_and_the_adapter_is_small(smollm2_path: Path, tmp_path: Path) -> None:
    spec = TrainSpec(
        base_model=SMOLLM2,
        base_path=smollm2_path,
        training_file=write_jsonl(tmp_path / "train.jsonl", format_rows(16)),
        output_dir=tmp_path / "out",
        hyperparameters=Hyperparameters(n_epochs=2, batch_size=4, learning_rate_multiplier=5),
        # One thread: two threads spin-waiting on cores that other test runs share can be 10x slower.
        num_threads=1,
    )
    recorder = Recorder()
    outcome = train(spec, recorder)
    assert outcome.status == "succeeded"
    losses = [s.train_loss for s in recorder.steps]
    assert len(losses) == 8
    assert sum(losses[4:]) < sum(losses[:4]) * 0.7
    assert outcome.adapter_path is not None
    size = (outcome.adapter_path / "adapter_model.safetensors").stat().st_size
    # The default LoRA, rank 16 on all seven projections of 30 layers: 16 x 10,176 x 30 = 4.88M float32 parameters.
    assert 19_000_000 < size < 20_000_000
