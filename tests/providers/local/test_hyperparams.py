"""``auto`` hyperparameters of the local trainer, chosen from the training file's size and the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.datasets.hyperparams import auto_epochs
from app.providers.local.training._hyperparams import (
    AUTO_BETA,
    AUTO_LEARNING_RATE_MULTIPLIER,
    BASE_LEARNING_RATE,
    MAX_AUTO_BATCH_SIZE,
    MIN_OPTIMIZER_STEPS,
    DeviceKind,
    lr_factor,
    resolve_hyperparameters,
    steps_per_epoch,
    tokens_per_step,
)
from app.providers.local.training._spec import Hyperparameters, LoraSettings, TrainSpec


def spec(**hp: object) -> TrainSpec:
    return TrainSpec(
        base_model="m",
        base_path=Path("/m"),
        training_file=Path("/t.jsonl"),
        output_dir=Path("/o"),
        hyperparameters=Hyperparameters(**hp),
    )


@pytest.mark.parametrize(
    ("n_examples", "mean_tokens", "epochs", "batch"),
    [
        (40, 25.0, 3, 4),  # 120 example-steps over >= 30 steps
        (250, 25.0, 3, 25),  # the step floor binds before the token budget (40)
        (2000, 25.0, 3, 40),  # 1024 tokens / 25
        (2000, 300.0, 3, 3),  # long examples: fewer per step
        (20_000, 10.0, 1, 64),  # the cap
        (1, 25.0, 25, 1),
        (10, 5000.0, 10, 1),  # an example longer than the budget still trains alone
    ],
)
def test_auto_rules_on_two_cores(n_examples: int, mean_tokens: float, epochs: int, batch: int) -> None:
    resolved = resolve_hyperparameters(spec(), n_examples, mean_tokens, cores=2)
    assert (resolved.n_epochs, resolved.batch_size) == (epochs, batch)
    assert resolved.learning_rate == pytest.approx(BASE_LEARNING_RATE * AUTO_LEARNING_RATE_MULTIPLIER)
    assert resolved.beta == AUTO_BETA
    assert resolved.lora == LoraSettings()
    assert set(resolved.lora.target_modules) >= {"q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"}


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 100_000),
    extra=st.integers(1, 100_000),
    mean=st.floats(1.0, 10_000.0),
    epochs=st.integers(1, 25),
    cores=st.integers(1, 64),
    device=st.sampled_from(["cpu", "cuda"]),
)
def test_auto_batch_grows_with_the_data_and_keeps_enough_steps(
    n: int, extra: int, mean: float, epochs: int, cores: int, device: DeviceKind
) -> None:
    small = resolve_hyperparameters(spec(n_epochs=epochs), n, mean, device=device, cores=cores).batch_size
    large = resolve_hyperparameters(spec(n_epochs=epochs), n + extra, mean, device=device, cores=cores).batch_size
    assert 1 <= small <= large <= MAX_AUTO_BATCH_SIZE
    assert small <= n
    steps = epochs * steps_per_epoch(n, small)
    # At least MIN_OPTIMIZER_STEPS steps whenever the data allows it (batch 1 is the floor).
    assert steps >= min(MIN_OPTIMIZER_STEPS, epochs * n)
    # Never over the token budget, except a batch of one example.
    assert small == 1 or small * mean <= tokens_per_step(device, cores)


def test_gpu_budget_is_larger() -> None:
    cpu = resolve_hyperparameters(spec(), 50_000, 100.0, device="cpu", cores=2).batch_size
    gpu = resolve_hyperparameters(spec(), 50_000, 100.0, device="cuda").batch_size
    assert cpu == 10 and gpu == 64


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 100_000),
    mean=st.floats(1.0, 10_000.0),
    epochs=st.integers(1, 50),
    batch=st.integers(1, 10_000),
    multiplier=st.floats(1e-4, 100.0),
    beta=st.floats(1e-3, 10.0),
)
def test_explicit_values_are_honoured_exactly(
    n: int, mean: float, epochs: int, batch: int, multiplier: float, beta: float
) -> None:
    hp = {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": multiplier, "beta": beta}
    for device in ("cpu", "cuda"):
        resolved = resolve_hyperparameters(spec(**hp), n, mean, device=device, cores=2)  # type: ignore[arg-type]
        assert (resolved.n_epochs, resolved.batch_size, resolved.beta) == (epochs, batch, beta)
        assert resolved.learning_rate_multiplier == multiplier
        assert resolved.learning_rate == pytest.approx(BASE_LEARNING_RATE * multiplier)


def test_upstream_auto_epochs_keep_openais_rule() -> None:
    # The dataset report and upstream providers use OpenAI's rule, untouched by the local batch rule.
    assert [auto_epochs(n) for n in (1, 10, 40, 200, 20_000)] == [25, 10, 3, 3, 1]


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
