"""The shared rate limiter on a real Redis: replicas (limiters with clients of their own) count into one window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from app.auth.models import Role
from app.auth.principal import Principal
from app.errors import RateLimited
from app.shared.limits import SharedRateLimiter
from tests.loopback import free_port
from tests.shared.conftest import REDIS_URL, redis_server


def key(rpm: int | None = None, tpm: int | None = None, key_id: str = "key-a") -> Principal:
    return Principal("proj-a", key_id, Role.member, max_requests_per_minute=rpm, max_tokens_per_minute=tpm)


@asynccontextmanager
async def replicas(prefix: str) -> AsyncIterator[tuple[SharedRateLimiter, SharedRateLimiter]]:
    async with (
        Redis.from_url(REDIS_URL, decode_responses=True) as one,
        Redis.from_url(REDIS_URL, decode_responses=True) as two,
    ):
        yield SharedRateLimiter(one, prefix), SharedRateLimiter(two, prefix)


async def admitted(limiter: SharedRateLimiter, principal: Principal) -> bool:
    try:
        await limiter.check(principal)
    except RateLimited:
        return False
    return True


async def test_two_replicas_admit_exactly_the_limit_between_them(prefix: str) -> None:
    principal = key(rpm=20)
    async with replicas(prefix) as (a, b):
        # 50 requests at once, alternately through each replica: the check and the count are one atomic step.
        results = await asyncio.gather(*[admitted((a, b)[i % 2], principal) for i in range(50)])
        assert sum(results) == 20
        with pytest.raises(RateLimited) as refused:
            await b.check(principal)
    assert refused.value.type == "requests"
    # The window is full at its start: room comes as it slides, a little after the next one begins.
    assert 60 < int(refused.value.headers["Retry-After"]) <= 73  # type: ignore[index]


async def test_tokens_spent_through_one_replica_limit_the_other(prefix: str) -> None:
    principal = key(tpm=100)
    async with replicas(prefix) as (a, b):
        await a.check(principal)
        a.spend(principal, 60)
        await a.drain()
        await b.check(principal)
        b.spend(principal, 60)
        await b.drain()
        with pytest.raises(RateLimited) as refused:
            await a.check(principal)
        assert refused.value.type == "tokens"
        await a.check(key(tpm=100, key_id="key-b"))  # another key has its own window


async def test_prefixes_keep_installs_apart(prefix: str) -> None:
    async with Redis.from_url(REDIS_URL, decode_responses=True) as client:
        ours, theirs = SharedRateLimiter(client, prefix), SharedRateLimiter(client, prefix + "other:")
        principal = key(rpm=1)
        await ours.check(principal)
        with pytest.raises(RateLimited):
            await ours.check(principal)
        await theirs.check(principal)
        assert await client.exists(f"{prefix}limits:requests:key-a") == 1


async def test_unlimited_keys_never_reach_redis() -> None:
    # A port where nothing listens: an unlimited key must not even try.
    async with Redis(port=free_port(), socket_connect_timeout=0.2) as nowhere:
        limiter = SharedRateLimiter(nowhere, "ftgw:")
        await limiter.check(key())
        assert not limiter.outage.down


async def test_without_redis_each_replica_falls_back_to_its_own_window(caplog: pytest.LogCaptureFixture) -> None:
    """Redis going away mid-run never refuses a request for it, nor answers 500: limits hold per process."""
    with redis_server() as server:
        async with Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5) as client:
            limiter = SharedRateLimiter(client, "ftgw:")
            principal = key(rpm=3)
            await limiter.check(principal)  # counted in Redis
            server.stop()
            with caplog.at_level(logging.WARNING, logger="app.shared.client"):
                await limiter.check(principal)
                await limiter.check(principal)
                await limiter.check(principal)
                with pytest.raises(RateLimited):
                    await limiter.check(principal)  # the process's own window: 3 since Redis went away
            warnings = [r for r in caplog.records if "Redis unavailable for rate limits" in r.getMessage()]
            assert len(warnings) == 1  # once per outage, not per request
            server.start()  # back, empty: the shared window counts again from here
            await limiter.check(principal)
            assert not limiter.outage.down
            assert await client.hget("ftgw:limits:requests:key-a", "current") == "1"
