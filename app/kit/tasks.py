"""In-process tasks: background ones, started only after the transaction that asked for them has committed, and
groups of concurrent calls that succeed or fail together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit

log = logging.getLogger(__name__)

T = TypeVar("T")


async def all_or_none(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``calls`` concurrently and return their results in order. The first that raises cancels the others
    (nobody would read them) and its error is raised; so does the caller going away (this task cancelled)."""
    tasks = [asyncio.create_task(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
            task.add_done_callback(_retrieve)  # a second failure is not logged as never retrieved


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class TaskRunner:
    """Owns fire-and-forget tasks so they are logged when they fail and cancelled on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, make: Callable[[], Awaitable[None]], *, name: str) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await make()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn_after_commit(self, session: AsyncSession, make: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Start ``make()`` once ``session`` commits; never if it rolls back (Polar's job buffer)."""
        after_commit(session, lambda: self.spawn(make, name=name))

    async def idle(self) -> None:
        """Wait until every task started so far has finished (tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
