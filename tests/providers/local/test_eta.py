"""The finish estimate's arithmetic, on simulated clocks: steps, validations and checkpoints still ahead.

The trainer feeds :class:`FinishEstimate` the durations it measures; here they are made up, so the test checks the
estimate and not the machine's load. The estimate's error on a real run is a benchmark figure
(``bench/time_to_model.py``).
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.providers.local.training._eta import CHECKPOINT_ADAPTER_WRITES, FORWARD_SHARE, FinishEstimate


def test_priors_stand_in_until_validation_and_checkpoint_are_measured() -> None:
    eta = FinishEstimate(total_steps=300, steps_per_epoch=150, valid_tokens=1500)
    eta.adapter_save_seconds = 0.1
    eta.step_done(3.0, 10)  # the first step warms up: left out of the mean
    for _ in range(29):
        eta.step_done(1.0, 10)

    validation = 1.0 * FORWARD_SHARE * 1500 / 10
    checkpoint = CHECKPOINT_ADAPTER_WRITES * 0.1
    assert eta.remaining_seconds(30, checkpoint_pending=False) == pytest.approx(
        270 * 1.0 + 2 * validation + 2 * checkpoint + 0.1
    )

    for _ in range(120):
        eta.step_done(1.0, 10)
    eta.validation_done(20.0)
    # After step 150's validation, with its checkpoint still to write: measured validation, prior checkpoint.
    assert eta.remaining_seconds(150, checkpoint_pending=True) == pytest.approx(150 + 20.0 + 2 * checkpoint + 0.1)
    eta.checkpoint_done(2.0)
    assert eta.remaining_seconds(150, checkpoint_pending=False) == pytest.approx(150 + 20.0 + 2.0 + 0.1)


def test_no_validation_file_no_validation_time() -> None:
    eta = FinishEstimate(total_steps=10, steps_per_epoch=5, valid_tokens=0)
    for _ in range(3):
        eta.step_done(2.0, 50)
    assert eta.remaining_seconds(3, checkpoint_pending=False) == pytest.approx(7 * 2.0)


@settings(max_examples=300, deadline=None)
@given(
    epochs=st.integers(1, 5),
    steps_per_epoch=st.integers(30, 200),  # auto hyperparameters give every run at least 30 steps
    step=st.floats(0.05, 5.0),
    noise=st.floats(0.0, 0.15),
    checkpoint=st.floats(0.01, 3.0),
    seed=st.integers(0, 2**32),
)
def test_after_a_tenth_of_the_steps_the_estimate_is_within_20_percent(
    epochs: int, steps_per_epoch: int, step: float, noise: float, checkpoint: float, seed: int
) -> None:
    """A simulated run whose steps vary by up to ±15% around their mean, whose first step is three times slower,
    and which writes a checkpoint at each epoch end (the prior from one timed adapter save)."""
    rng = random.Random(seed)
    total = epochs * steps_per_epoch
    eta = FinishEstimate(total_steps=total, steps_per_epoch=steps_per_epoch, valid_tokens=0)
    eta.adapter_save_seconds = checkpoint / CHECKPOINT_ADAPTER_WRITES
    durations = [step * rng.uniform(1 - noise, 1 + noise) for _ in range(total)]
    durations[0] *= 3
    at = math.ceil(total * 0.1)
    for i in range(at):
        eta.step_done(durations[i], 20)

    estimate = eta.remaining_seconds(at, checkpoint_pending=False)
    actual = sum(durations[at:]) + epochs * checkpoint + eta.adapter_save_seconds
    assert abs(estimate - actual) <= 0.2 * actual


def test_a_slow_second_step_fades_out_of_the_estimate() -> None:
    """A gateway's warm-up: step 1 three times the steady step, step 2 1.4 times (measured). After a tenth of a
    30-step run the estimate is 13% high; an unweighted mean of steps 2-3 would be 20% high."""
    eta = FinishEstimate(total_steps=30, steps_per_epoch=30, valid_tokens=0)
    for seconds in (3.0, 1.4, 1.0):
        eta.step_done(seconds, 20)
    assert eta.remaining_seconds(3, checkpoint_pending=False) == pytest.approx(27 * (1.4 + 2 * 1.0) / 3)
