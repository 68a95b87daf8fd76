"""Announcements between replicas over a real Redis, one the test stops and starts again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.shared import Shared
from app.shared.broadcast import Broadcast
from tests.loopback import free_port
from tests.shared.conftest import redis_server


async def until(condition: Callable[[], bool], seconds: float) -> float:
    """How long ``condition`` took to hold; fails after ``seconds``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_every_listener_hears_and_a_resubscription_forgets_what_may_have_been_missed() -> None:
    with redis_server() as server:
        clients = [Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5) for _ in range(2)]
        replicas = [Broadcast(client, "ftgw:") for client in clients]
        heard: list[tuple[int, str]] = []
        forgot: list[int] = []

        def hear(index: int, value: str) -> None:
            heard.append((index, value))

        for i, replica in enumerate(replicas):
            replica.on("routes", functools.partial(hear, i))
            replica.on_resubscribe(functools.partial(forgot.append, i))
        listeners = [asyncio.create_task(replica.run_forever()) for replica in replicas]
        try:
            for replica in replicas:
                await asyncio.wait_for(replica.ready.wait(), 10)
            assert sorted(forgot) == [0, 1]
            replicas[0].announce("routes", "proj-1")
            await until(lambda: sorted(heard) == [(0, "proj-1"), (1, "proj-1")], 1)

            server.stop()
            await until(lambda: not any(r.ready.is_set() for r in replicas), 5)
            assert await replicas[1].publish("routes", "proj-lost") == 0  # nobody hears it; no exception either
            server.start()
            # Back: each listener subscribes again and drops everything, since it cannot know what it missed.
            await until(lambda: sorted(forgot) == [0, 0, 1, 1], 10)
            replicas[1].announce("routes", "proj-2")
            await until(lambda: {(0, "proj-2"), (1, "proj-2")} <= set(heard), 1)
            assert all(value != "proj-lost" for _, value in heard)
        finally:
            for listener in listeners:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            for client in clients:
                await client.aclose()


async def test_a_gateway_told_to_share_refuses_to_start_without_redis(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(data_dir=tmp_path, redis_url=url, _env_file=None)
    with pytest.raises(RuntimeError, match="Redis cannot be reached"):
        await Shared.start(settings)
    assert await Shared.start(Settings(data_dir=tmp_path, _env_file=None)) is None
