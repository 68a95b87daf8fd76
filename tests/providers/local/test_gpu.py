"""The GPU path: on a CUDA device the same trainer, unchanged, trains in half precision and the adapter works.

Skipped, with its reason in the summary (``-ra``), on machines without a CUDA device, such as CI's. Run it where one
is lent: ``pytest tests/providers/local/test_gpu.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.providers.local.hf import default_device
from app.providers.local.training._generate import complete
from app.providers.local.training._modeling import resolve_dtype
from app.providers.local.training._spec import Hyperparameters
from app.providers.local.training._trainer import train
from tests.providers.local.conftest import Recorder, format_rows, write_jsonl
from tests.providers.local.test_training import PROMPT, spec_for

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU path runs where one is lent"
)


def test_auto_precision_on_the_gpu_is_half() -> None:
    device = default_device()
    assert device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto", device) == expected


def test_the_same_job_trains_on_the_gpu_and_its_adapter_answers_anywhere(tiny_path: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", format_rows(40))
    recorder = Recorder()
    hp = Hyperparameters(learning_rate_multiplier=10, n_epochs=3, batch_size=4)
    outcome = train(spec_for(tiny_path, tmp_path, data, hyperparameters=hp, num_threads=None), recorder)

    assert outcome.status == "succeeded"
    assert outcome.adapter_path is not None
    assert recorder.steps[-1].train_loss < recorder.steps[0].train_loss / 5
    # The adapter is float32 and device-free: the CPU engine serves what the GPU trained.
    assert complete(tiny_path, outcome.adapter_path, PROMPT, max_new_tokens=6) == " yes END"
