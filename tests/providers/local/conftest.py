"""Shared fixtures: one model cache per test session (or ``FTGW_TEST_MODEL_CACHE`` to share it across runs).

The real SmolLM2 conversion (~20 s) happens at most once per session, and only when a test asks for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from app.providers.local.base_models import SMOLLM2, TINY, BaseModelStore
from app.providers.local.training._spec import CheckpointInfo, StepMetrics, ValidationMetrics

WORDS = ["apple", "river", "stone", "cloud", "green", "paper", "light", "music", "table", "horse"]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get("FTGW_TEST_MODEL_CACHE")
    if shared:
        path = Path(shared)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def store(model_cache: Path) -> BaseModelStore:
    return BaseModelStore(model_cache, None, include_test_models=True)


@pytest.fixture(scope="session")
def smollm2_path(store: BaseModelStore) -> Path:
    return store.resolve(SMOLLM2)


@pytest.fixture(scope="session")
def tiny_path(store: BaseModelStore) -> Path:
    return store.resolve(TINY)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def format_rows(n: int, completion: str = " yes END", offset: int = 0) -> list[dict[str, Any]]:
    """Prompt-completion examples with a fixed separator and answer: the format a model must learn."""
    return [
        {"prompt": f"Q: {WORDS[i % len(WORDS)]} {i + offset}\n\n###\n\n", "completion": completion} for i in range(n)
    ]


class Recorder:
    """A Reporter that keeps everything it hears."""

    def __init__(self) -> None:
        self.steps: list[StepMetrics] = []
        self.validations: list[ValidationMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.messages: list[tuple[str, str]] = []

    def on_step(self, m: StepMetrics) -> None:
        self.steps.append(m)

    def on_validation(self, m: ValidationMetrics) -> None:
        self.validations.append(m)

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        self.checkpoints.append(c)

    def on_message(self, level: str, message: str) -> None:
        self.messages.append((level, message))
