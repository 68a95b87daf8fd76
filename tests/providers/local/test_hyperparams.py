"""``auto`` hyperparameters, chosen from the training file's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.providers.local.hyperparams import (
    AUTO_BETA,
    BASE_LEARNING_RATE,
    lr_factor,
    resolve_hyperparameters,
)
from app.providers.local.spec import Hyperparameters, TrainSpec


def spec(**hp: object) -> TrainSpec:
    return TrainSpec(
        base_model="m",
        base_path=Path("/m"),
        training_file=Path("/t.jsonl"),
        output_dir=Path("/o"),
        hyperparameters=Hyperparameters(**hp),
    )


@pytest.mark.parametrize(
    ("n_examples", "epochs", "batch"),
    [(10, 10, 1), (40, 3, 1), (200, 3, 1), (1000, 3, 2), (4000, 3, 8), (20_000, 1, 8), (1, 25, 1)],
)
def test_auto_rules(n_examples: int, epochs: int, batch: int) -> None:
    resolved = resolve_hyperparameters(spec(), n_examples)
    assert (resolved.n_epochs, resolved.batch_size) == (epochs, batch)
    assert resolved.learning_rate == pytest.approx(BASE_LEARNING_RATE * 2.0)
    assert resolved.beta == AUTO_BETA


def test_explicit_values_win() -> None:
    resolved = resolve_hyperparameters(spec(n_epochs=2, batch_size=5, learning_rate_multiplier=0.5, beta=0.3), 100)
    assert (resolved.n_epochs, resolved.batch_size, resolved.beta) == (2, 5, 0.3)
    assert resolved.learning_rate == pytest.approx(BASE_LEARNING_RATE * 0.5)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="n_epochs"):
        resolve_hyperparameters(spec(n_epochs=0), 100)


def test_spec_round_trips_through_json() -> None:
    original = spec(n_epochs=2, lora={"rank": 4})
    assert TrainSpec.model_validate_json(original.model_dump_json()) == original


def test_schedule_warms_up_then_decays_to_a_floor() -> None:
    factors = [lr_factor(s, 100, 0.03) for s in range(100)]
    assert factors[0] < factors[2] <= 1.0
    assert max(factors) == 1.0
    assert factors[-1] == 0.1
    assert factors == sorted(factors[:3]) + sorted(factors[3:], reverse=True)
