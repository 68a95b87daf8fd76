"""Per-key rate limits: requests and tokens per minute, counted with a sliding window.

Two fixed one-minute windows, the previous one weighted by how much of it still overlaps the last 60 seconds
(the approximation nginx and Cloudflare use): O(1) memory per key and no database on the hot path.
:class:`Limiter` is what the gateway depends on; :class:`RateLimiter` counts in this process, so its limits hold
per gateway process. With ``FTGW_REDIS_URL`` set, ``app.shared.limits`` keeps the same windows in Redis, so a
limit holds across every replica.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from app.auth.principal import Principal
from app.errors import RateLimited
from app.observability import metrics

WINDOW = 60.0


@dataclass(slots=True)
class Window:
    """One key's count: the current fixed window (from ``start``) and the one before it."""

    start: float
    current: float = 0.0
    previous: float = 0.0

    def roll(self, now: float) -> None:
        elapsed = now - self.start
        if elapsed >= WINDOW:
            self.previous = self.current if elapsed < 2 * WINDOW else 0.0
            self.current = 0.0
            self.start += WINDOW * math.floor(elapsed / WINDOW)

    def used(self, now: float) -> float:
        overlap = 1.0 - (now - self.start) / WINDOW
        return self.current + self.previous * overlap

    def wait(self, now: float, threshold: float) -> float:
        """Seconds until the window's use has decayed to ``threshold``, if nothing more is counted."""
        if self.current > threshold:
            # Not before this window ends; then this window's count decays as the previous one.
            fraction = 1 - max(threshold, 0) / self.current
            return self.start + WINDOW * (1 + fraction) - now + 0.001
        if self.previous <= 0:
            return 0.0
        fraction = 1 - (threshold - self.current) / self.previous
        return max(self.start + WINDOW * fraction - now, 0.0) + 0.001


class Limiter(ABC):
    """Counts each key's requests and tokens per minute against its limits; where the counts live is the
    implementation's."""

    @abstractmethod
    async def check(self, principal: Principal) -> None:
        """Count one request for the key, or raise 429 with ``Retry-After`` when a limit is reached."""

    @abstractmethod
    def spend(self, principal: Principal, tokens: int) -> None:
        """Count the tokens a finished request used against the key's token limit."""


class RateLimiter(Limiter):
    """The windows of this process."""

    def __init__(self) -> None:
        self._requests: dict[str, Window] = {}
        self._tokens: dict[str, Window] = {}
        self.clock: Callable[[], float] = time.monotonic

    async def check(self, principal: Principal) -> None:
        self.admit(principal)

    def admit(self, principal: Principal) -> None:
        """Count one request for the key, or raise 429 with ``Retry-After`` when a limit is reached."""
        rpm, tpm = principal.max_requests_per_minute, principal.max_tokens_per_minute
        if rpm is None and tpm is None:
            return
        now = self.clock()
        if tpm is not None:
            tokens = self._window(self._tokens, principal.key_id, now)
            if tokens.used(now) >= tpm:
                raise limited("tokens", tpm, tokens.wait(now, tpm - 1))
        if rpm is not None:
            requests = self._window(self._requests, principal.key_id, now)
            if requests.used(now) + 1 > rpm:
                raise limited("requests", rpm, requests.wait(now, rpm - 1))
            requests.current += 1

    def spend(self, principal: Principal, tokens: int) -> None:
        """Count the tokens a finished request used against the key's token limit."""
        if principal.max_tokens_per_minute is None:
            return
        now = self.clock()
        self._window(self._tokens, principal.key_id, now).current += tokens

    @staticmethod
    def _window(windows: dict[str, Window], key: str, now: float) -> Window:
        window = windows.get(key)
        if window is None:
            window = windows[key] = Window(start=now)
        window.roll(now)
        return window


def limited(kind: str, limit: int, wait: float) -> RateLimited:
    """The 429 for a key over its ``kind`` ("requests" or "tokens") limit, which has room in ``wait`` seconds."""
    metrics.rate_limited(kind)
    seconds = max(1, math.ceil(wait))
    error = RateLimited(
        f"Rate limit reached: {limit} {kind} per minute for this API key. Try again in {seconds}s.",
        headers={"Retry-After": str(seconds), f"x-ratelimit-limit-{kind}": str(limit)},
    )
    error.type = kind
    return error
