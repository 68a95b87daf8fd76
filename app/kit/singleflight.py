"""One lookup per key at a time: concurrent callers asking for the same key share one run of the work.

A cache entry that expires under load would otherwise send every request in flight to the database at once: at
16 connections on SQLite, 16 key and route lookups queued on one connection stalled every request for 70-140 ms
each time the 5-second caches expired (bench/README.md, "Routed overhead").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """``work()``'s result (or exception), shared with every caller of the same ``key`` while it runs. A caller
        that is cancelled leaves the work running for the others."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(work())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(running)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: callers that all left must not leave "never retrieved" noise
