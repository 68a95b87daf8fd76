"""The per-key sliding-window limiter, on a clock the test moves."""

from __future__ import annotations

import pytest

from app.auth.models import Role
from app.auth.principal import Principal
from app.errors import RateLimited
from app.usage.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> RateLimiter:
    limits = RateLimiter()
    limits.clock = clock
    return limits


def key(rpm: int | None = None, tpm: int | None = None, key_id: str = "key-a") -> Principal:
    return Principal("proj-a", key_id, Role.member, max_requests_per_minute=rpm, max_tokens_per_minute=tpm)


def test_requests_per_minute_admits_the_limit_then_429_until_the_window_slides() -> None:
    clock = Clock()
    limits = limiter(clock)
    principal = key(rpm=5)
    for _ in range(5):
        limits.admit(principal)
    with pytest.raises(RateLimited) as refused:
        limits.admit(principal)
    retry_after = int(refused.value.headers["Retry-After"])  # type: ignore[index]
    assert 1 <= retry_after <= 120  # the window slides: old requests weigh until they have decayed
    assert refused.value.status_code == 429 and refused.value.type == "requests"
    # Half a window later the old requests still weigh; after the advertised wait, there is room again.
    clock.now += 30
    with pytest.raises(RateLimited):
        limits.admit(principal)
    clock.now += retry_after
    limits.admit(principal)


def test_a_full_quiet_minute_forgets_everything() -> None:
    clock = Clock()
    limits = limiter(clock)
    principal = key(rpm=2)
    limits.admit(principal)
    limits.admit(principal)
    clock.now += 120
    limits.admit(principal)
    limits.admit(principal)


def test_token_limit_counts_spent_tokens_and_keys_are_separate() -> None:
    clock = Clock()
    limits = limiter(clock)
    principal = key(tpm=100)
    limits.admit(principal)
    limits.spend(principal, 60)
    limits.admit(principal)
    limits.spend(principal, 60)
    with pytest.raises(RateLimited) as refused:
        limits.admit(principal)
    assert refused.value.type == "tokens"
    limits.admit(key(tpm=100, key_id="key-b"))  # another key has its own window
    limits.admit(key())  # and an unlimited key is never counted
    clock.now += 61 + int(refused.value.headers["Retry-After"])  # type: ignore[index]
    limits.admit(principal)


def test_advertised_retry_after_is_enough() -> None:
    """Whatever the history, waiting Retry-After seconds is enough for the next request to pass."""
    for spent_at in (0.0, 15.0, 45.0, 59.0):
        clock = Clock()
        limits = limiter(clock)
        principal = key(rpm=4)
        clock.now += spent_at
        for _ in range(4):
            limits.admit(principal)
        clock.now += 10
        with pytest.raises(RateLimited) as refused:
            limits.admit(principal)
        clock.now += int(refused.value.headers["Retry-After"])  # type: ignore[index]
        limits.admit(principal)
